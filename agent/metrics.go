package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent's Prometheus metrics, on a registry of their own so that the agent
// exposes what it does and nothing a library registered globally.
type Metrics struct {
	Registry *prometheus.Registry

	LastApply      prometheus.Gauge
	EntriesApplied prometheus.Gauge
	InvalidEntries prometheus.Gauge
	OutsideBlock   prometheus.Gauge
	// ConfigMapMissing is 1 while updater-config does not exist and the entries are kept.
	ConfigMapMissing prometheus.Gauge
	ParseErrors      prometheus.Counter
	WriteErrors      prometheus.Counter
	Writes           prometheus.Counter
}

// NewMetrics registers the agent's metrics on a new registry.
func NewMetrics() *Metrics {
	const ns, sub = "tcr_assistant", "hosts_updater"
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		LastApply: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "last_apply_timestamp_seconds", Help: "Unix time of the last pass that left the hosts file as configured."}),
		EntriesApplied: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "entries_applied", Help: "Entries in the managed block after the last successful pass."}),
		InvalidEntries: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "invalid_entries", Help: "Entries of hosts.yaml skipped as invalid in the last parsed document."}),
		OutsideBlock: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "domains_outside_block", Help: "Managed domains that also appear on a hosts file line outside the managed block."}),
		ConfigMapMissing: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "configmap_missing", Help: "1 while the ConfigMap updater-config does not exist; the entries in the hosts file are kept."}),
		ParseErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "parse_errors_total", Help: "hosts.yaml documents that did not parse; the last applied state was kept."}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "write_errors_total", Help: "Passes that failed to read, lock or write the hosts file."}),
		Writes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "writes_total", Help: "Writes of the hosts file (passes that found nothing to change do not write)."}),
	}
	m.Registry.MustRegister(m.LastApply, m.EntriesApplied, m.InvalidEntries, m.OutsideBlock, m.ConfigMapMissing,
		m.ParseErrors, m.WriteErrors, m.Writes)
	return m
}
