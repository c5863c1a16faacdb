package credprovider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/utils/ptr"

	"github.com/tcr-assistant/tcr-assistant/credprovider/wire"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// env is the real kube-apiserver the tests review tokens with.
var (
	env       *testenv.Env
	clientset *kubernetes.Clientset
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, &env, func() {}))
}

func kube(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	if clientset == nil {
		var err error
		clientset, err = kubernetes.NewForConfig(env.Config)
		require.NoError(t, err)
	}
	return clientset
}

// countingReviews counts the TokenReviews made through it.
type countingReviews struct {
	authenticationv1client.TokenReviewInterface
	n atomic.Int32
}

func (c *countingReviews) Create(ctx context.Context, tr *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	c.n.Add(1)
	return c.TokenReviewInterface.Create(ctx, tr, opts)
}

// fakeReviews answers TokenReviews with answer, for what the local API server cannot show.
type fakeReviews struct {
	answer func(*authenticationv1.TokenReview) (*authenticationv1.TokenReview, error)
	n      atomic.Int32
}

func (f *fakeReviews) Create(_ context.Context, tr *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	f.n.Add(1)
	return f.answer(tr)
}

// ruleKey is what mapLookup is keyed by.
type ruleKey struct{ namespace, serviceAccount, host string }

// mapLookup is a Lookup from a map. When gate is set, Credential signals entered and waits for
// gate to close.
type mapLookup struct {
	mu      sync.Mutex
	answers map[ruleKey]Answer
	err     error
	calls   int
	gate    chan struct{}
	entered chan struct{}
}

func (m *mapLookup) Credential(ctx context.Context, namespace, serviceAccount, host string) (Answer, bool, error) {
	m.mu.Lock()
	m.calls++
	a, ok := m.answers[ruleKey{namespace, serviceAccount, host}]
	err, gate, entered := m.err, m.gate, m.entered
	m.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return Answer{}, false, ctx.Err()
		}
	}
	return a, ok, err
}

func (m *mapLookup) set(k ruleKey, a Answer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.answers == nil {
		m.answers = map[ruleKey]Answer{}
	}
	m.answers[k] = a
}

// clock is a clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is an endpoint against the local API server, with its own namespace.
type fixture struct {
	t       *testing.T
	h       http.Handler
	opts    Options
	reviews *countingReviews
	lookup  *mapLookup
	clock   *clock
	logs    *testenv.SyncBuffer
	ns      string
}

var namespaces atomic.Int32

// newFixture starts an endpoint whose clock stands at the real time, truncated to the second,
// and a namespace for the test's ServiceAccounts; change the Options with configure.
func newFixture(t *testing.T, configure ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{
		t:       t,
		reviews: &countingReviews{TokenReviewInterface: kube(t).AuthenticationV1().TokenReviews()},
		lookup:  &mapLookup{},
		clock:   &clock{t: time.Now().Truncate(time.Second)},
		logs:    &testenv.SyncBuffer{},
		ns:      fmt.Sprintf("credprovider-%d", namespaces.Add(1)),
	}
	_, err := kube(t).CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	f.opts = Options{
		Lookup: f.lookup, Reviews: f.reviews, Now: f.clock.Now,
		Log: funcr.NewJSON(func(obj string) { _, _ = f.logs.Write([]byte(obj + "\n")) }, funcr.Options{Verbosity: 1}),
	}
	for _, c := range configure {
		c(&f.opts)
	}
	f.h = NewHandler(f.opts)
	return f
}

// serviceAccount creates the ServiceAccount name in the test's namespace.
func (f *fixture) serviceAccount(name string) *corev1.ServiceAccount {
	f.t.Helper()
	sa, err := kube(f.t).CoreV1().ServiceAccounts(f.ns).Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(f.t, err)
	return sa
}

// token requests a token of the ServiceAccount name for audiences, valid for an hour, from the
// TokenRequest API, as the kubelet does.
func (f *fixture) token(name string, audiences ...string) string {
	f.t.Helper()
	tr, err := kube(f.t).CoreV1().ServiceAccounts(f.ns).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	require.NoError(f.t, err)
	require.NotEmpty(f.t, tr.Status.Token)
	return tr.Status.Token
}

// answer is one answer of the endpoint.
type answer struct {
	code   int
	body   string
	header http.Header
}

// post sends {"image":image} with token as the plugin does.
func (f *fixture) post(token, image string) answer {
	return f.send(http.MethodPost, "Bearer "+token, imageBody(image), -2)
}

func imageBody(image string) string {
	data, err := json.Marshal(wire.Request{Image: image})
	if err != nil {
		panic(err)
	}
	return string(data)
}

// send sends a request with the Authorization header authz (none when empty) and body; length
// is its declared length, -1 for unknown (chunked), -2 for the body's own.
func (f *fixture) send(method, authz, body string, length int64) answer {
	req := httptest.NewRequest(method, Path, strings.NewReader(body))
	if length != -2 {
		req.ContentLength = length
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return answer{code: rec.Code, body: rec.Body.String(), header: rec.Header()}
}

// logLines returns the log lines written so far, decoded.
func (f *fixture) logLines() []map[string]any {
	f.t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(f.t, json.Unmarshal([]byte(l), &m), l)
		lines = append(lines, m)
	}
	return lines
}

// counts returns the metric's value for every result.
func counts() map[string]float64 {
	out := map[string]float64{}
	for _, r := range results {
		var m dto.Metric
		if err := requests.WithLabelValues(r).Write(&m); err != nil {
			panic(err)
		}
		out[r] = m.GetCounter().GetValue()
	}
	return out
}

// assertCounted asserts that the metric grew by want since before, and by nothing else.
func assertCounted(t *testing.T, before map[string]float64, want map[string]float64) {
	t.Helper()
	got := map[string]float64{}
	for r, v := range counts() {
		if d := v - before[r]; d != 0 {
			got[r] = d
		}
	}
	assert.Equal(t, want, got)
}

// refusalBody is the exact body of a refusal whose message is plain ASCII.
func refusalBody(reason, message string) string {
	return fmt.Sprintf(`{"reason":%q,"message":%q}`+"\n", reason, message)
}

// readAll reads a response body.
func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	data, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(data)
}
