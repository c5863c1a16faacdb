package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultMaxConcurrentReviews bounds the admission reviews the manager serves at once. Any Pod
// can reach the webhook's port; MaxRequestBytes caps what one review makes the manager hold (a
// few times its body once decoded, see TestHostileListsAreRefusedCheaply), and this bound caps
// how many do at once: 8 reviews of 3 MiB are well under the manager's memory limit, and 8 is
// more than the API server needs, as a review takes milliseconds.
const DefaultMaxConcurrentReviews = 8

// ReviewWait is how long a review over the bound waits for a slot before it is refused. A burst
// of ServiceAccounts created in parallel (a Helm install, a GitOps sync) easily asks for more
// reviews at once than the bound; refusing them at once would let the mutating webhook's
// failurePolicy Ignore admit ServiceAccounts without their reference, the very race it closes.
// Reviews take milliseconds, so a short wait serves a burst; it stays well under the webhooks'
// timeouts (3 s and 5 s).
const ReviewWait = time.Second

// waitingPerSlot bounds the reviews that wait, per slot. A waiting review has not read its body
// and holds only its connection; past this many, reviews are refused at once.
const waitingPerSlot = 4

// Limiter bounds the reviews in flight across every handler it wraps, so that what the webhooks
// of one server hold together is bounded, not each one's alone. It is safe for concurrent use.
type Limiter struct {
	slots   chan struct{}
	waiting chan struct{}
	wait    time.Duration
}

// NewLimiter returns a Limiter of max reviews at once, DefaultMaxConcurrentReviews when max is
// not positive.
func NewLimiter(maxReviews int) *Limiter {
	if maxReviews <= 0 {
		maxReviews = DefaultMaxConcurrentReviews
	}
	return &Limiter{
		slots: make(chan struct{}, maxReviews), waiting: make(chan struct{}, waitingPerSlot*maxReviews),
		wait: ReviewWait,
	}
}

// Max returns the number of reviews served at once.
func (l *Limiter) Max() int { return cap(l.slots) }

// Waiting returns the number of reviews waiting for a slot now.
func (l *Limiter) Waiting() int { return len(l.waiting) }

// TryAcquire takes a slot if one is free, without waiting; release gives it back.
func (l *Limiter) TryAcquire() (release func(), ok bool) {
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, true
	default:
		return nil, false
	}
}

// Acquire takes a slot, waiting up to ReviewWait for one when fewer than 4 per slot wait
// already, or until ctx ends; release gives it back.
func (l *Limiter) Acquire(ctx context.Context) (release func(), ok bool) {
	if release, ok := l.TryAcquire(); ok {
		return release, true
	}
	select {
	case l.waiting <- struct{}{}:
		defer func() { <-l.waiting }()
	default:
		return nil, false // too many waiting already
	}
	timer := time.NewTimer(l.wait)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, true
	case <-timer.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

// TooManyReviewsMessage is the message of a review refused for being over the bound of max.
func TooManyReviewsMessage(maxReviews int) string {
	return fmt.Sprintf("too many concurrent admission reviews: tcr-assistant serves at most %d at once; retry", maxReviews)
}

// Limit serves a review with next while a slot is free. Over the bound, a review waits up to
// ReviewWait for a slot, without reading its body, if fewer than 4 per slot already wait;
// otherwise, or when no slot frees in time, it is answered with 429 Too Many Requests and a Status
// saying so; failurePolicy Fail then refuses the request with `Internal error occurred: failed
// calling webhook "vimagepullsecret.tcr.tencentcloudcr.com": failed to call webhook: ` and this
// message.
//
// There is no Retry-After header on purpose: with one, the API server retries within the
// webhook's timeout (5 s) and, when the webhook is still saturated, reports only "context
// deadline exceeded", which tells the user nothing. It cannot be an admission denial either:
// that must echo the review's UID, which means reading the body the bound is there to spare.
// Waiting reviews hold no body, and their number is bounded.
func (l *Limiter) Limit(next http.Handler) http.Handler {
	status := metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Code: http.StatusTooManyRequests, Reason: metav1.StatusReasonTooManyRequests,
		Message: TooManyReviewsMessage(l.Max()),
	}
	refusal, err := json.Marshal(status)
	if err != nil {
		panic(err) // a Status always encodes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, ok := l.Acquire(r.Context())
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write(refusal)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}
