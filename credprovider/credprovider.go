// Package credprovider is the manager's credential endpoint for the kubelet's image credential
// provider plugin (tcr-credential-provider, KEP-4412). The kubelet hands the plugin the Pod's own
// ServiceAccount token, bound to the audience tcrv1.CredentialProviderAudience; the plugin posts
// it here with the image, and the endpoint answers with the credential that a rule delivers to
// that ServiceAccount for the image's registry, so that no namespace needs to hold a copy.
//
// The protocol, at Path:
//
//	POST /credential-provider/v1
//	Authorization: Bearer <ServiceAccount token>
//	Content-Type: application/json
//
//	{"image":"<image reference>"}
//
// A credential is answered with 200 and
// {"registry":"<host[:port]>","username":"...","password":"...","cacheSeconds":<int>,"expiresAt":"<RFC3339>"}
// (expiresAt omitted when unknown); a refusal with a non-2xx status and
// {"reason":"<Word>","message":"<one line>"}, the reason one of the Reason constants.
//
// The ServiceAccount is the one a TokenReview of the token names, never anything the request
// says. The endpoint is bounded as the admission webhook is: the body (MaxRequestBytes), the
// requests served at once (Options.MaxConcurrent, with a short wait), the TokenReview's time
// (ReviewTimeout), and a decision cache of bounded size, keyed by the token's SHA-256, so that a
// burst of pulls by one ServiceAccount, or a flood of one forged token, costs one TokenReview.
package credprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/go-logr/logr"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/tcr-assistant/tcr-assistant/admission"
	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credprovider/wire"
)

// Path is where the manager serves the credential endpoint.
const Path = wire.Path

// Bounds and defaults of the endpoint.
const (
	// MaxRequestBytes caps the request body. {"image":...} with the longest image reference
	// the kubelet accepts is well under it; a larger body is refused with 413, unread when it
	// declares its length.
	MaxRequestBytes = 4 << 10
	// MaxTokenBytes caps the bearer token. A ServiceAccount token is about 1 KiB; a longer one is
	// refused without a TokenReview.
	MaxTokenBytes = 16 << 10
	// DefaultCacheDuration is the cacheSeconds answered when Options.CacheDuration is not set.
	DefaultCacheDuration = 5 * time.Minute
	// DefaultMaxConcurrent bounds the requests served at once when Options.MaxConcurrent is not
	// set: the admission webhook's bound (admission.DefaultMaxConcurrentReviews). A request
	// takes at most one TokenReview and a lookup in memory, milliseconds; one whose token is in
	// the decision cache takes microseconds.
	DefaultMaxConcurrent = 8
	// QueueWait is how long a request over the bound waits for a slot before it is refused with
	// 429, as the webhook's ReviewWait: a node pool starting many Pods at once asks for more
	// than the bound in a burst, and a short wait serves it. At most 4 requests per slot wait;
	// past that they are refused at once.
	QueueWait = admission.ReviewWait
	// ReviewTimeout bounds a TokenReview.
	ReviewTimeout = 5 * time.Second
	// RequestTimeout bounds the whole request once it holds a slot: the TokenReview and the
	// lookup.
	RequestTimeout = 10 * time.Second
)

// Reasons of the refusals, the "reason" of their body.
const (
	ReasonBadRequest       = "BadRequest"       // 400: the body or the image is not understood
	ReasonUnauthenticated  = "Unauthenticated"  // 401: no token, or not one of a ServiceAccount for the audience
	ReasonNoRule           = "NoRule"           // 404: no rule delivers the registry to the ServiceAccount
	ReasonMethodNotAllowed = "MethodNotAllowed" // 405: not a POST
	ReasonTooLarge         = "TooLarge"         // 413: the body is over MaxRequestBytes
	ReasonTooManyRequests  = "TooManyRequests"  // 429: over the bound of requests at once
	ReasonReviewFailed     = "ReviewFailed"     // 503: the TokenReview itself failed
	ReasonLookupFailed     = "LookupFailed"     // 503: the Lookup failed
)

// Answer is the credential a rule delivers.
type Answer struct {
	// Rule is the name of the ImagePullSecret that delivers it, for the audit trail.
	Rule string
	// Username and Password are the credential.
	Username, Password string
	// ExpiresAt is when the credential stops being valid; zero when unknown.
	ExpiresAt time.Time
}

// Lookup finds the credential that a rule with delivery CredentialProvider or Both delivers to
// the ServiceAccount namespace/name for the registry host (docker.server equal to host).
// ok=false: none.
//
// The endpoint calls it only for a ServiceAccount that a TokenReview authenticated, and serves
// every Answer it returns with ok=true: nothing refuses the request after it.
type Lookup interface {
	Credential(ctx context.Context, namespace, serviceAccount, host string) (Answer, bool, error)
}

