package credprovider

import (
	"context"
	"time"
)

// waitingPerSlot bounds the requests that wait for a slot, per slot, as the webhook's Limiter
// does. A waiting request has not read its body nor reviewed its token; past this many, requests
// are refused at once.
const waitingPerSlot = 4

// limiter bounds the requests in flight, as admission.Limiter bounds the webhook's reviews:
// a request over the bound waits up to wait for a slot, when fewer than waitingPerSlot per slot
// already wait. It is safe for concurrent use.
type limiter struct {
	slots   chan struct{}
	waiting chan struct{}
	wait    time.Duration
}

func newLimiter(maxConcurrent int, wait time.Duration) *limiter {
	return &limiter{
		slots:   make(chan struct{}, maxConcurrent),
		waiting: make(chan struct{}, waitingPerSlot*maxConcurrent),
		wait:    wait,
	}
}

func (l *limiter) max() int { return cap(l.slots) }

// acquire takes a slot, waiting for one up to l.wait when there is room to wait, or until ctx
// ends; release gives it back.
func (l *limiter) acquire(ctx context.Context) (release func(), ok bool) {
	select {
	case l.slots <- struct{}{}:
		return l.release, true
	default:
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
		return l.release, true
	case <-timer.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

func (l *limiter) release() { <-l.slots }
