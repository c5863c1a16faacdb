package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// BenchmarkBinary builds bin/hosts-updater's source into a temporary directory, runs it as a
// child process against the local control plane and a temporary hosts file, and reports the
// time from a ConfigMap update (the API call included) to the file's change, over b.N edits
// (p50 and p99), then the process's resident memory once idle:
//
//	go test -run '^$' -bench BenchmarkBinary -benchtime 20x ./cmd/hosts-updater/
func BenchmarkBinary(b *testing.B) {
	bin := testenv.Build(b, "./cmd/hosts-updater")["hosts-updater"]
	hosts := filepath.Join(b.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, _, err := env.Kubectl("", "create", "namespace", namespace); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		b.Fatal(err)
	}
	setHosts(b, latencyDoc(0))

	p := testenv.StartProcess(b, testenv.Command{Path: bin, Args: []string{"--kubeconfig", env.Kubeconfig, "--namespace", namespace,
		"--hosts-file", hosts, "--metrics-bind-address", "127.0.0.1:18090", "--health-probe-bind-address", "127.0.0.1:18091"},
		Output: os.Stderr})
	waitUntil(b, func() bool {
		resp, err := http.Get("http://127.0.0.1:18091/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// committed: from the update's acknowledgement by the API server to the file's change;
	// call: from the client's update call to the file's change.
	committed := make([]time.Duration, 0, b.N)
	call := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		want := strings.SplitN(latencyDoc(i), "\n", 3)[1]
		want = strings.TrimPrefix(want, "  ip: ") + " demo.tencentcloudcr.com\n"
		start := time.Now()
		setHosts(b, latencyDoc(i))
		acked := time.Now()
		waitUntil(b, func() bool {
			data, _ := os.ReadFile(hosts)
			return strings.Contains(string(data), want)
		})
		committed = append(committed, time.Since(acked))
		call = append(call, time.Since(start))
	}
	b.StopTimer()
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		pct := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
		b.ReportMetric(float64(pct(0.50).Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(pct(0.99).Microseconds())/1000, name+"-p99-ms")
	}
	report("committed", committed)
	report("call", call)

	time.Sleep(10 * time.Second) // let the process settle before reading its memory
	rss, hwm := procStatus(b, p.Pid())
	b.ReportMetric(float64(rss)/1024, "VmRSS-MiB")
	b.ReportMetric(float64(hwm)/1024, "VmHWM-MiB")
}

func waitUntil(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// procStatus returns VmRSS and VmHWM of a process, in KiB.
func procStatus(b *testing.B, pid int) (rss, hwm int) {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.Atoi(fields[1])
		switch fields[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// latencyDoc is the hosts.yaml of edit i: one entry whose address changes with i.
func latencyDoc(i int) string {
	return fmt.Sprintf("- domain: demo.tencentcloudcr.com\n  ip: 10.0.%d.%d\n", i/250, i%250+1)
}