// Options configures the endpoint.
type Options struct {
	// Lookup finds the credentials; required.
	Lookup Lookup
	// Reviews creates the TokenReviews, with Spec.Audiences [tcrv1.CredentialProviderAudience];
	// required. The manager's ServiceAccount needs create on tokenreviews.
	Reviews authenticationv1client.TokenReviewInterface
	// CacheDuration is the cacheSeconds answered, shortened to the credential's expiry;
	// DefaultCacheDuration when not positive.
	CacheDuration time.Duration
	// MaxConcurrent bounds the requests served at once; DefaultMaxConcurrent when not positive.
	MaxConcurrent int
	// Log receives the audit trail (one line per credential served) and, at V(1), the
	// refusals.
	Log logr.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// handler serves the endpoint.
type handler struct {
	lookup        Lookup
	reviewer      *reviewer
	cacheDuration time.Duration
	limit         *admission.Limiter
	log           logr.Logger
	now           func() time.Time
}

// NewHandler returns the endpoint's handler, to be served at Path over HTTPS. It panics when
// opts.Lookup or opts.Reviews is nil.
func NewHandler(opts Options) http.Handler {
	if opts.Lookup == nil || opts.Reviews == nil {
		panic("credprovider.NewHandler: Options.Lookup and Options.Reviews are required")
	}
	if opts.CacheDuration <= 0 {
		opts.CacheDuration = DefaultCacheDuration
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &handler{
		lookup:        opts.Lookup,
		reviewer:      newReviewer(opts.Reviews, opts.Now, MaxCachedDecisions),
		cacheDuration: opts.CacheDuration,
		limit:         admission.NewLimiter(opts.MaxConcurrent),
		log:           opts.Log,
		now:           opts.Now,
	}
}

// refusal is the body of a refusal (wire.Refusal); code and result are not sent.
type refusal struct {
	wire.Refusal
	code   int
	result string // the metric's label
}

func refuse(code int, reason, result, format string, args ...any) *refusal {
	return &refusal{Refusal: wire.Refusal{Reason: reason, Message: fmt.Sprintf(format, args...)}, code: code, result: result}
}

// Messages of the refusals that are always the same.
var (
	msgNoToken = fmt.Sprintf("the request carries no bearer token: send the Pod's ServiceAccount token for the audience %s as Authorization: Bearer <token>",
		tcrv1.CredentialProviderAudience)
	msgTokenTooLong   = fmt.Sprintf("the bearer token is over the limit of %d bytes", MaxTokenBytes)
	msgNotAuthentic   = fmt.Sprintf("the token is not a valid ServiceAccount token for the audience %s", tcrv1.CredentialProviderAudience)
	msgNoAudience     = fmt.Sprintf("the token review did not confirm the audience %s", tcrv1.CredentialProviderAudience)
	msgNotSA          = "the token does not authenticate a ServiceAccount"
	msgTooLarge       = fmt.Sprintf("the request body is over the limit of %d bytes", MaxRequestBytes)
	msgMethod         = "the credential endpoint serves only POST"
	msgReviewFailed   = "the token could not be reviewed: the TokenReview failed; retry"
	msgLookupFailed   = "the rules could not be evaluated; retry"
	msgNoImage        = `the request names no image: send {"image":"<image reference>"}`
	msgTooManyPattern = "too many concurrent credential requests: tcr-assistant serves at most %d at once; retry"
)

// TooManyRequestsMessage is the message of a request refused for being over the bound of max.
func TooManyRequestsMessage(maxConcurrent int) string {
	return fmt.Sprintf(msgTooManyPattern, maxConcurrent)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The checks that cost nothing come first, then the slot, the body, the TokenReview and the
	// lookup.
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refused(w, refuse(http.StatusMethodNotAllowed, ReasonMethodNotAllowed, resultMethodNotAllowed, "%s", msgMethod), nil)
		return
	}
	token, bad := bearerToken(r)
	if bad != nil {
		h.refused(w, bad, nil)
		return
	}
	if r.ContentLength > MaxRequestBytes {
		h.refused(w, refuse(http.StatusRequestEntityTooLarge, ReasonTooLarge, resultTooLarge, "%s", msgTooLarge), nil)
		return
	}
	release, ok := h.limit.Acquire(r.Context())
	if !ok {
		h.refused(w, refuse(http.StatusTooManyRequests, ReasonTooManyRequests, resultTooManyRequests, msgTooManyPattern, h.limit.Max()), nil)
		return
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), RequestTimeout)
	defer cancel()

	host, bad := readImageHost(w, r)
	if bad != nil {
		h.refused(w, bad, nil)
		return
	}
	d, err := h.reviewer.review(ctx, token)
	if err != nil {
		h.log.Error(err, "Reviewing the token of a credential request failed", "registry", host)
		h.refused(w, refuse(http.StatusServiceUnavailable, ReasonReviewFailed, resultReviewFailed, "%s", msgReviewFailed), nil)
		return
	}
	if d.refusal != "" {
		h.refused(w, refuse(http.StatusUnauthorized, ReasonUnauthenticated, resultUnauthenticated, "%s", d.refusal),
			[]any{"registry", host, "review", d.detail})
		return
	}
	who := []any{"namespace", d.namespace, "serviceAccount", d.name, "registry", host}
	a, found, err := h.lookup.Credential(ctx, d.namespace, d.name, host)
	if err != nil {
		h.log.Error(err, "Looking up the credential of a ServiceAccount failed", who...)
		h.refused(w, refuse(http.StatusServiceUnavailable, ReasonLookupFailed, resultLookupFailed, "%s", msgLookupFailed), nil)
		return
	}
	if !found {
		h.refused(w, refuse(http.StatusNotFound, ReasonNoRule, resultNoRule,
			"no rule delivers a credential for %s to the ServiceAccount %s/%s", host, d.namespace, d.name), who)
		return
	}
	h.served(w, host, a, d)
}

