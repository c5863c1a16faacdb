package agent

import (
	"bytes"
	"context"
	"fmt"
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
		missing string
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
		cmMissing   float64
		wantLog     string
		wantEvents  []string
	}{
		"a document is applied": {
			start:     base,
			steps:     []step{{demo, ""}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1,
			wantLog: `level=INFO msg="Updated the hosts file" file=FILE source=test entries=1`,
		},
		"a deleted ConfigMap keeps the entries, and says so once": {
			start:     base,
			steps:     []step{{demo, ""}, {"", ConfigMapNotFound}, {"", ConfigMapNotFound}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1, cmMissing: 1,
			wantLog:    `level=WARN msg="updater-config not found; keeping 1 entries" source=test file=FILE`,
			wantEvents: []string{"ConfigMapNotFound: updater-config not found; keeping 1 entries"},
		},
		"a deleted ConfigMap keeps repairing the last applied entries": {
			start:     base,
			steps:     []step{{demo, ""}, {"", ConfigMapNotFound}, {"", "erase"}, {"", ConfigMapNotFound}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 2, cmMissing: 1,
			wantEvents: []string{"ConfigMapNotFound: updater-config not found; keeping 1 entries"},
		},
		"at start-up a missing ConfigMap leaves the file's block alone and counts its entries": {
			start:     base + BeginMarker + "\n10.0.0.7 kept.example\n10.0.0.8 also-kept.example\n" + EndMarker + "\n",
			steps:     []step{{"", ConfigMapNotFound}},
			want:      base + BeginMarker + "\n10.0.0.7 kept.example\n10.0.0.8 also-kept.example\n" + EndMarker + "\n",
			wantReady: true, cmMissing: 1,
			wantLog:    `level=WARN msg="updater-config not found; keeping 2 entries" source=test file=FILE`,
			wantEvents: []string{"ConfigMapNotFound: updater-config not found; keeping 2 entries"},
		},
		"a ConfigMap without hosts.yaml keeps the entries, with no Event": {
			start:     base,
			steps:     []step{{demo, ""}, {"", ConfigKeyMissing}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1,
			wantLog: `level=INFO msg="updater-config has no hosts.yaml; keeping 1 entries" source=test file=FILE`,
		},
		"a recreated ConfigMap is applied, and a second deletion reported again": {
			start:     base,
			steps:     []step{{demo, ""}, {"", ConfigMapNotFound}, {"- {domain: b.example, ip: 10.0.0.9}", ""}, {"", ConfigMapNotFound}},
			want:      base + BeginMarker + "\n10.0.0.9 b.example\n" + EndMarker + "\n",
			wantReady: true, applied: 1, writes: 2, cmMissing: 1,
			wantEvents: []string{"ConfigMapNotFound: updater-config not found; keeping 1 entries", "ConfigMapNotFound: updater-config not found; keeping 1 entries"},
		},
		"an explicit empty list removes the entries": {
			start:     base,
			steps:     []step{{demo, ""}, {"[]", ""}},
			want:      base,
			wantReady: true, applied: 0, writes: 2,
		},
		"applying the same document again does not write": {
			start:     base,
			steps:     []step{{demo, ""}, {demo, ""}, {demo, ""}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1,
		},
		"a document that does not parse keeps the last applied entries": {
			start:     base,
			steps:     []step{{demo, ""}, {"{not: a list}", ""}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1, parseErrors: 1,
			wantLog: `level=ERROR msg="Ignored a hosts.yaml that does not parse and kept the last applied entries" source=test error="parsing hosts.yaml: want a YAML list of {domain, ip, disabled}, got a mapping"`,
		},
		"a document that does not parse keeps repairing the last applied entries": {
			start:     base,
			steps:     []step{{demo, ""}, {"{not: a list}", ""}, {"{not: a list}", ""}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1, parseErrors: 1,
		},
		"at start-up a document that does not parse leaves the file's block alone": {
			start:     base + BeginMarker + "\n10.0.0.7 kept.example\n" + EndMarker + "\n",
			steps:     []step{{"{not: a list}", ""}},
			want:      base + BeginMarker + "\n10.0.0.7 kept.example\n" + EndMarker + "\n",
			wantReady: true, parseErrors: 1,
		},
		"invalid entries are counted and logged": {
			start:     base,
			steps:     []step{{demo + "- {domain: Bad, ip: 10.0.0.1}\n", ""}},
			want:      base + demoBlock,
			wantReady: true, applied: 1, writes: 1, invalid: 1,
			wantLog: `level=WARN msg="Skipped an invalid hosts.yaml entry" source=test index=1 domain=Bad ip=10.0.0.1`,
		},
		"a stale block is repaired and logged": {
			start:     base + BeginMarker + "\n10.0.0.1 old.example\n",
			steps:     []step{{demo, ""}},
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
			var events []string
			a.Event = func(_ context.Context, reason, message string) { events = append(events, reason+": "+message) }
			assert.False(t, a.Ready())
			for _, s := range tc.steps {
				if s.missing == "erase" { // another writer removes the block
					require.NoError(t, os.WriteFile(path, []byte(tc.start), 0o644))
					continue
				}
				require.NoError(t, a.Apply(context.Background(), []byte(s.doc), s.missing))
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
			assert.Equal(t, tc.cmMissing, value(t, a.Metrics.ConfigMapMissing), "configmap missing")
			assert.Equal(t, tc.wantEvents, events)
			if tc.wantLog != "" {
				assert.Contains(t, logs.String(), replaceFile(tc.wantLog, path))
			}
		})
	}
}

func TestAgentApplyReportsWriteErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	a := &Agent{HostsFile: path, Source: "test", Metrics: NewMetrics(), Log: slog.New(slog.DiscardHandler)}
	err := a.Apply(context.Background(), []byte("[]"), "")
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

// TestAgentApplyRefusesAReplacedHostsFile stands a hard link for the file mount (same inode) and
// replaces the node's file by rename. TestAgentOnTheNodeWritesOnlyTheHostsFile (test/e2e) does
// it with the DaemonSet's real mounts.
func TestAgentApplyRefusesAReplacedHostsFile(t *testing.T) {
	dir := t.TempDir()
	node := filepath.Join(dir, "etc-hosts")
	held := filepath.Join(dir, "mounted-hosts")
	require.NoError(t, os.WriteFile(node, []byte("127.0.0.1 localhost\n"), 0o644))
	require.NoError(t, os.Link(node, held))
	a := &Agent{HostsFile: held, NodeHostsFile: node, Source: "test", Metrics: NewMetrics(), Log: slog.New(slog.DiscardHandler)}
	demo := []byte("- {domain: demo.tencentcloudcr.com, ip: 10.0.0.2}\n")
	require.NoError(t, a.Apply(context.Background(), demo, ""))
	assert.Equal(t, "127.0.0.1 localhost\n"+demoBlock, fileContent(t, node))

	heldIno := inode(t, held)
	require.NoError(t, os.WriteFile(node+".new", []byte("127.0.0.1 new\n"), 0o644))
	require.NoError(t, os.Rename(node+".new", node))
	err := a.Apply(context.Background(), demo, "")
	require.ErrorIs(t, err, ErrHostsFileReplaced)
	require.EqualError(t, err, fmt.Sprintf("the node's hosts file was replaced by rename: %s is inode %d now, while %s, which the agent writes, is still inode %d; exiting so that the kubelet restarts the agent on the new file",
		node, inode(t, node), held, heldIno))
	assert.Equal(t, "127.0.0.1 new\n", fileContent(t, node), "the new file was written")

	require.NoError(t, os.Remove(node))
	require.EqualError(t, a.Apply(context.Background(), demo, ""),
		"the node's hosts file was replaced by rename: stat "+node+": no such file or directory")
}
