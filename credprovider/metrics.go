package credprovider

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The results of a request, the values of the metric's label: a bounded set.
const (
	resultServed           = "served"
	resultBadRequest       = "bad_request"
	resultUnauthenticated  = "unauthenticated"
	resultNoRule           = "no_rule"
	resultTooLarge         = "too_large"
	resultTooManyRequests  = "too_many_requests"
	resultReviewFailed     = "review_failed"
	resultLookupFailed     = "lookup_failed"
	resultMethodNotAllowed = "method_not_allowed"
)

// results lists every value of the result label.
var results = []string{
	resultServed, resultBadRequest, resultUnauthenticated, resultNoRule, resultTooLarge,
	resultTooManyRequests, resultReviewFailed, resultLookupFailed, resultMethodNotAllowed,
}

// requests counts the requests by result, registered with controller-runtime's registry so that
// the manager's metrics endpoint serves it.
var requests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tcr_assistant_credential_provider_requests_total",
	Help: "Requests of the credential endpoint, by result: served, or the reason of the refusal (bad_request, unauthenticated, no_rule, too_large, too_many_requests, review_failed, lookup_failed, method_not_allowed).",
}, []string{"result"})

func init() {
	metrics.Registry.MustRegister(requests)
	for _, r := range results {
		requests.WithLabelValues(r) // every series exists from the start, at 0
	}
}

func countResult(result string) { requests.WithLabelValues(result).Inc() }