// served answers the credential a and writes the audit line.
func (h *handler) served(w http.ResponseWriter, host string, a Answer, d decision) {
	now := h.now()
	lifetime := h.cacheDuration
	resp := wire.Answer{Registry: host, Username: a.Username, Password: a.Password}
	if !a.ExpiresAt.IsZero() {
		lifetime = min(lifetime, a.ExpiresAt.Sub(now))
		resp.ExpiresAt = a.ExpiresAt.UTC().Format(time.RFC3339)
	}
	resp.CacheSeconds = int64(max(lifetime, 0) / time.Second)
	countResult(resultServed)
	h.log.Info("Served a credential to a ServiceAccount", "rule", a.Rule, "namespace", d.namespace, "serviceAccount", d.name, "registry", host)
	writeJSON(w, http.StatusOK, resp)
}

// refused answers f, counts it and logs it at V(1) with keysAndValues.
func (h *handler) refused(w http.ResponseWriter, f *refusal, keysAndValues []any) {
	countResult(f.result)
	h.log.V(1).Info("Refused a credential request", append([]any{"reason", f.Reason, "message", f.Message}, keysAndValues...)...)
	writeJSON(w, f.code, f)
}

// writeJSON answers body as one line of JSON, with "<" and ">" as they are (the messages show
// "<token>" and "<image reference>").
func writeJSON(w http.ResponseWriter, code int, body any) {
	var data bytes.Buffer
	enc := json.NewEncoder(&data)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		panic(err) // strings and numbers always encode
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(data.Bytes())
}

// bearerToken returns the request's bearer token, or the refusal of a request without one.
func bearerToken(r *http.Request) (string, *refusal) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", refuse(http.StatusUnauthorized, ReasonUnauthenticated, resultUnauthenticated, "%s", msgNoToken)
	}
	if len(token) > MaxTokenBytes {
		return "", refuse(http.StatusUnauthorized, ReasonUnauthenticated, resultUnauthenticated, "%s", msgTokenTooLong)
	}
	return token, nil
}

// readImageHost reads the body, at most MaxRequestBytes, and returns the registry host of its
// image, lowercase, docker.io for an image without one.
func readImageHost(w http.ResponseWriter, r *http.Request) (string, *refusal) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return "", refuse(http.StatusRequestEntityTooLarge, ReasonTooLarge, resultTooLarge, "%s", msgTooLarge)
		}
		return "", refuse(http.StatusBadRequest, ReasonBadRequest, resultBadRequest, "reading the request body: %v", err)
	}
	// Fields other than image are ignored, so that a newer plugin may add some.
	var req wire.Request
	if err := json.Unmarshal(data, &req); err != nil {
		return "", refuse(http.StatusBadRequest, ReasonBadRequest, resultBadRequest, `the request body is not {"image":"<image reference>"}: %v`, err)
	}
	if req.Image == "" {
		return "", refuse(http.StatusBadRequest, ReasonBadRequest, resultBadRequest, "%s", msgNoImage)
	}
	named, err := reference.ParseNormalizedNamed(req.Image)
	if err != nil {
		return "", refuse(http.StatusBadRequest, ReasonBadRequest, resultBadRequest, "the image %q is not a valid image reference: %v", req.Image, err)
	}
	return strings.ToLower(reference.Domain(named)), nil
}
