package admission

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// limited is one answer of a limited handler.
type limited struct {
	code       int
	retryAfter string
	status     metav1.Status // of a refusal
	allowed    bool          // of a review served
}

func postLimited(h http.Handler, body []byte) limited {
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := limited{code: rec.Code, retryAfter: rec.Header().Get("Retry-After")}
	if rec.Code == http.StatusTooManyRequests {
		_ = json.Unmarshal(rec.Body.Bytes(), &out.status)
		return out
	}
	var review struct {
		Response struct{ Allowed bool }
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &review)
	out.allowed = review.Response.Allowed
	return out
}

// TestConcurrentReviewsAreBounded fires 64 reviews of just under MaxRequestBytes at once at the
// webhook's handler behind a Limiter of 8, while the 8 it serves are held: the other 56 are
// refused with 429 and the exact message (no Retry-After), unread (32 after waiting ReviewWait
// for a slot, 24 at once); the 8 are then judged.
// The bytes allocated by the whole burst stay within those of the 8 reviews served plus a
// little per refusal: what reviews hold grows with the bound, not with the callers.
func TestConcurrentReviewsAreBounded(t *testing.T) {
	const callers = 64
	l := NewLimiter(0)
	require.Equal(t, DefaultMaxConcurrentReviews, l.Max())
	h := testHandler(t)
	ips := sample()
	ips.Annotations = map[string]string{"filler": strings.Repeat("x", MaxRequestBytes)}
	ips.Annotations["filler"] = strings.Repeat("x", MaxRequestBytes-len(reviewBody(t, ips))+MaxRequestBytes-1)
	body := reviewBody(t, ips)
	require.Equal(t, MaxRequestBytes-1, len(body))

	// What one review allocates, served alone (warmed up).
	require.True(t, postLimited(h, body).allowed)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	require.True(t, postLimited(h, body).allowed)
	runtime.ReadMemStats(&after)
	one := after.TotalAlloc - before.TotalAlloc

	entered, gate := make(chan struct{}, callers), make(chan struct{})
	held := l.Limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-gate
		h.ServeHTTP(w, r)
	}))
	runtime.GC()
	runtime.ReadMemStats(&before)
	results := make(chan limited, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() { results <- postLimited(held, body) })
	}
	// The refusals come back while the served reviews are still held.
	want := limited{code: http.StatusTooManyRequests, status: metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Code: http.StatusTooManyRequests, Reason: metav1.StatusReasonTooManyRequests,
		Message: "too many concurrent admission reviews: tcr-assistant serves at most 8 at once; retry",
	}}
	for range callers - DefaultMaxConcurrentReviews {
		assert.Equal(t, want, <-results)
	}
	for range DefaultMaxConcurrentReviews {
		<-entered
	}
	_, ok := l.TryAcquire()
	assert.False(t, ok, "every slot is taken")
	close(gate)
	wg.Wait()
	runtime.ReadMemStats(&after)
	close(results)
	served := 0
	for r := range results {
		assert.Equal(t, limited{code: http.StatusOK, allowed: true}, r)
		served++
	}
	assert.Equal(t, DefaultMaxConcurrentReviews, served)
	burst := after.TotalAlloc - before.TotalAlloc
	t.Logf("one review of %d bytes allocates %d bytes; the burst of %d allocated %d bytes (%.1f reviews' worth)",
		len(body), one, callers, burst, float64(burst)/float64(one))
	assert.Less(t, burst, uint64(DefaultMaxConcurrentReviews)*one*5/4+(callers-DefaultMaxConcurrentReviews)*(64<<10),
		"refused reviews must cost next to nothing")

	release, ok := l.TryAcquire()
	require.True(t, ok, "the slots are given back")
	release()
}

// TestTheLimitIsSharedByHandlers: handlers wrapped by one Limiter share its bound.
func TestTheLimitIsSharedByHandlers(t *testing.T) {
	l := NewLimiter(2)
	gate := make(chan struct{})
	entered := make(chan struct{}, 2)
	hold := l.Limit(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { entered <- struct{}{}; <-gate }))
	other := l.Limit(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { postLimited(hold, nil) })
		<-entered
	}
	r := postLimited(other, nil)
	assert.Equal(t, http.StatusTooManyRequests, r.code)
	assert.Equal(t, "too many concurrent admission reviews: tcr-assistant serves at most 2 at once; retry", r.status.Message)
	close(gate)
	wg.Wait()
	assert.Equal(t, http.StatusNoContent, postLimited(other, nil).code)
}

// TestAReviewOverTheBoundWaitsForASlot: a burst a little over the bound is served, not refused:
// a review that finds every slot taken waits for one, unread; when more are already waiting than
// 4 per slot, the next is refused at once; a wait that outlasts the Limiter's wait is refused.
func TestAReviewOverTheBoundWaitsForASlot(t *testing.T) {
	l := NewLimiter(2)
	l.wait = time.Hour // no waiting review gives up during the test, but the last one below
	gate, entered := make(chan struct{}), make(chan struct{}, 16)
	hold := l.Limit(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-gate
		w.WriteHeader(http.StatusNoContent)
	}))
	results := make(chan int, 16)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { results <- postLimited(hold, nil).code })
		<-entered
	}
	// 8 (4 per slot) wait; none is served, none is refused while the slots are held.
	for range 8 {
		wg.Go(func() { results <- postLimited(hold, nil).code })
	}
	release := sync.OnceFunc(func() { close(gate) })
	defer release() // a failure below frees every review it holds, so the test ends
	require.Eventually(t, func() bool { return len(l.waiting) == 8 }, 10*time.Second, time.Millisecond)
	assert.Empty(t, results)
	// The next one is refused at once; one that waited instead (a waiting room without its
	// bound) fails the test within a second rather than waiting out l.wait.
	over := make(chan limited, 1)
	go func() { over <- postLimited(hold, nil) }()
	select {
	case r := <-over:
		assert.Equal(t, http.StatusTooManyRequests, r.code, "the waiting room is full: refused at once")
		assert.Equal(t, "too many concurrent admission reviews: tcr-assistant serves at most 2 at once; retry", r.status.Message)
	case <-time.After(time.Second):
		release()
		require.Fail(t, "the waiting room is full, yet a review over the bound waited instead of being refused at once")
	}
	release()
	wg.Wait()
	close(results)
	for code := range results {
		assert.Equal(t, http.StatusNoContent, code, "the 2 held and the 8 waiting are all served")
	}

	// A wait that outlasts the Limiter's wait is refused.
	l.wait = 10 * time.Millisecond
	release1, ok := l.TryAcquire()
	require.True(t, ok)
	release2, ok := l.TryAcquire()
	require.True(t, ok)
	assert.Equal(t, http.StatusTooManyRequests, postLimited(hold, nil).code)
	release1()
	release2()
	assert.Empty(t, l.waiting, "a refused review leaves the waiting room")
}
