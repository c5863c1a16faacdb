package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// writeCounts reads kube-apiserver's apiserver_request_total and returns the number of write
// requests (POST, PUT, PATCH, DELETE) so far, keyed by "VERB resource[/subresource] code".
func writeCounts(t testing.TB) map[string]float64 {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	require.NoError(t, err)
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		labels := map[string]string{}
		body := line[strings.Index(line, "{")+1 : strings.LastIndex(line, "}")]
		for _, kv := range strings.Split(body, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		switch labels["verb"] {
		case "POST", "PUT", "PATCH", "DELETE":
		default:
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		require.NoError(t, err)
		res := labels["resource"]
		if labels["subresource"] != "" {
			res += "/" + labels["subresource"]
		}
		out[labels["verb"]+" "+res+" "+labels["code"]] += v
	}
	return out
}

// diff returns after-before for every write, and the total of the writes to the resources the
// controller writes (kube-apiserver renews its own identity Lease every 10 s: not ours).
func diff(before, after map[string]float64) (map[string]float64, float64) {
	out := map[string]float64{}
	total := 0.0
	for k, v := range after {
		d := v - before[k]
		if d <= 0 {
			continue
		}
		out[k] = d
		res := strings.Fields(k)[1]
		if slices.Contains([]string{"secrets", "serviceaccounts", "imagepullsecrets", "imagepullsecrets/status", "events"}, res) {
			total += d
		}
	}
	return out, total
}

func format(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "\n    %-45s %6.0f", k, m[k])
	}
	return b.String()
}

// BenchmarkConverge1000x3 measures, against the local control plane, bin/manager (defaults,
// webhook off) distributing one ImagePullSecret to 1,000 namespaces with 3 ServiceAccounts
// each: the time until the status reports every target, the API writes issued against the
// minimum (one Secret create per namespace plus one patch per ServiceAccount), the latency of
// one new namespace afterwards, and the writes during one idle minute.
//
//	go test -run '^$' -bench Converge1000x3 -benchtime 1x ./cmd/manager/
func BenchmarkConverge1000x3(b *testing.B) {
	const namespaces, perNamespace = 1000, 3
	ctx := context.Background()
	bin := buildManager(b)
	createTargets(b, "bench", namespaces, "default", "builder", "deployer")
	p := startManager(b, bin)
	require.Eventually(b, func() bool { return strings.Contains(p.out.String(), "Starting workers") }, 2*time.Minute, 50*time.Millisecond)

	for b.Loop() {
		before := writeCounts(b)
		start := time.Now()
		require.NoError(b, env.Client.Create(ctx, &tcrv1.ImagePullSecret{
			ObjectMeta: metav1.ObjectMeta{Name: "bench"},
			Spec: tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*", Docker: tcrv1.DockerCredential{
				Server: "bench.tencentcloudcr.com", Username: "bench", Password: "bench-password",
			}},
		}))
		var st tcrv1.ImagePullSecretStatus
		require.Eventually(b, func() bool {
			cur := &tcrv1.ImagePullSecret{}
			if err := env.Client.Get(ctx, client.ObjectKey{Name: "bench"}, cur); err != nil {
				return false
			}
			st = cur.Status
			return st.SAsSuccess == namespaces*perNamespace && st.SecretsSuccess == st.SecretsDesired && st.SecretsDesired >= namespaces
		}, 5*time.Minute, 20*time.Millisecond)
		converged := time.Since(start)
		// Let the last status pass land before counting.
		time.Sleep(3 * time.Second)
		writes, total := diff(before, writeCounts(b))
		minimum := float64(st.SecretsDesired + st.SAsDesired)

		nsStart := time.Now()
		require.NoError(b, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-new"}}))
		require.NoError(b, env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "bench-new", Name: "default"}}))
		require.Eventually(b, func() bool {
			sa := &corev1.ServiceAccount{}
			s := &corev1.Secret{}
			return env.Client.Get(ctx, client.ObjectKey{Namespace: "bench-new", Name: "tcr.ipsbench"}, s) == nil &&
				env.Client.Get(ctx, client.ObjectKey{Namespace: "bench-new", Name: "default"}, sa) == nil &&
				len(sa.ImagePullSecrets) == 1
		}, time.Minute, 2*time.Millisecond)
		newNamespace := time.Since(nsStart)
		time.Sleep(3 * time.Second)

		idleBefore := writeCounts(b)
		time.Sleep(time.Minute)
		idle, idleTotal := diff(idleBefore, writeCounts(b))

		b.ReportMetric(converged.Seconds(), "s-converge")
		b.ReportMetric(total, "writes")
		b.ReportMetric(minimum, "writes-minimum")
		b.ReportMetric(float64(newNamespace.Milliseconds()), "ms-new-namespace")
		b.ReportMetric(idleTotal, "idle-minute-writes")
		b.ReportMetric(rssMiB(b, p.cmd.Process.Pid), "MiB-rss")
		b.Logf("converged in %s: %d/%d Secrets, %d/%d ServiceAccounts; writes %0.f (minimum %0.f):%s",
			converged, st.SecretsSuccess, st.SecretsDesired, st.SAsSuccess, st.SAsDesired, total, minimum, format(writes))
		b.Logf("a new namespace with one ServiceAccount was served in %s", newNamespace)
		b.Logf("writes during one idle minute: %0.f%s", idleTotal, format(idle))
	}
}

// rssMiB reads the resident set size of a process from /proc.
func rssMiB(t testing.TB, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			require.NoError(t, err)
			return kb / 1024
		}
	}
	t.Fatal("VmRSS not found")
	return 0
}
