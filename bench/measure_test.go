package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

func TestParseAudit(t *testing.T) {
	line := func(stage, user, verb, resource, sub string, code int) string {
		ev := map[string]any{"stage": stage, "verb": verb, "user": map[string]any{"username": user},
			"requestReceivedTimestamp": "2026-11-26T11:00:00.250000Z",
			"objectRef":                map[string]any{"resource": resource, "subresource": sub},
			"responseStatus":           map[string]any{"code": code}}
		b, _ := json.Marshal(ev)
		return string(b)
	}
	tests := map[string]struct {
		log  []string
		want Writes
	}{
		"an empty log counts nothing": {
			want: Writes{ByKind: map[string]int{}},
		},
		"completed writes of the manager are counted by resource and verb": {
			log: []string{
				line("ResponseComplete", ManagerUser, "create", "secrets", "", 201),
				line("ResponseComplete", ManagerUser, "create", "secrets", "", 201),
				line("ResponseComplete", ManagerUser, "patch", "serviceaccounts", "", 200),
				line("ResponseComplete", ManagerUser, "patch", "imagepullsecrets", "status", 200),
			},
			want: Writes{ByKind: map[string]int{"secrets create": 2, "serviceaccounts patch": 1,
				"imagepullsecrets/status patch": 1}, Total: 4},
		},
		"other users, reads and earlier stages are ignored": {
			log: []string{
				line("ResponseComplete", "someone-else", "create", "secrets", "", 201),
				line("ResponseStarted", ManagerUser, "create", "secrets", "", 201),
				line("ResponseComplete", ManagerUser, "get", "secrets", "", 200),
				line("ResponseComplete", ManagerUser, "watch", "secrets", "", 200),
			},
			want: Writes{ByKind: map[string]int{}},
		},
		"conflicts and other errors are counted apart and still count as writes": {
			log: []string{
				line("ResponseComplete", ManagerUser, "patch", "serviceaccounts", "", 409),
				line("ResponseComplete", ManagerUser, "create", "secrets", "", 403),
			},
			want: Writes{ByKind: map[string]int{"serviceaccounts patch": 1, "secrets create": 1}, Total: 2, Conflicts: 1, Errors: 1},
		},
	}
	at := time.Date(2026, 11, 26, 11, 0, 0, 250_000_000, time.UTC)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for range tc.want.Total {
				tc.want.Received = append(tc.want.Received, at)
			}
			got, err := parseAudit(strings.NewReader(strings.Join(tc.log, "\n")), ManagerUser)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestAuditNoticesRotation(t *testing.T) {
	line := `{"stage":"ResponseComplete","verb":"create","user":{"username":"` + ManagerUser + `"},"objectRef":{"resource":"secrets"}}` + "\n"
	path := filepath.Join(t.TempDir(), "audit.log")
	r := &runner{cp: &controlPlane{AuditLog: path}}
	require.NoError(t, os.WriteFile(path, []byte(line+line), 0o600))
	w, err := r.audit()
	require.NoError(t, err)
	assert.Equal(t, 2, w.Total)
	require.NoError(t, os.WriteFile(path, []byte(line), 0o600))
	_, err = r.audit()
	require.ErrorContains(t, err, "holds 1 writes of the manager after 2: it was rotated")
}

func TestParseAuditRejectsGarbage(t *testing.T) {
	_, err := parseAudit(strings.NewReader("{not json"), ManagerUser)
	require.ErrorContains(t, err, "parsing an audit event: ")
}

func TestParseAuditReads(t *testing.T) {
	line := func(id, stage, user, verb, resource, sub, uri string) string {
		b, _ := json.Marshal(map[string]any{"auditID": id, "stage": stage, "verb": verb, "requestURI": uri,
			"user": map[string]any{"username": user}, "objectRef": map[string]any{"resource": resource, "subresource": sub}})
		return string(b)
	}
	const listURI = "/api/v1/pods?fieldSelector=status.phase%3DPending&limit=500&resourceVersion=0"
	const watchURI = "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=status.phase%3DPending&resourceVersion=1&watch=true"
	log := strings.Join([]string{
		line("a", "ResponseComplete", ManagerUser, "list", "pods", "", listURI),
		// A watch is logged when its response starts and again when it ends: one read.
		line("b", "ResponseStarted", ManagerUser, "watch", "pods", "", watchURI),
		line("c", "ResponseComplete", ManagerUser, "create", "pods", "eviction", "/api/v1/namespaces/x/pods/p/eviction"),
		line("d", "ResponseComplete", "someone-else", "list", "pods", "", "/api/v1/pods"),
		line("e", "ResponseComplete", ManagerUser, "list", "secrets", "", "/api/v1/secrets"),
		line("f", "ResponseComplete", ManagerUser, "get", "pods", "", "/api/v1/namespaces/x/pods/p"),
		line("b", "ResponseComplete", ManagerUser, "watch", "pods", "", watchURI),
	}, "\n")
	got, err := parseAuditReads(strings.NewReader(log), ManagerUser, "pods")
	require.NoError(t, err)
	assert.Equal(t, []Read{
		{Verb: "list", URI: listURI, FieldSelector: "status.phase=Pending"},
		{Verb: "watch", URI: watchURI, FieldSelector: "status.phase=Pending"},
		{Verb: "get", URI: "/api/v1/namespaces/x/pods/p"},
	}, got)

	_, err = parseAuditReads(strings.NewReader("{not json"), ManagerUser, "pods")
	require.ErrorContains(t, err, "parsing an audit event: ")
}

func TestWritesSub(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	after := Writes{ByKind: map[string]int{"secrets create": 5, "serviceaccounts patch": 3}, Total: 8, Conflicts: 2,
		Received: []time.Time{at(1), at(2), at(3), at(4), at(5), at(6), at(8), at(7)}}
	before := Writes{ByKind: map[string]int{"secrets create": 5, "serviceaccounts patch": 1}, Total: 6, Conflicts: 1,
		Received: []time.Time{at(1), at(2), at(3), at(4), at(5), at(6)}}
	phase := after.Sub(before)
	assert.Equal(t, Writes{ByKind: map[string]int{"serviceaccounts patch": 2}, Total: 2, Conflicts: 1,
		Received: []time.Time{at(8), at(7)}}, phase)
	first, last := phase.Span()
	assert.Equal(t, at(7), first)
	assert.Equal(t, at(8), last)
	first, last = Writes{}.Span()
	assert.True(t, first.IsZero() && last.IsZero(), "no writes have no span")
}

func TestParseRequests(t *testing.T) {
	tests := map[string]struct {
		text      string
		want      Requests
		wantError string
	}{
		"requests are summed by method over codes and hosts": {
			text: `# HELP rest_client_requests_total Number of HTTP requests, partitioned by status code, method, and host.
# TYPE rest_client_requests_total counter
rest_client_requests_total{code="200",host="127.0.0.1:1",method="GET"} 10
rest_client_requests_total{code="201",host="127.0.0.1:1",method="POST"} 4
rest_client_requests_total{code="409",host="127.0.0.1:1",method="PATCH"} 1
rest_client_requests_total{code="200",host="127.0.0.1:1",method="PATCH"} 12
rest_client_request_duration_seconds_bucket{le="0.1"} 99
`,
			want: Requests{"GET": 10, "POST": 4, "PATCH": 13},
		},
		"a malformed value is an error": {
			text:      `rest_client_requests_total{code="200",host="h",method="GET"} ten`,
			wantError: `malformed metric value in "rest_client_requests_total{code=\"200\",host=\"h\",method=\"GET\"} ten"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseRequests(strings.NewReader(tc.text))
			if tc.wantError != "" {
				require.ErrorContains(t, err, tc.wantError)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, 17.0, got.Writes())
			assert.Equal(t, 10.0, got.Reads())
		})
	}
}

func TestParseProcStatus(t *testing.T) {
	tests := map[string]struct {
		status    string
		want      Memory
		wantError string
	}{
		"VmRSS and VmHWM are read in bytes": {
			status: "Name:\tmanager\nVmPeak:\t  900000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   30720 kB\nRssAnon:\t   20480 kB\nRssFile:\t   10240 kB\n",
			want:   Memory{RSS: 30 * mib, PeakRSS: 40 * mib, Anon: 20 * mib, File: 10 * mib},
		},
		"a status without VmHWM is an error": {
			status:    "VmRSS:\t   30720 kB\n",
			wantError: "VmRSS or VmHWM missing from the process status",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseProcStatus(strings.NewReader(tc.status))
			if tc.wantError != "" {
				require.EqualError(t, err, tc.wantError)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := map[string]struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		"no samples give zero":                         {p: 50, want: 0},
		"the median of an odd count is the middle":     {in: ms(30, 10, 20), p: 50, want: 20 * time.Millisecond},
		"p99 of 50 samples is the largest":             {in: ms(make([]int, 49)...), p: 99, want: 0},
		"p99 of 100 samples is the 99th by rank":       {in: ms(rangeInts(1, 100)...), p: 99, want: 99 * time.Millisecond},
		"p50 of 100 samples is the 50th by rank":       {in: ms(rangeInts(1, 100)...), p: 50, want: 50 * time.Millisecond},
		"p100 is the maximum whatever the input order": {in: ms(5, 900, 7), p: 100, want: 900 * time.Millisecond},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, percentile(tc.in, tc.p))
		})
	}
}

func rangeInts(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestCredentialHolds(t *testing.T) {
	c := credential{Server: "r.example.com", Username: "u", Password: "p"}
	secret := func(typ corev1.SecretType, data string) *corev1.Secret {
		return &corev1.Secret{Type: typ, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(data)}}
	}
	tests := map[string]struct {
		secret *corev1.Secret
		want   bool
	}{
		"a kubectl-style rendering holds it": {
			secret: secret(corev1.SecretTypeDockerConfigJson, string(dockerConfigJSON(c))),
			want:   true,
		},
		"an auth-only rendering holds it": {
			secret: secret(corev1.SecretTypeDockerConfigJson, `{"auths":{"r.example.com":{"auth":"dTpw"}}}`),
			want:   true,
		},
		"an older password does not": {
			secret: secret(corev1.SecretTypeDockerConfigJson, string(dockerConfigJSON(credential{Server: c.Server, Username: "u", Password: "old"}))),
		},
		"a stale auth next to a fresh password does not": {
			secret: secret(corev1.SecretTypeDockerConfigJson, `{"auths":{"r.example.com":{"username":"u","password":"p","auth":"b2xk"}}}`),
		},
		"another server does not": {
			secret: secret(corev1.SecretTypeDockerConfigJson, string(dockerConfigJSON(credential{Server: "other", Username: "u", Password: "p"}))),
		},
		"an Opaque Secret does not": {
			secret: secret(corev1.SecretTypeOpaque, string(dockerConfigJSON(c))),
		},
		"an entry with no credential does not": {
			secret: secret(corev1.SecretTypeDockerConfigJson, `{"auths":{"r.example.com":{}}}`),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, c.holds(tc.secret))
		})
	}
}

func TestHostsMaps(t *testing.T) {
	tests := map[string]struct {
		content string
		want    bool
	}{
		"a plain line maps":                     {content: "127.0.0.1 localhost\n10.0.0.1 r.example.com\n", want: true},
		"an alias after other names maps":       {content: "10.0.0.1\ta.example.com r.example.com # managed\n", want: true},
		"a commented line does not":             {content: "# 10.0.0.1 r.example.com\n"},
		"a name after a comment does not":       {content: "10.0.0.1 a.example.com # r.example.com\n"},
		"another address for the name does not": {content: "10.0.0.2 r.example.com\n"},
		"an empty file does not":                {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, hostsMaps([]byte(tc.content), "10.0.0.1", "r.example.com"))
		})
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/tcr-assistant/tcr-assistant/engine
BenchmarkCompile-2            	   20000	     61234 ns/op	   32100 B/op	     410 allocs/op
BenchmarkMatchNamespace/list-2	 5000000	       240.5 ns/op	      64 B/op	       2 allocs/op
PASS
ok  	github.com/tcr-assistant/tcr-assistant/engine	3.1s
`
	assert.Equal(t, []Figure{
		{Name: "engine.Compile-2", Value: 61234, Unit: "ns/op"},
		{Name: "engine.Compile-2.bytes", Value: 32100, Unit: "B/op"},
		{Name: "engine.Compile-2.allocs", Value: 410, Unit: "allocs/op"},
		{Name: "engine.MatchNamespace/list-2", Value: 240.5, Unit: "ns/op"},
		{Name: "engine.MatchNamespace/list-2.bytes", Value: 64, Unit: "B/op"},
		{Name: "engine.MatchNamespace/list-2.allocs", Value: 2, Unit: "allocs/op"},
	}, parseGoBench([]byte(out)))
}

func TestFigureString(t *testing.T) {
	tests := map[string]struct {
		fig  Figure
		want string
	}{
		"an integer prints without decimals": {fig: Figure{"writes.idle", 0, "requests"}, want: "bench: writes.idle=0 requests"},
		"a small value keeps three digits":   {fig: Figure{"convergence", 2.34567, "s"}, want: "bench: convergence=2.35 s"},
		"a ratio keeps two decimals":         {fig: Figure{"writes.ratio", 1.0012, "x"}, want: "bench: writes.ratio=1.00 x"},
		"a large value keeps one decimal":    {fig: Figure{"newns.p99", 123.456, "ms"}, want: "bench: newns.p99=123.5 ms"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.fig.String())
		})
	}
}

func TestMetricValue(t *testing.T) {
	text := []byte(`# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 2.4576e+07
go_memstats_heap_inuse_bytes_total 1
rest_client_requests_total{code="200",host="h",method="GET"} 3
`)
	tests := map[string]struct {
		name   string
		want   float64
		wantOK bool
	}{
		"an unlabelled gauge in exponent notation is read":  {name: "go_memstats_heap_inuse_bytes", want: 24576000, wantOK: true},
		"a metric whose name merely starts alike is not it": {name: "go_memstats_heap_inuse", wantOK: false},
		"a missing metric is reported missing":              {name: "go_memstats_sys_bytes", wantOK: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := metricValue(text, tc.name)
			assert.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseProcStat(t *testing.T) {
	tests := map[string]struct {
		stat      string
		want      time.Duration
		wantError string
	}{
		"utime and stime are summed in ticks of 10 ms": {
			stat: "4242 (manager) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 130 0 0 20 0 12 0 100 0 0",
			want: 3800 * time.Millisecond,
		},
		"a command name with spaces and parentheses is skipped whole": {
			stat: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0",
			want: 30 * time.Millisecond,
		},
		"a truncated line is an error": {
			stat:      "7 (x) R 1 7",
			wantError: `malformed process stat "7 (x) R 1 7"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseProcStat(tc.stat)
			if tc.wantError != "" {
				require.EqualError(t, err, tc.wantError)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
