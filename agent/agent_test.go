package agent

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAgentApply(t *testing.T) {
	const base = "127.0.0.1 localhost\n"
	demo := "- {domain: demo.tencentcloudcr.com, ip: 10.0.0.2}\n"
	type step struct {
		doc     string
		present bool
	}
	tests := map[string]struct {
		start       string
		steps       []step
		want        string
		wantReady   bool
		parseErrors float64
		invalid     float64
		applied     float64
		writes      float64
		wantLog     string
	}{
		"a document is applied": {
			start:     base,
			steps:     []step{{demo, true}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1,
			wantLog: `level=INFO msg="Updated the hosts file" file=FILE source=test entries=1`,
		},
		"a missing ConfigMap removes the block": {
			start:     base + demoBlock,
			steps:     []step{{"", false}},
			want:      base,
			wantReady: true, applied: 0, writes: 1,
		},
		"applying the same document again does not write": {
			start:     base,
			steps:     []step{{demo, true}, {demo, true}, {demo, true}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1,
		},
		"a document that does not parse keeps the last applied entries": {
			start:     base,
			steps:     []step{{demo, true}, {"{not: a list}", true}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1, parseErrors: 1,
			wantLog: `level=ERROR msg="Ignored a hosts.yaml that does not parse and kept the last applied entries" source=test error="parsing hosts.yaml: want a YAML list of {domain, ip, disabled}, got a mapping"`,
		},
		"a document that does not parse keeps repairing the last applied entries": {
			start:     base,
			steps:     []step{{demo, true}, {"{not: a list}", true}, {"{not: a list}", true}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1, parseErrors: 1,
		},
		"at start-up a document that does not parse leaves the file's block alone": {
			start:     base + BeginMarker + "\n10.0.0.7 kept.example\n" + EndMarker + "\n",
			steps:     []step{{"{not: a list}", true}},
			want:      base + BeginMarker + "\n10.0.0.7 kept.example\n" + EndMarker + "\n",
			wantReady: true, parseErrors: 1,
		},
		"invalid entries are counted and logged": {
			start:     base,
			steps:     []step{{demo + "- {domain: Bad, ip: 10.0.0.1}\n", true}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1, invalid: 1,
			wantLog: `level=WARN msg="Skipped an invalid hosts.yaml entry" source=test index=1 domain=Bad ip=10.0.0.1`,
		},
		"a stale block is repaired and logged": {
			start:     base + BeginMarker + "\n10.0.0.1 old.example\n",
			steps:     []step{{demo, true}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1,
			wantLog: `level=WARN msg="Removed a half-deleted managed block from the hosts file" file=FILE unpairedMarkers=1`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hosts")
			require.NoError(t, os.WriteFile(path, []byte(tc.start), 0o644))
			var logs bytes.Buffer
			a := &Agent{HostsFile: path, Source: "test", Metrics: NewMetrics(),
				Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime}))}
			assert.False(t, a.Ready())
			for _, s := range tc.steps {
				require.NoError(t, a.Apply(context.Background(), []byte(s.doc), s.present))
			}
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
			assert.Equal(t, tc.wantReady, a.Ready())
			assert.Equal(t, tc.parseErrors, value(t, a.Metrics.ParseErrors), "parse errors")
			assert.Equal(t, tc.invalid, value(t, a.Metrics.InvalidEntries), "invalid entries")
			assert.Equal(t, tc.applied, value(t, a.Metrics.EntriesApplied), "entries applied")
			assert.Equal(t, tc.writes, value(t, a.Metrics.Writes), "writes")
			assert.Zero(t, value(t, a.Metrics.WriteErrors), "write errors")
			if tc.wantLog != "" {
				assert.Contains(t, logs.String(), replaceFile(tc.wantLog, path))
			}
		})
	}
}

func TestAgentApplyReportsWriteErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	a := &Agent{HostsFile: path, Source: "test", Metrics: NewMetrics(), Log: slog.New(slog.DiscardHandler)}
	err := a.Apply(context.Background(), []byte("[]"), true)
	require.EqualError(t, err, "opening hosts file: open "+path+": no such file or directory")
	assert.Equal(t, 1.0, value(t, a.Metrics.WriteErrors))
	assert.False(t, a.Ready(), "not ready before a pass succeeded")
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func replaceFile(s, path string) string { return strings.ReplaceAll(s, "FILE", path) }

// value reads a gauge's or counter's current value.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	require.NoError(t, m.Write(&out))
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
