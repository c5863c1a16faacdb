package credprovider

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

const (
	registry = "tcr.example.com"
	image    = registry + "/team/app:1.0"
	password = "s3cr3t-password-0123"
	audience = tcrv1.CredentialProviderAudience
)

var (
	bodyNotAuthentic = `{"reason":"Unauthenticated","message":"the token is not a valid ServiceAccount token for the audience tcr-assistant.tcr.tencentcloudcr.com"}` + "\n"
	bodyNoToken      = `{"reason":"Unauthenticated","message":"the request carries no bearer token: send the Pod's ServiceAccount token for the audience tcr-assistant.tcr.tencentcloudcr.com as Authorization: Bearer <token>"}` + "\n"
)

// served is the exact body of a credential served.
func served(registry, username, password string, cacheSeconds int, expiresAt time.Time) string {
	exp := ""
	if !expiresAt.IsZero() {
		exp = fmt.Sprintf(`,"expiresAt":%q`, expiresAt.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf(`{"registry":%q,"username":%q,"password":%q,"cacheSeconds":%d%s}`+"\n", registry, username, password, cacheSeconds, exp)
}

// TestAServiceAccountGetsTheCredentialOfItsRule: a token the TokenRequest API issued for the
// audience gets the credential the rule delivers to its ServiceAccount for the image's registry,
// with cacheSeconds shortened to the credential's expiry; the audit trail names the rule, the
// ServiceAccount and the registry. A second request within the decision cache's window makes no
// TokenReview.
func TestAServiceAccountGetsTheCredentialOfItsRule(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount("builder")
	expires := f.clock.Now().Add(2 * time.Minute)
	f.lookup.set(ruleKey{f.ns, "builder", registry}, Answer{Rule: "tcr-rule", Username: "tcr-user", Password: password, ExpiresAt: expires})
	token := f.token("builder", audience)
	before := counts()

	a := f.post(token, image)
	assert.Equal(t, http.StatusOK, a.code)
	assert.Equal(t, served(registry, "tcr-user", password, 120, expires), a.body)
	assert.Equal(t, `{"registry":"tcr.example.com","username":"tcr-user","password":"s3cr3t-password-0123","cacheSeconds":120,"expiresAt":"`+
		expires.UTC().Format(time.RFC3339)+`"}`+"\n", a.body)
	assert.Equal(t, "application/json", a.header.Get("Content-Type"))
	assert.Equal(t, "no-store", a.header.Get("Cache-Control"))
	assert.Equal(t, int32(1), f.reviews.n.Load())

	// 30 s later, the same token for the same registry, named otherwise (upper case, digest): no
	// second TokenReview, and 30 s less to cache.
	f.clock.advance(30 * time.Second)
	a = f.post(token, "TCR.example.com/team/app@sha256:"+strings.Repeat("a", 64))
	assert.Equal(t, http.StatusOK, a.code)
	assert.Equal(t, served(registry, "tcr-user", password, 90, expires), a.body)
	assert.Equal(t, int32(1), f.reviews.n.Load(), "the decision is cached")
	assertCounted(t, before, map[string]float64{resultServed: 2})

	want := map[string]any{
		"logger": "", "level": float64(0), "msg": "Served a credential to a ServiceAccount",
		"rule": "tcr-rule", "namespace": f.ns, "serviceAccount": "builder", "registry": registry,
	}
	assert.Equal(t, []map[string]any{want, want}, f.logLines())
}

// TestCacheSeconds: cacheSeconds is Options.CacheDuration (5 minutes by default), shortened to
// the credential's expiry, and never negative; expiresAt is left out when unknown. The registry
// is the image's host with its port, docker.io for an image without a host.
func TestCacheSeconds(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cacheDur     time.Duration
		image, host  string
		expiresIn    time.Duration // 0: unknown
		cacheSeconds int
	}{
		{name: "default", image: "tcr.example.com:5000/team/app", host: "tcr.example.com:5000", cacheSeconds: 300},
		{name: "configured", cacheDur: 90 * time.Second, image: "nginx", host: "docker.io", cacheSeconds: 90},
		{name: "longer-than-the-credential", cacheDur: time.Hour, image: image, host: registry, expiresIn: 10*time.Minute + 500*time.Millisecond, cacheSeconds: 600},
		{name: "credential-outlives-it", image: image, host: registry, expiresIn: time.Hour, cacheSeconds: 300},
		{name: "expired", image: image, host: registry, expiresIn: -time.Minute, cacheSeconds: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.CacheDuration = tc.cacheDur })
			f.serviceAccount("app")
			var expires time.Time
			if tc.expiresIn != 0 {
				expires = f.clock.Now().Add(tc.expiresIn)
			}
			f.lookup.set(ruleKey{f.ns, "app", tc.host}, Answer{Rule: "r", Username: "u", Password: "p", ExpiresAt: expires})
			a := f.post(f.token("app", audience), tc.image)
			assert.Equal(t, http.StatusOK, a.code)
			assert.Equal(t, served(tc.host, "u", "p", tc.cacheSeconds, expires.Truncate(time.Second)), a.body)
		})
	}
}

