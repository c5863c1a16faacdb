package credprovider

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
)

// The tests of this file answer the TokenReviews themselves, for what the local API server never
// answers: a failure, a user that is not a ServiceAccount, a review blind to audiences.

// jwt is an unsigned token whose payload is claims.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(claims)) + ".c2lnbmF0dXJl"
}

// accept answers that the token authenticates user for audiences.
func accept(user string, audiences ...string) func(*authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
	return func(tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		out := tr.DeepCopy()
		out.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: user}, Audiences: audiences}
		return out, nil
	}
}

func fakeFixture(t *testing.T, answer func(*authenticationv1.TokenReview) (*authenticationv1.TokenReview, error), configure ...func(*Options)) (*fixture, *fakeReviews) {
	fake := &fakeReviews{answer: answer}
	return newFixture(t, append([]func(*Options){func(o *Options) { o.Reviews = fake }}, configure...)...), fake
}

// TestTheReviewAsksForTheAudience: the TokenReview names the audience, and carries the token.
func TestTheReviewAsksForTheAudience(t *testing.T) {
	var asked authenticationv1.TokenReviewSpec
	f, _ := fakeFixture(t, func(tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		asked = tr.Spec
		return accept("system:serviceaccount:team:builder", audience)(tr)
	})
	f.post("the-token", image)
	assert.Equal(t, authenticationv1.TokenReviewSpec{Token: "the-token", Audiences: []string{"tcr-assistant.tcr.tencentcloudcr.com"}}, asked)
}

// TestAFailedReviewIsNotCached: a TokenReview that fails is answered with 503 ReviewFailed and
// logged as an error, the token redacted from it; the next request reviews again.
func TestAFailedReviewIsNotCached(t *testing.T) {
	token := jwt(`{"exp":4102444800}`)
	f, fake := fakeFixture(t, func(tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		return nil, fmt.Errorf("the API server choked on %s", tr.Spec.Token)
	})
	before := counts()
	for range 2 {
		a := f.post(token, image)
		assert.Equal(t, http.StatusServiceUnavailable, a.code)
		assert.Equal(t, `{"reason":"ReviewFailed","message":"the token could not be reviewed: the TokenReview failed; retry"}`+"\n", a.body)
	}
	assert.Equal(t, int32(2), fake.n.Load())
	assertCounted(t, before, map[string]float64{resultReviewFailed: 2})
	lines := f.logLines()
	require.Len(t, lines, 4) // an error and a refusal each
	assert.Equal(t, map[string]any{
		"logger": "", "msg": "Reviewing the token of a credential request failed",
		"error": "the API server choked on <token>", "registry": registry,
	}, lines[0])
	assert.NotContains(t, f.logs.String(), token)
}

// TestReviewsThatDoNotConfirmAServiceAccountForTheAudience: a review that authenticates the token
// without confirming the audience (an authenticator blind to audiences), or authenticates a user
// that is not a ServiceAccount, is refused with 401, and the refusal is cached.
func TestReviewsThatDoNotConfirmAServiceAccountForTheAudience(t *testing.T) {
	for _, tc := range []struct {
		name, user string
		audiences  []string
		message    string
	}{
		{"no-audience", "system:serviceaccount:team:builder", nil, "the token review did not confirm the audience tcr-assistant.tcr.tencentcloudcr.com"},
		{"another-audience", "system:serviceaccount:team:builder", []string{"another.example.com"}, "the token review did not confirm the audience tcr-assistant.tcr.tencentcloudcr.com"},
		{"a-user", "alice", []string{audience}, "the token does not authenticate a ServiceAccount"},
		{"a-node", "system:node:node-1", []string{audience}, "the token does not authenticate a ServiceAccount"},
		{"a-malformed-serviceaccount", "system:serviceaccount:team:builder:extra", []string{audience}, "the token does not authenticate a ServiceAccount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, fake := fakeFixture(t, accept(tc.user, tc.audiences...))
			f.lookup.set(ruleKey{"team", "builder", registry}, Answer{Rule: "r", Username: "u", Password: password})
			for range 3 {
				a := f.post("some-token", image)
				assert.Equal(t, http.StatusUnauthorized, a.code)
				assert.Equal(t, refusalBody(ReasonUnauthenticated, tc.message), a.body)
			}
			assert.Equal(t, int32(1), fake.n.Load())
			assert.Equal(t, 0, f.lookup.calls)
		})
	}
}

// TestALookupFailureIsAnswered503: a Lookup that fails is answered with 503 LookupFailed, and
// logged as an error.
func TestALookupFailureIsAnswered503(t *testing.T) {
	f, _ := fakeFixture(t, accept("system:serviceaccount:team:builder", audience))
	f.lookup.err = errors.New("the rules are not synced yet")
	before := counts()
	a := f.post("some-token", image)
	assert.Equal(t, http.StatusServiceUnavailable, a.code)
	assert.Equal(t, `{"reason":"LookupFailed","message":"the rules could not be evaluated; retry"}`+"\n", a.body)
	assertCounted(t, before, map[string]float64{resultLookupFailed: 1})
	assert.Equal(t, map[string]any{
		"logger": "", "msg": "Looking up the credential of a ServiceAccount failed", "error": "the rules are not synced yet",
		"namespace": "team", "serviceAccount": "builder", "registry": registry,
	}, f.logLines()[0])
}

