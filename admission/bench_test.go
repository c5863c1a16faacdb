package admission_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tcr-assistant/tcr-assistant/admission"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// BenchmarkAdmissionLatency measures what a user waits for: dry-run creates of a valid
// ImagePullSecret through the real API server, 1,000 per iteration from 20 concurrent clients,
// with the webhook called over TLS and, for comparison, with no webhook configured; then the same
// one request at a time. It reports the p50 and p99 latencies of the last iteration.
//
//	go test ./admission/ -run '^$' -bench BenchmarkAdmissionLatency -benchtime 1x
func BenchmarkAdmissionLatency(b *testing.B) {
	const requests, concurrency = 1000, 20
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS = -1 // no client-side rate limit: measure the server, not the token bucket
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	require.NoError(b, err)

	b.Run("webhook-direct", func(b *testing.B) { benchmarkWebhookDirect(b, requests, concurrency) })
	// Concurrency 1 shows what one request costs; 20 shows the queueing of two shared cores.
	for _, inFlight := range []int{concurrency, 1} {
		for _, withWebhook := range []bool{true, false} {
			name := fmt.Sprintf("no-webhook/c%d", inFlight)
			if withWebhook {
				name = fmt.Sprintf("webhook/c%d", inFlight)
			}
			b.Run(name, func(b *testing.B) {
				if withWebhook {
					webhookName := fmt.Sprintf("bench-c%d", inFlight)
					opts := testOptions(b, webhookName)
					port := testenv.FreePort(b)
					installWebhookConfiguration(b, opts.WebhookConfigurationName, port)
					p := startWebhook(b, port, opts)
					p.waitReady(b)
					waitServing(b, webhookName)
				}
				var latencies []time.Duration
				b.ResetTimer()
				for range b.N {
					latencies = measure(b, c, requests, inFlight)
				}
				b.StopTimer()
				reportPercentiles(b, latencies)
			})
		}
	}
}

// reportPercentiles reports the p50, p99 and maximum of latencies in milliseconds.
func reportPercentiles(b *testing.B, latencies []time.Duration) {
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
}

// benchmarkWebhookDirect sends the AdmissionReviews the API server would send straight to the
// webhook server, over TLS with the provisioned CA, to isolate the webhook's own share.
func benchmarkWebhookDirect(b *testing.B, requests, concurrency int) {
	opts := testOptions(b, "bench-direct")
	port := testenv.FreePort(b)
	installWebhookConfiguration(b, opts.WebhookConfigurationName, port)
	p := startWebhook(b, port, opts)
	p.waitReady(b)
	pool := x509.NewCertPool()
	require.True(b, pool.AppendCertsFromPEM(certSecret(b, opts.SecretName).Data[admission.KeyCACert]))
	httpClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: concurrency,
	}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, admission.Path)
	object, err := json.Marshal(goodIPS("bench-direct"))
	require.NoError(b, err)
	review, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "bench",
			Kind:      metav1.GroupVersionKind{Group: "tcr.tencentcloudcr.com", Version: "v1", Kind: "ImagePullSecret"},
			Resource:  metav1.GroupVersionResource{Group: "tcr.tencentcloudcr.com", Version: "v1", Resource: "imagepullsecrets"},
			Name:      "bench-direct",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: object},
		},
	})
	require.NoError(b, err)
	var latencies []time.Duration
	b.ResetTimer()
	for range b.N {
		latencies = measureFunc(b, requests, concurrency, func(int) error {
			resp, err := httpClient.Post(url, "application/json", bytes.NewReader(review))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var got admissionv1.AdmissionReview
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				return err
			}
			if got.Response == nil || !got.Response.Allowed {
				return fmt.Errorf("not allowed: %+v", got.Response)
			}
			return nil
		})
	}
	b.StopTimer()
	reportPercentiles(b, latencies)
}

// measure sends requests dry-run creates from concurrency goroutines and returns each latency.
func measure(b *testing.B, c client.Client, requests, concurrency int) []time.Duration {
	ctx := context.Background()
	return measureFunc(b, requests, concurrency, func(i int) error {
		return c.Create(ctx, goodIPS(fmt.Sprintf("bench-%d", i)), client.DryRunAll)
	})
}

// measureFunc runs do requests times from concurrency goroutines and returns each latency.
func measureFunc(b *testing.B, requests, concurrency int, do func(i int) error) []time.Duration {
	latencies := make([]time.Duration, requests)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range concurrency {
		wg.Go(func() {
			for i := range work {
				start := time.Now()
				err := do(i)
				latencies[i] = time.Since(start)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		})
	}
	for i := range requests {
		work <- i
	}
	close(work)
	wg.Wait()
	require.NoError(b, firstErr)
	return latencies
}