// TestATokenForAnotherAudienceIsRefused: a real token of a ServiceAccount that a rule selects,
// but issued for another audience, or for the API server's own, is refused with 401; one issued
// for both audiences is served. The refusal is logged at V(1) with the review's reason.
func TestATokenForAnotherAudienceIsRefused(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount("builder")
	f.lookup.set(ruleKey{f.ns, "builder", registry}, Answer{Rule: "tcr-rule", Username: "tcr-user", Password: password})
	before := counts()

	for _, token := range []string{f.token("builder", "another.example.com"), f.token("builder")} {
		a := f.post(token, image)
		assert.Equal(t, http.StatusUnauthorized, a.code)
		assert.Equal(t, bodyNotAuthentic, a.body)
	}
	a := f.post(f.token("builder", "another.example.com", audience), image)
	assert.Equal(t, http.StatusOK, a.code)
	assert.Equal(t, served(registry, "tcr-user", password, 300, time.Time{}), a.body)
	assertCounted(t, before, map[string]float64{resultUnauthenticated: 2, resultServed: 1})
	assert.Equal(t, 1, f.lookup.calls, "only an authenticated ServiceAccount is looked up")

	lines := f.logLines()
	require.Len(t, lines, 3)
	refusal := lines[0]
	t.Logf("the review said: %v", refusal["review"])
	assert.NotEmpty(t, refusal["review"])
	delete(refusal, "review")
	assert.Equal(t, map[string]any{
		"logger": "", "level": float64(1), "msg": "Refused a credential request", "reason": "Unauthenticated",
		"message": "the token is not a valid ServiceAccount token for the audience tcr-assistant.tcr.tencentcloudcr.com", "registry": registry,
	}, refusal)
}