// TestTheAcceptanceIsCachedNoLongerThanTheToken: an accepted token is trusted without a review
// for AcceptanceCacheDuration, or until its exp when that comes first; a token without a
// readable exp for AcceptanceCacheDuration.
func TestTheAcceptanceIsCachedNoLongerThanTheToken(t *testing.T) {
	f, fake := fakeFixture(t, accept("system:serviceaccount:team:builder", audience))
	f.lookup.set(ruleKey{"team", "builder", registry}, Answer{Rule: "r", Username: "u", Password: password})
	now := f.clock.Now()
	for _, tc := range []struct {
		name     string
		token    string
		lifetime time.Duration
	}{
		{"expires-in-30s", jwt(fmt.Sprintf(`{"exp":%d,"sub":"x"}`, now.Add(30*time.Second).Unix())), 30 * time.Second},
		{"expires-in-an-hour", jwt(fmt.Sprintf(`{"exp":%d}`, now.Add(time.Hour).Unix())), AcceptanceCacheDuration},
		{"no-exp", jwt(`{"sub":"x"}`), AcceptanceCacheDuration},
		{"not-a-jwt", "opaque-token", AcceptanceCacheDuration},
		{"payload-not-json", "a.bm90IGpzb24.c", AcceptanceCacheDuration},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := f.clock.Now()
			n := fake.n.Load()
			require.Equal(t, http.StatusOK, f.post(tc.token, image).code)
			f.clock.advance(tc.lifetime - time.Second)
			require.Equal(t, http.StatusOK, f.post(tc.token, image).code)
			assert.Equal(t, n+1, fake.n.Load(), "cached")
			f.clock.advance(time.Second)
			require.Equal(t, http.StatusOK, f.post(tc.token, image).code)
			assert.Equal(t, n+2, fake.n.Load(), "reviewed again after %v", f.clock.Now().Sub(start))
		})
	}
}

// TestTheDecisionCacheIsBounded: past its bound, the cache drops its oldest decisions; an expired
// decision is dropped when read.
func TestTheDecisionCacheIsBounded(t *testing.T) {
	c := newDecisionCache(3)
	now := time.Unix(1_700_000_000, 0)
	key := func(i int) [sha256.Size]byte { return sha256.Sum256(fmt.Appendf(nil, "token-%d", i)) }
	for i := range 5 {
		c.put(key(i), decision{namespace: "ns", name: fmt.Sprint(i)}, now.Add(time.Minute))
	}
	assert.Equal(t, 3, c.len())
	for i := range 5 {
		d, ok := c.get(key(i), now)
		assert.Equal(t, i >= 2, ok, i)
		if ok {
			assert.Equal(t, fmt.Sprint(i), d.name)
		}
	}
	c.put(key(3), decision{refusal: "no"}, now.Add(time.Second)) // replaces, does not grow
	assert.Equal(t, 3, c.len())
	_, ok := c.get(key(3), now.Add(time.Second))
	assert.False(t, ok, "expired")
	assert.Equal(t, 2, c.len(), "an expired decision is dropped when read")

	assert.Equal(t, 10_000, newReviewer(nil, time.Now, MaxCachedDecisions).cache.max)
}

// TestAFloodOfDistinctTokensKeepsTheCacheBounded: 3 times MaxCachedDecisions distinct tokens
// leave at most MaxCachedDecisions decisions.
func TestAFloodOfDistinctTokensKeepsTheCacheBounded(t *testing.T) {
	f, fake := fakeFixture(t, func(tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		out := tr.DeepCopy()
		out.Status.Error = "invalid bearer token"
		return out, nil
	})
	f.opts.Log = f.opts.Log.V(1) // quiet: the refusals are logged at V(2)
	h := NewHandler(f.opts).(*handler)
	f.h = h
	for i := range 3 * MaxCachedDecisions {
		a := f.post(fmt.Sprintf("forged-%d", i), image)
		require.Equal(t, http.StatusUnauthorized, a.code)
	}
	assert.Equal(t, int32(3*MaxCachedDecisions), fake.n.Load())
	assert.Equal(t, MaxCachedDecisions, h.reviewer.cache.len())
	assert.Empty(t, h.reviewer.inflight)
}

// TestTheDetailIsOneShortLine: what a refusal keeps of the review is redacted, on one line and
// short.
func TestTheDetailIsOneShortLine(t *testing.T) {
	assert.Equal(t, "invalid <token>: bad", detail("invalid\n  the-token:\tbad", "the-token"))
	long := detail(strings.Repeat("x", 1000), "t")
	assert.Equal(t, strings.Repeat("x", maxDetailBytes)+"…", long)
}

// TestAReviewThatPanicsAcceptsNoOne: a Reviews that panics, or returns no review, leaves no
// decision behind; the next request reviews again.
func TestAReviewThatPanicsAcceptsNoOne(t *testing.T) {
	calls := 0
	f, fake := fakeFixture(t, func(*authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		calls++
		if calls == 1 {
			panic("a broken client")
		}
		return nil, nil
	})
	assert.Panics(t, func() { f.post("some-token", image) })
	h := f.h.(*handler)
	assert.Empty(t, h.reviewer.inflight)
	assert.Equal(t, 0, h.reviewer.cache.len())
	a := f.post("some-token", image)
	assert.Equal(t, http.StatusServiceUnavailable, a.code)
	assert.Equal(t, refusalBody(ReasonReviewFailed, "the token could not be reviewed: the TokenReview failed; retry"), a.body)
	assert.Equal(t, int32(2), fake.n.Load())
	assert.Equal(t, 0, f.lookup.calls)
}
