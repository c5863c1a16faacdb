package admission

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

// reviewBody is the AdmissionReview the API server would send for creating ips.
func reviewBody(t testing.TB, ips *tcrv1.ImagePullSecret) []byte {
	t.Helper()
	ips.APIVersion, ips.Kind = tcrv1.GroupVersion.String(), "ImagePullSecret"
	obj, err := json.Marshal(ips)
	require.NoError(t, err)
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "3c1b7a2e-0000-4000-8000-000000000001",
			Kind:      metav1.GroupVersionKind{Group: tcrv1.GroupVersion.Group, Version: "v1", Kind: "ImagePullSecret"},
			Resource:  metav1.GroupVersionResource{Group: tcrv1.GroupVersion.Group, Version: "v1", Resource: "imagepullsecrets"},
			Name:      ips.Name,
			Operation: admissionv1.Create,
			Object:    k8sruntime.RawExtension{Raw: obj},
		},
	}
	body, err := json.Marshal(review)
	require.NoError(t, err)
	return body
}

func testHandler(t testing.TB) http.Handler {
	scheme := k8sruntime.NewScheme()
	require.NoError(t, tcrv1.AddToScheme(scheme))
	return Handler(scheme, Validator{Rules: engine.NewCache()})
}

// post sends body to h as the API server would and returns the HTTP status and the review's
// response (nil when the body is not a review).
func post(h http.Handler, body io.Reader, length int64) (int, *admissionv1.AdmissionResponse) {
	req := httptest.NewRequest(http.MethodPost, Path, body)
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var review admissionv1.AdmissionReview
	if json.Unmarshal(rec.Body.Bytes(), &review) != nil {
		return rec.Code, nil
	}
	return rec.Code, review.Response
}

// hostile is the sample CR with spec.namespaces holding n copies of the bad name "A".
func hostile(n int) *tcrv1.ImagePullSecret {
	ips := sample()
	ips.Spec.Namespaces = strings.TrimSuffix(strings.Repeat("A,", n), ",")
	return ips
}

const msgBadA = `spec.namespaces: Invalid value: "A": is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`

// TestHostileListsAreRefusedCheaply sends reviews whose namespaces hold 16,000 and 64,000 bad
// entries (issue 13: the first used to make the manager allocate 780 MiB, the second 2.4 GB)
// through the webhook's HTTP handler, decoding included. Each is refused with 20 messages that
// each name one entry and one "and N more", and the bytes allocated stay within a small multiple
// of the request: measured with runtime.MemStats, not with time.
func TestHostileListsAreRefusedCheaply(t *testing.T) {
	h := testHandler(t)
	for _, n := range []int{16_000, 64_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			body := reviewBody(t, hostile(n))
			want := make([]string, 0, engine.MaxErrorsPerField+1)
			for range engine.MaxErrorsPerField {
				want = append(want, msgBadA)
			}
			want = append(want, fmt.Sprintf("spec.namespaces: Invalid value: and %d more errors", n-engine.MaxErrorsPerField))

			post(h, bytes.NewReader(body), int64(len(body))) // warm up: CEL environments, codecs
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			code, resp := post(h, bytes.NewReader(body), int64(len(body)))
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d entries, a review of %d bytes: %d bytes allocated (%.1f times the review)", n, len(body), allocated, float64(allocated)/float64(len(body)))

			require.Equal(t, http.StatusOK, code)
			require.NotNil(t, resp)
			assert.False(t, resp.Allowed)
			assert.Equal(t, int32(http.StatusUnprocessableEntity), resp.Result.Code)
			// The message joins the distinct errors (apimachinery drops repeats); the causes list
			// each one.
			more := want[len(want)-1]
			assert.Equal(t, `ImagePullSecret.tcr.tencentcloudcr.com "imagepullsecret-sample" is invalid: [`+msgBadA+", "+more+`]`, resp.Result.Message)
			causes := make([]string, len(resp.Result.Details.Causes))
			for i, c := range resp.Result.Details.Causes {
				causes[i] = c.Field + ": " + c.Message
			}
			assert.Equal(t, want, causes)
			assert.NotContains(t, resp.Result.Message, "s3cr3t-token")
			// Decoding holds the review a few times over (the body, the raw object, the typed
			// object); validation adds a constant. 780 MiB was 24,000 times the review.
			assert.Less(t, allocated, uint64(12*len(body)+(1<<20)), "allocations must stay linear in the review, with a small factor")
		})
	}
}

// TestTheRequestBodyIsCapped: a review over MaxRequestBytes is refused unread with 413 when it
// declares its length, and refused when it does not (chunked), before any validation.
func TestTheRequestBodyIsCapped(t *testing.T) {
	h := testHandler(t)
	ips := sample()
	ips.Annotations = map[string]string{"filler": strings.Repeat("x", MaxRequestBytes)}
	body := reviewBody(t, ips)
	require.Greater(t, len(body), MaxRequestBytes)

	code, resp := post(h, bytes.NewReader(body), int64(len(body)))
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)
	assert.Nil(t, resp)

	code, resp = post(h, bytes.NewReader(body), -1) // length unknown, as with chunked encoding
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusOK, code)
	assert.False(t, resp.Allowed)
	assert.Equal(t, int32(http.StatusBadRequest), resp.Result.Code)
	assert.Equal(t, "http: request body too large", resp.Result.Message)

	// Just under the cap is read and judged.
	ips.Annotations["filler"] = strings.Repeat("x", MaxRequestBytes-len(body)+len(ips.Annotations["filler"])-1)
	body = reviewBody(t, ips)
	require.Equal(t, MaxRequestBytes-1, len(body))
	code, resp = post(h, bytes.NewReader(body), int64(len(body)))
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, resp.Allowed, "%v", resp.Result)
}

// BenchmarkHostileLists measures the refusal of 16,000 and 64,000 bad entries through the
// webhook's HTTP handler; the target (issue 13) is under 200 ms and under 32 MiB of heap growth
// each. B/op, all bytes allocated per refusal, bounds the heap growth from above.
//
//	go test ./admission/ -run '^$' -bench BenchmarkHostileLists -benchmem
func BenchmarkHostileLists(b *testing.B) {
	h := testHandler(b)
	for _, n := range []int{16_000, 64_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			body := reviewBody(b, hostile(n))
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				if _, resp := post(h, bytes.NewReader(body), int64(len(body))); resp == nil || resp.Allowed {
					b.Fatal("not refused")
				}
			}
			runtime.ReadMemStats(&after)
			perOp := time.Duration(int64(b.Elapsed()) / int64(b.N))
			allocated := (after.TotalAlloc - before.TotalAlloc) / uint64(b.N)
			if perOp >= 200*time.Millisecond || allocated >= 32<<20 {
				b.Errorf("a refusal took %v and allocated %d bytes; the targets are under 200ms and 32 MiB", perOp, allocated)
			}
			b.ReportMetric(float64(len(body)), "review-B")
		})
	}
}