// forge signs the claims of token with a key of its own: a token right in every claim (issuer,
// subject, audience, expiry) but the signature.
func forge(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	signed := parts[0] + "." + parts[1]
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	require.NoError(t, err)
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestAForgedTokenIsRefusedForOneReview: forged tokens (a real token's claims signed with another
// key, a real token with its signature cut) are refused with 401. A flood of one forged token,
// 20 at once and 20 after, costs one TokenReview; the refusal is cached RefusalCacheDuration.
func TestAForgedTokenIsRefusedForOneReview(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount("builder")
	f.lookup.set(ruleKey{f.ns, "builder", registry}, Answer{Rule: "tcr-rule", Username: "tcr-user", Password: password})
	real := f.token("builder", audience)
	forged := forge(t, real)
	cut := real[:len(real)-8]
	before := counts()

	var wg sync.WaitGroup
	answers := make(chan answer, 20)
	for range 20 {
		wg.Go(func() { answers <- f.post(forged, image) })
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		assert.Equal(t, answer{code: http.StatusUnauthorized, body: bodyNotAuthentic}, answer{code: a.code, body: a.body})
	}
	for range 20 {
		a := f.post(forged, image)
		assert.Equal(t, bodyNotAuthentic, a.body)
	}
	assert.Equal(t, int32(1), f.reviews.n.Load(), "a flood of one forged token costs one TokenReview")

	f.clock.advance(RefusalCacheDuration)
	assert.Equal(t, bodyNotAuthentic, f.post(forged, image).body)
	assert.Equal(t, int32(2), f.reviews.n.Load(), "the refusal expires")
	assert.Equal(t, bodyNotAuthentic, f.post(cut, image).body)
	assert.Equal(t, http.StatusOK, f.post(real, image).code)
	assert.Equal(t, int32(4), f.reviews.n.Load())
	assertCounted(t, before, map[string]float64{resultUnauthenticated: 42, resultServed: 1})
	assert.Equal(t, 1, f.lookup.calls)
}

// TestADeletedServiceAccountsTokenIsRefused: the token of a deleted ServiceAccount is served from
// the decision cache until the acceptance expires (AcceptanceCacheDuration), then refused; it
// stays refused when a ServiceAccount of the same name is created again.
func TestADeletedServiceAccountsTokenIsRefused(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount("leaving")
	f.lookup.set(ruleKey{f.ns, "leaving", registry}, Answer{Rule: "tcr-rule", Username: "tcr-user", Password: password})
	token := f.token("leaving", audience)
	require.Equal(t, http.StatusOK, f.post(token, image).code)

	ctx := context.Background()
	require.NoError(t, kube(t).CoreV1().ServiceAccounts(f.ns).Delete(ctx, "leaving", metav1.DeleteOptions{}))
	f.clock.advance(AcceptanceCacheDuration - time.Second)
	assert.Equal(t, http.StatusOK, f.post(token, image).code, "served from the cache within its window")
	assert.Equal(t, int32(1), f.reviews.n.Load())

	// Once the acceptance expires, the token is reviewed again and refused. The API server
	// caches its own acceptance of a token for 10 s and learns of the deletion through an
	// informer: a review that still accepts the token is cached again, so each attempt moves the
	// clock past the window.
	var a answer
	deleted := time.Now()
	require.Eventually(t, func() bool {
		f.clock.advance(AcceptanceCacheDuration)
		a = f.post(token, image)
		return a.code != http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	assert.Equal(t, answer{code: http.StatusUnauthorized, body: bodyNotAuthentic}, answer{code: a.code, body: a.body})
	t.Logf("the API server refused the token %v after the deletion, %d reviews", time.Since(deleted).Round(time.Millisecond), f.reviews.n.Load())

	f.serviceAccount("leaving")
	require.Eventually(t, func() bool {
		_, err := kube(t).CoreV1().ServiceAccounts(f.ns).Get(ctx, "leaving", metav1.GetOptions{})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second) // the API server's informer sees the new ServiceAccount
	f.clock.advance(RefusalCacheDuration)
	n := f.reviews.n.Load()
	a = f.post(token, image)
	assert.Equal(t, answer{code: http.StatusUnauthorized, body: bodyNotAuthentic}, answer{code: a.code, body: a.body},
		"a ServiceAccount of the same name is another ServiceAccount")
	assert.Equal(t, n+1, f.reviews.n.Load())
}

// TestAServiceAccountNoRuleSelectsGetsNoRule: a valid token of a ServiceAccount that no rule
// selects, or that a rule selects for another registry, gets 404 NoRule naming the registry and
// the ServiceAccount from the review. What the request says of a namespace or ServiceAccount is
// ignored.
func TestAServiceAccountNoRuleSelectsGetsNoRule(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount("nobody")
	f.serviceAccount("builder")
	f.lookup.set(ruleKey{f.ns, "builder", "other.example.com"}, Answer{Rule: "other", Username: "u", Password: password})
	f.lookup.set(ruleKey{"kube-system", "admin", registry}, Answer{Rule: "admin", Username: "u", Password: password})
	before := counts()

	a := f.post(f.token("nobody", audience), image)
	assert.Equal(t, http.StatusNotFound, a.code)
	assert.Equal(t, `{"reason":"NoRule","message":"no rule delivers a credential for tcr.example.com to the ServiceAccount `+f.ns+`/nobody"}`+"\n", a.body)

	a = f.send(http.MethodPost, "Bearer "+f.token("builder", audience),
		`{"image":"tcr.example.com/team/app","namespace":"kube-system","serviceAccount":"admin"}`, -2)
	assert.Equal(t, http.StatusNotFound, a.code)
	assert.Equal(t, refusalBody(ReasonNoRule, "no rule delivers a credential for tcr.example.com to the ServiceAccount "+f.ns+"/builder"), a.body)
	assertCounted(t, before, map[string]float64{resultNoRule: 2})

	lines := f.logLines()
	require.Len(t, lines, 2)
	assert.Equal(t, map[string]any{
		"logger": "", "level": float64(1), "msg": "Refused a credential request", "reason": "NoRule",
		"message":   "no rule delivers a credential for tcr.example.com to the ServiceAccount " + f.ns + "/nobody",
		"namespace": f.ns, "serviceAccount": "nobody", "registry": registry,
	}, lines[0])
}

// TestBadRequestsAreRefusedWithoutAReview: a body that is not {"image":...}, or whose image is
// not a reference, is refused with 400 before the token is reviewed.
func TestBadRequestsAreRefusedWithoutAReview(t *testing.T) {
	f := newFixture(t)
	before := counts()
	for _, tc := range []struct{ body, message string }{
		{``, `the request body is not {"image":"<image reference>"}: unexpected end of JSON input`},
		{`[`, `the request body is not {"image":"<image reference>"}: unexpected end of JSON input`},
		{`{"image":1}`, `the request body is not {"image":"<image reference>"}: json: cannot unmarshal number into Go struct field Request.image of type string`},
		{`{"image":"tcr.example.com/app"} {}`, `the request body is not {"image":"<image reference>"}: invalid character '{' after top-level value`},
		{`{}`, `the request names no image: send {"image":"<image reference>"}`},
		{`null`, `the request names no image: send {"image":"<image reference>"}`},
		{`{"image":"tcr.example.com/Team/App"}`, `the image "tcr.example.com/Team/App" is not a valid image reference: invalid reference format: repository name (Team/App) must be lowercase`},
		{`{"image":"tcr.example.com/app\n:x"}`, `the image "tcr.example.com/app\n:x" is not a valid image reference: invalid reference format`},
	} {
		a := f.send(http.MethodPost, "Bearer not-even-a-jwt", tc.body, -2)
		assert.Equal(t, http.StatusBadRequest, a.code, tc.body)
		assert.Equal(t, `{"reason":"BadRequest","message":`+jsonString(tc.message)+"}\n", a.body, tc.body)
	}
	assert.Equal(t, int32(0), f.reviews.n.Load())
	assertCounted(t, before, map[string]float64{resultBadRequest: 8})
}

// jsonString is s as a JSON string, "<" and ">" as they are.
func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// TestTheMethodAndTheTokenAreCheckedFirst: anything but POST gets 405 with Allow: POST; a request
// without a bearer token, or with one over MaxTokenBytes, gets 401; none costs a review.
func TestTheMethodAndTheTokenAreCheckedFirst(t *testing.T) {
	f := newFixture(t)
	before := counts()
	for _, method := range []string{http.MethodGet, http.MethodPut} {
		a := f.send(method, "Bearer x", imageBody(image), -2)
		assert.Equal(t, http.StatusMethodNotAllowed, a.code)
		assert.Equal(t, http.MethodPost, a.header.Get("Allow"))
		assert.Equal(t, `{"reason":"MethodNotAllowed","message":"the credential endpoint serves only POST"}`+"\n", a.body)
	}
	for _, authz := range []string{"", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "bearer"} {
		a := f.send(http.MethodPost, authz, imageBody(image), -2)
		assert.Equal(t, http.StatusUnauthorized, a.code, authz)
		assert.Equal(t, bodyNoToken, a.body, authz)
	}
	a := f.send(http.MethodPost, "Bearer "+strings.Repeat("x", MaxTokenBytes+1), imageBody(image), -2)
	assert.Equal(t, http.StatusUnauthorized, a.code)
	assert.Equal(t, `{"reason":"Unauthenticated","message":"the bearer token is over the limit of 16384 bytes"}`+"\n", a.body)
	assert.Equal(t, int32(0), f.reviews.n.Load())
	assertCounted(t, before, map[string]float64{resultMethodNotAllowed: 2, resultUnauthenticated: 6})
}

// TestTheBodyIsBounded: a body over MaxRequestBytes is refused with 413, unread when it declares
// its length, when it is cut otherwise (chunked); one of exactly MaxRequestBytes is served.
func TestTheBodyIsBounded(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount("builder")
	f.lookup.set(ruleKey{f.ns, "builder", registry}, Answer{Rule: "tcr-rule", Username: "tcr-user", Password: password})
	token := f.token("builder", audience)
	before := counts()

	full := imageBody(image) + strings.Repeat(" ", MaxRequestBytes-len(imageBody(image)))
	require.Len(t, full, MaxRequestBytes)
	tooLarge := `{"reason":"TooLarge","message":"the request body is over the limit of 4096 bytes"}` + "\n"
	for _, length := range []int64{MaxRequestBytes + 1, -1} {
		a := f.send(http.MethodPost, "Bearer "+token, full+" ", length)
		assert.Equal(t, http.StatusRequestEntityTooLarge, a.code)
		assert.Equal(t, tooLarge, a.body)
	}
	assert.Equal(t, int32(0), f.reviews.n.Load())
	a := f.send(http.MethodPost, "Bearer "+token, full, -1)
	assert.Equal(t, http.StatusOK, a.code)
	assert.Equal(t, served(registry, "tcr-user", password, 300, time.Time{}), a.body)
	assertCounted(t, before, map[string]float64{resultTooLarge: 2, resultServed: 1})
}

// TestConcurrentRequestsAreBounded: with MaxConcurrent 2, while two requests are held, 8 more (4
// per slot) wait for a slot and the next is refused at once with 429; once the two are released,
// all ten are served. A wait that outlasts QueueWait is refused too.
func TestConcurrentRequestsAreBounded(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxConcurrent = 2 })
	f.serviceAccount("builder")
	f.lookup.set(ruleKey{f.ns, "builder", registry}, Answer{Rule: "tcr-rule", Username: "tcr-user", Password: password})
	token := f.token("builder", audience)
	require.Equal(t, http.StatusOK, f.post(token, image).code) // the decision is cached
	before := counts()
	lim := f.h.(*handler).limit
	require.Equal(t, 2, lim.Max())

	gate := make(chan struct{})
	f.lookup.mu.Lock()
	f.lookup.gate, f.lookup.entered = gate, make(chan struct{}, 16)
	f.lookup.mu.Unlock()
	release := sync.OnceFunc(func() { close(gate) })
	defer release()
	codes := make(chan int, 16)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { codes <- f.post(token, image).code })
		<-f.lookup.entered
	}
	for range 8 {
		wg.Go(func() { codes <- f.post(token, image).code })
	}
	require.Eventually(t, func() bool { return lim.Waiting() == 8 }, 10*time.Second, time.Millisecond)
	start := time.Now()
	a := f.post(token, image)
	assert.Less(t, time.Since(start), QueueWait/2, "refused at once")
	assert.Equal(t, http.StatusTooManyRequests, a.code)
	assert.Equal(t, `{"reason":"TooManyRequests","message":"too many concurrent credential requests: tcr-assistant serves at most 2 at once; retry"}`+"\n", a.body)
	assert.Equal(t, TooManyRequestsMessage(2), "too many concurrent credential requests: tcr-assistant serves at most 2 at once; retry")
	assert.Empty(t, codes)

	go func() {
		for range 8 {
			<-f.lookup.entered
		}
	}()
	release()
	wg.Wait()
	close(codes)
	for code := range codes {
		assert.Equal(t, http.StatusOK, code)
	}

	// A wait that outlasts the limiter's wait (QueueWait) is refused.
	r1, ok := lim.TryAcquire()
	require.True(t, ok)
	r2, ok := lim.TryAcquire()
	require.True(t, ok)
	assert.Equal(t, http.StatusTooManyRequests, f.post(token, image).code)
	r1()
	r2()
	assert.Zero(t, lim.Waiting())
	assert.Equal(t, int32(1), f.reviews.n.Load())
	assertCounted(t, before, map[string]float64{resultServed: 10, resultTooManyRequests: 2})
}

// TestNoTokenOrPasswordLeaks: after requests served and refused for every reason the local API
// server gives, neither a token nor the password is in the log (at V(1)), in the metrics, or in
// a refusal's body.
func TestNoTokenOrPasswordLeaks(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount("builder")
	f.serviceAccount("nobody")
	f.lookup.set(ruleKey{f.ns, "builder", registry}, Answer{Rule: "tcr-rule", Username: "tcr-user", Password: password})
	good := f.token("builder", audience)
	tokens := []string{good, f.token("builder", "another.example.com"), f.token("nobody", audience), forge(t, good)}
	var bodies []string
	for _, token := range tokens {
		for _, img := range []string{image, "tcr.example.com/UPPER"} {
			a := f.post(token, img)
			if a.code != http.StatusOK {
				bodies = append(bodies, a.body)
			}
		}
	}
	bodies = append(bodies, f.send(http.MethodGet, "Bearer "+good, "", -2).body)
	require.Len(t, bodies, 8)

	gathered, err := metrics.Registry.Gather()
	require.NoError(t, err)
	families := fmt.Sprint(gathered)
	require.Contains(t, families, "tcr_assistant_credential_provider_requests_total")
	logs := f.logs.String()
	require.Contains(t, logs, "Served a credential to a ServiceAccount")
	require.Contains(t, logs, "Refused a credential request")
	for _, secret := range append(tokens, password) {
		assert.NotContains(t, logs, secret)
		assert.NotContains(t, families, secret)
		for _, b := range bodies {
			assert.NotContains(t, b, secret)
		}
		// Nor any large piece of a token (its signature, its claims).
		for _, part := range strings.Split(secret, ".") {
			if len(part) >= 16 {
				assert.NotContains(t, logs, part)
			}
		}
	}
}

// TestTheEndpointOverHTTPS serves the handler over TLS, as the manager does, and posts to it
// with a real client: a credential, and a chunked body over the bound.
func TestTheEndpointOverHTTPS(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount("builder")
	f.lookup.set(ruleKey{f.ns, "builder", registry}, Answer{Rule: "tcr-rule", Username: "tcr-user", Password: password})
	token := f.token("builder", audience)
	srv := httptest.NewTLSServer(f.h)
	defer srv.Close()

	post := func(body string, chunked bool) (int, string) {
		var r io.Reader = strings.NewReader(body)
		if chunked {
			r = struct{ io.Reader }{r} // of unknown length: sent chunked
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL+Path, r)
		require.NoError(t, err)
		require.Equal(t, chunked, req.ContentLength == 0)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		return resp.StatusCode, readAll(t, resp.Body)
	}
	code, body := post(imageBody(image), false)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, served(registry, "tcr-user", password, 300, time.Time{}), body)

	code, body = post(imageBody(image)+strings.Repeat(" ", MaxRequestBytes), true)
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)
	assert.Equal(t, `{"reason":"TooLarge","message":"the request body is over the limit of 4096 bytes"}`+"\n", body)
}
