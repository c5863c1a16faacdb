package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HostsConfigMap and HostsKey are where hosts-updater reads its entries.
const (
	HostsConfigMap = "updater-config"
	HostsKey       = "hosts.yaml"
	hostsDomain    = "bench.tencentcloudcr.com"
)

// hostsMaps reports whether a hosts file maps domain to ip on an uncommented line.
func hostsMaps(content []byte, ip, domain string) bool {
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 || f[0][0] == '#' || string(f[0]) != ip {
			continue
		}
		for _, name := range f[1:] {
			if name[0] == '#' {
				break
			}
			if string(name) == domain {
				return true
			}
		}
	}
	return false
}

// waitHostsFile polls path every 2 ms until it maps domain to ip, and returns when it saw that.
func waitHostsFile(ctx context.Context, path, ip, domain string) (time.Time, error) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if data, err := os.ReadFile(path); err == nil && hostsMaps(data, ip, domain) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("hosts file %s never mapped %s to %s: %w", path, domain, ip, ctx.Err())
		case <-tick.C:
		}
	}
}

func hostsYAML(ip string) string {
	return fmt.Sprintf("- domain: %s\n  ip: %s\n  disabled: false\n", hostsDomain, ip)
}

// hostsUpdater measures hosts-updater's steady memory and its ConfigMap-to-file latency. A
// failure is recorded in Result.Skipped rather than failing the run, whose other figures stand.
func (r *runner) hostsUpdater(ctx context.Context) {
	if r.cfg.HostsUpdaterBin == "" {
		r.res.Skipped = append(r.res.Skipped, "hosts-updater skipped: "+r.cfg.HostsSkipReason)
		return
	}
	if err := r.hostsPhase(ctx); err != nil {
		r.res.Skipped = append(r.res.Skipped, "hosts-updater failed: "+err.Error())
	}
}

func (r *runner) hostsPhase(ctx context.Context) error {
	res, kube := r.res, r.cp.Kube
	hostsFile := filepath.Join(res.LogDir, "hosts")
	if err := os.WriteFile(hostsFile, []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: HostsConfigMap, Namespace: OwnNamespace},
		Data: map[string]string{HostsKey: hostsYAML("10.0.0.1")}}
	cm, err := kube.CoreV1().ConfigMaps(OwnNamespace).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating ConfigMap %s/%s: %w", OwnNamespace, HostsConfigMap, err)
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	healthAddr, err := freeAddr()
	if err != nil {
		return err
	}
	p, err := startProcess(ctx, "hosts-updater", r.cfg.HostsUpdaterBin, res.LogDir, healthAddr, nil,
		"--kubeconfig", r.cp.AdminKubeconfig, "--namespace", OwnNamespace, "--hosts-file", hostsFile,
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", healthAddr)
	if err != nil {
		return err
	}
	defer p.Stop()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := waitHostsFile(wctx, hostsFile, "10.0.0.1", hostsDomain); err != nil {
		return fmt.Errorf("%w (log: %s)", err, p.log)
	}
	r.say("Timing %d ConfigMap edits through hosts-updater to %s...", r.cfg.HostsEdits, hostsFile)
	var lat []time.Duration
	for i := 0; i < r.cfg.HostsEdits; i++ {
		ip := fmt.Sprintf("10.0.1.%d", i+1)
		cm.Data[HostsKey] = hostsYAML(ip)
		t0 := time.Now()
		if cm, err = kube.CoreV1().ConfigMaps(OwnNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("editing ConfigMap %s/%s: %w", OwnNamespace, HostsConfigMap, err)
		}
		at, err := waitHostsFile(wctx, hostsFile, ip, hostsDomain)
		if err != nil {
			return fmt.Errorf("%w (log: %s)", err, p.log)
		}
		lat = append(lat, at.Sub(t0))
	}
	if err := p.alive(); err != nil {
		return err
	}
	mem, err := processMemory(p.Pid())
	if err != nil {
		return err
	}
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	res.add("hosts-updater.rss", mem.RSS/mib, "MiB")
	res.add("hosts-updater.rss.peak", mem.PeakRSS/mib, "MiB")
	res.add("hosts-updater.rss.anon", mem.Anon/mib, "MiB")
	res.add("hosts-updater.rss.file", mem.File/mib, "MiB")
	res.add("hosts.p50", float64(p50.Microseconds())/1000, "ms")
	res.add("hosts.p99", float64(p99.Microseconds())/1000, "ms")
	res.check("hosts-updater.rss", "<= 20 MiB", mem.RSS/mib, "MiB", mem.RSS/mib <= 20)
	res.check("hosts.p99", "<= 1000 ms", float64(p99.Microseconds())/1000, "ms", p99 <= time.Second)
	return nil
}
