package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/tcr-assistant/tcr-assistant/credcheck"
)

// PushOptions say how Push reaches the registry.
type PushOptions struct {
	// Keychain finds the credential for the registry: authn.DefaultKeychain (the docker config,
	// $DOCKER_CONFIG/config.json else ~/.docker/config.json) for 'make image-push'.
	Keychain authn.Keychain
	// CAFile, when set, is a PEM file whose certificates are trusted besides the system's
	// (REGISTRY_CA).
	CAFile string
}

// ParseTag parses ref, which must name a registry, a repository and a tag
// ("registry.example.com/tcr-assistant:v0.1.1").
func ParseTag(ref string) (name.Tag, error) {
	slash := strings.IndexByte(ref, '/')
	if strings.ContainsAny(ref, "@ \t\n") {
		return name.Tag{}, fmt.Errorf("image reference %q is not registry/repository:tag", ref)
	}
	if slash < 0 || !strings.ContainsAny(ref[:slash], ".:") && ref[:slash] != "localhost" {
		return name.Tag{}, fmt.Errorf("image reference %q names no registry: give registry/repository:tag, e.g. registry.example.com/tcr-assistant:v0.1.1", ref)
	}
	if !strings.Contains(ref[slash:], ":") {
		return name.Tag{}, fmt.Errorf("image reference %q has no tag: give registry/repository:tag, e.g. %s:v0.1.1", ref, ref)
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q is not registry/repository:tag: %w", ref, err)
	}
	return tag, nil
}

// Push pushes img as ref ("registry/repository:tag") and returns the reference by digest. Its
// errors are one line: an untrusted certificate, a refused credential (with the registry's
// message) or the failure as the registry put it.
func Push(ctx context.Context, img v1.Image, ref string, opts PushOptions) (name.Digest, error) {
	tag, err := ParseTag(ref)
	if err != nil {
		return name.Digest{}, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if opts.CAFile != "" {
		pool, err := credcheck.LoadCAs(opts.CAFile)
		if err != nil {
			return name.Digest{}, fmt.Errorf("REGISTRY_CA: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	kc := opts.Keychain
	if kc == nil {
		return name.Digest{}, errors.New("image: no keychain given")
	}
	auth, err := authn.Resolve(ctx, kc, tag.Context())
	if err != nil {
		return name.Digest{}, fmt.Errorf("reading the credential for %s from the docker config: %w", tag.RegistryStr(), err)
	}
	digest, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(tr)); err != nil {
		return name.Digest{}, pushError(tag, auth, opts.CAFile, err)
	}
	return tag.Context().Digest(digest.String()), nil
}

// pushError turns what remote.Write returned into one line that says what to do.
func pushError(tag name.Tag, auth authn.Authenticator, caFile string, err error) error {
	prefix := "pushing " + tag.String() + ": "
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		var unknownCA x509.UnknownAuthorityError
		if !errors.As(verify.Err, &unknownCA) {
			return fmt.Errorf("%sthe TLS certificate of %s is not valid for it: %s", prefix, tag.RegistryStr(), oneLine(verify.Err.Error()))
		}
		if caFile != "" {
			return fmt.Errorf("%sthe TLS certificate of %s is not trusted (%s): neither a CA of the system nor one of REGISTRY_CA %s signed it", prefix, tag.RegistryStr(), unknownCA.Error(), caFile)
		}
		return fmt.Errorf("%sthe TLS certificate of %s is not trusted (%s): REGISTRY_CA=<PEM file> adds the CA that signed it", prefix, tag.RegistryStr(), unknownCA.Error())
	}
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		who := "the anonymous push (no credential for " + tag.RegistryStr() + " in the docker config)"
		if auth != authn.Anonymous {
			if cfg, aerr := auth.Authorization(); aerr == nil && cfg.Username != "" {
				who = fmt.Sprintf("the credential of %q", cfg.Username)
			} else {
				who = "the credential"
			}
			who += " from the docker config"
		}
		return fmt.Errorf("%sthe registry refused %s: %s", prefix, who, registryMessage(te))
	}
	return fmt.Errorf("%s%s", prefix, oneLine(err.Error()))
}

// registryMessage is what the registry said in its error, without the request.
func registryMessage(te *transport.Error) string {
	var msgs []string
	for _, d := range te.Errors {
		msgs = append(msgs, d.String())
	}
	if len(msgs) == 0 {
		return fmt.Sprintf("HTTP %d %s", te.StatusCode, http.StatusText(te.StatusCode))
	}
	return oneLine(strings.Join(msgs, "; "))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
