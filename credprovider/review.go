package credprovider

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
)

// The decision cache.
const (
	// MaxCachedDecisions bounds the TokenReview decisions kept; past it the oldest is dropped.
	MaxCachedDecisions = 10_000
	// AcceptanceCacheDuration is how long a token that a TokenReview accepted is trusted
	// without another review, unless it expires sooner: the token of a deleted ServiceAccount,
	// or of a deleted Pod, is refused at most this long after the API server refuses it, which
	// kube-apiserver does within 10 s (it caches its own acceptances that long).
	AcceptanceCacheDuration = time.Minute
	// RefusalCacheDuration is how long a token that a TokenReview refused is refused without
	// another review, so that a flood of one forged token costs one review.
	RefusalCacheDuration = 10 * time.Second
	// maxDetailBytes bounds what a refusal keeps of the review's own words, for the log.
	maxDetailBytes = 200
)

// errReviewIncomplete is the outcome of a TokenReview that did not return one.
var errReviewIncomplete = errors.New("the TokenReview returned no review")

// decision is what a TokenReview decided about a token: the ServiceAccount it authenticates,
// or the message of its refusal.
type decision struct {
	namespace, name string
	refusal         string // the message answered; "" when accepted
	detail          string // why, from the review, for the log only
}

// reviewer reviews tokens, keeping its decisions in a cache keyed by the token's SHA-256 (never
// the token), and making one review at a time per token.
type reviewer struct {
	reviews authenticationv1client.TokenReviewInterface
	now     func() time.Time

	mu       sync.Mutex
	cache    *decisionCache
	inflight map[[sha256.Size]byte]*call
}

// call is a review in flight; done is closed when d and err are set.
type call struct {
	done chan struct{}
	d    decision
	err  error
}

func newReviewer(reviews authenticationv1client.TokenReviewInterface, now func() time.Time, maxDecisions int) *reviewer {
	return &reviewer{
		reviews: reviews, now: now,
		cache:    newDecisionCache(maxDecisions),
		inflight: map[[sha256.Size]byte]*call{},
	}
}

// review returns the decision about token: a cached one, the one of a review of the same token
// in flight, or that of a new TokenReview. An error means the TokenReview itself failed; it is
// not cached.
func (rv *reviewer) review(ctx context.Context, token string) (decision, error) {
	key := sha256.Sum256([]byte(token))
	rv.mu.Lock()
	if d, ok := rv.cache.get(key, rv.now()); ok {
		rv.mu.Unlock()
		return d, nil
	}
	if c, ok := rv.inflight[key]; ok {
		rv.mu.Unlock()
		select {
		case <-c.done:
			return c.d, c.err
		case <-ctx.Done():
			return decision{}, ctx.Err()
		}
	}
	// Until the review returns, its outcome is a failure: a review that panics must not leave
	// an acceptance of no one behind, for this request, its waiters or the cache.
	c := &call{done: make(chan struct{}), err: errReviewIncomplete}
	rv.inflight[key] = c
	rv.mu.Unlock()
	defer func() {
		rv.mu.Lock()
		delete(rv.inflight, key)
		if c.err == nil {
			now := rv.now()
			if expires := decisionExpiry(c.d, token, now); expires.After(now) {
				rv.cache.put(key, c.d, expires)
			}
		}
		rv.mu.Unlock()
		close(c.done)
	}()
	// Others may wait for this review: it runs to its own timeout even when the request that
	// started it ends.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReviewTimeout)
	defer cancel()
	c.d, c.err = rv.tokenReview(rctx, token)
	return c.d, c.err
}

// tokenReview asks the API server about token for the audience.
func (rv *reviewer) tokenReview(ctx context.Context, token string) (decision, error) {
	tr, err := rv.reviews.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{tcrv1.CredentialProviderAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, errors.New(redact(err.Error(), token))
	}
	if tr == nil {
		return decision{}, errReviewIncomplete
	}
	st := tr.Status
	if !st.Authenticated {
		return decision{refusal: msgNotAuthentic, detail: detail(st.Error, token)}, nil
	}
	if !slices.Contains(st.Audiences, tcrv1.CredentialProviderAudience) {
		return decision{refusal: msgNoAudience, detail: detail(fmt.Sprintf("the review confirmed the audiences %q", st.Audiences), token)}, nil
	}
	namespace, name, err := serviceaccount.SplitUsername(st.User.Username)
	if err != nil {
		return decision{refusal: msgNotSA, detail: detail(fmt.Sprintf("the token authenticates the user %q", st.User.Username), token)}, nil
	}
	return decision{namespace: namespace, name: name}, nil
}

// decisionExpiry is when the decision d about token, made at now, expires: RefusalCacheDuration
// after now for a refusal; AcceptanceCacheDuration after now for an acceptance, or the token's
// expiry when it comes first.
func decisionExpiry(d decision, token string, now time.Time) time.Time {
	if d.refusal != "" {
		return now.Add(RefusalCacheDuration)
	}
	expires := now.Add(AcceptanceCacheDuration)
	if exp, ok := credcheck.JWTExpiry(token); ok && exp.Before(expires) {
		expires = exp
	}
	return expires
}

// redact replaces token in s, so that no error or log line can carry it.
func redact(s, token string) string {
	return strings.ReplaceAll(s, token, "<token>")
}

// detail is s redacted and cut to maxDetailBytes, on one line.
func detail(s, token string) string {
	s = strings.Join(strings.Fields(redact(s, token)), " ")
	if len(s) > maxDetailBytes {
		s = s[:maxDetailBytes] + "…"
	}
	return s
}

// decisionCache holds decisions until they expire, at most max, dropping the oldest first. It is
// not safe for concurrent use.
type decisionCache struct {
	max     int
	entries map[[sha256.Size]byte]*list.Element
	order   *list.List // of *cacheEntry, oldest first
}

type cacheEntry struct {
	key     [sha256.Size]byte
	d       decision
	expires time.Time
}

func newDecisionCache(maxEntries int) *decisionCache {
	return &decisionCache{max: maxEntries, entries: map[[sha256.Size]byte]*list.Element{}, order: list.New()}
}

func (c *decisionCache) get(key [sha256.Size]byte, now time.Time) (decision, bool) {
	e, ok := c.entries[key]
	if !ok {
		return decision{}, false
	}
	entry := e.Value.(*cacheEntry)
	if !now.Before(entry.expires) {
		c.remove(e)
		return decision{}, false
	}
	return entry.d, true
}

func (c *decisionCache) put(key [sha256.Size]byte, d decision, expires time.Time) {
	if e, ok := c.entries[key]; ok {
		c.remove(e)
	}
	for c.order.Len() >= c.max {
		c.remove(c.order.Front())
	}
	c.entries[key] = c.order.PushBack(&cacheEntry{key: key, d: d, expires: expires})
}

func (c *decisionCache) remove(e *list.Element) {
	delete(c.entries, e.Value.(*cacheEntry).key)
	c.order.Remove(e)
}

func (c *decisionCache) len() int { return c.order.Len() }
