package testregistry

import (
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// statusOf is the HTTP status of a registry error, 0 for another error or none.
func statusOf(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

// TestAnonymousClientsPullOnlyPublicRepositories: without credentials a client pulls a public
// repository and nothing else, and pushes nowhere; a wrong password is refused even for a
// public repository.
func TestAnonymousClientsPullOnlyPublicRepositories(t *testing.T) {
	r := Start(t, Options{Users: map[string]string{"u": "p"}, Public: []string{"public/"}})
	pub := r.Push(t, "public/app", "1", "u", "p")
	priv := r.Push(t, "private/app", "1", "u", "p")
	get := func(ref name.Reference, auth authn.Authenticator) error {
		_, err := remote.Get(ref, remote.WithAuth(auth), remote.WithTransport(r.Transport()))
		return err
	}

	require.NoError(t, get(pub, authn.Anonymous), "an anonymous pull of a public repository")
	assert.Equal(t, http.StatusUnauthorized, statusOf(get(priv, authn.Anonymous)), "an anonymous pull of a private repository")
	assert.Equal(t, http.StatusUnauthorized, statusOf(get(pub, &authn.Basic{Username: "u", Password: "wrong"})),
		"a wrong password, even for a public repository")
	require.NoError(t, get(priv, &authn.Basic{Username: "u", Password: "p"}))

	img, err := random.Image(64, 1)
	require.NoError(t, err)
	tag, err := name.NewTag(r.Host + "/public/app:2")
	require.NoError(t, err)
	err = remote.Write(tag, img, remote.WithAuth(authn.Anonymous), remote.WithTransport(r.Transport()))
	assert.Equal(t, http.StatusUnauthorized, statusOf(err), "an anonymous push to a public repository: %v", err)
}
