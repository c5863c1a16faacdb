package testregistry

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push pushes a small random image (one 1 KiB layer) as Host/repo:tag with the given credential
// and returns its reference by digest.
func (r *Registry) Push(t testing.TB, repo, tag, user, password string) name.Digest {
	t.Helper()
	img, err := random.Image(1024, 1)
	must(t, err)
	ref, err := name.NewTag(r.Host + "/" + repo + ":" + tag)
	must(t, err)
	must(t, remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: password}),
		remote.WithTransport(r.Transport())))
	digest, err := img.Digest()
	must(t, err)
	return ref.Context().Digest(digest.String())
}
