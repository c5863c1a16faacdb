package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
)

// DefaultLockTimeout bounds how long one pass waits for another writer's lock on the hosts file;
// the next trigger or resync tries again.
const DefaultLockTimeout = 30 * time.Second

// retryAfterError is how soon a pass that failed on the hosts file is retried, well before the
// next resync.
const retryAfterError = 5 * time.Second

// Agent keeps the managed block of one hosts file equal to a hosts.yaml document.
type Agent struct {
	// HostsFile is the path of the hosts file.
	HostsFile string
	// Source names where the documents come from (namespace/name of the ConfigMap, or a file),
	// for the logs.
	Source string
	// Log receives the agent's logs; Metrics its metrics. Both are required.
	Log     *slog.Logger
	Metrics *Metrics
	// LockTimeout bounds the wait for another writer's lock; DefaultLockTimeout when zero.
	LockTimeout time.Duration
	// NodeHostsFile, when set, is the node's hosts file seen through a read-only mount of its
	// directory, while HostsFile is the same file mounted by itself, writable. A file mount
	// pins the inode it was made on: when the two differ, a node tool replaced the hosts file
	// by rename, and Apply returns ErrHostsFileReplaced.
	NodeHostsFile string
	// Event, when set, records a Kubernetes Event of type Warning.
	Event func(ctx context.Context, reason, message string)

	mu          sync.Mutex
	applied     []Entry // the entries of the last document that parsed
	haveApplied bool
	lastInvalid string // what was last logged, to log changes only
	lastBadDoc  string
	lastOutside string
	lastMissing string // why the last pass had no document, "" when it had one
	ready       atomic.Bool
}

// Why Apply has no document to apply.
const (
	// ConfigMapNotFound: the ConfigMap does not exist, deleted by accident or pruned.
	ConfigMapNotFound = ConfigMapName + " not found"
	// ConfigKeyMissing: the ConfigMap has no hosts.yaml, as the bundle ships it.
	ConfigKeyMissing = ConfigMapName + " has no " + ConfigKey
)

// ErrHostsFileReplaced is returned by Apply when the node's hosts file is no longer the file the
// agent writes; the agent exits, and the kubelet restarts it on the new file.
var ErrHostsFileReplaced = errors.New("the node's hosts file was replaced by rename")

// Ready reports whether a first pass has left the hosts file as configured (or found nothing to
// apply), for the readiness probe.
func (a *Agent) Ready() bool { return a.ready.Load() }

// Apply makes the hosts file's managed block match doc, the hosts.yaml document. missing says
// why there is no document (ConfigMapNotFound, ConfigKeyMissing), "" when there is one. Entries
// are removed only by a document that lists none: with no document, or one that does not parse,
// Apply keeps the entries applied last; at start-up, with nothing applied yet, it leaves the
// file alone, since the block in the file is the last applied state.
func (a *Agent) Apply(ctx context.Context, doc []byte, missing string) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	if err := a.checkNotReplaced(); err != nil {
		return err
	}
	a.reportMissing(ctx, missing)
	var entries []Entry
	switch {
	case missing != "":
		if !a.haveApplied {
			a.ready.Store(true)
			return nil
		}
		entries = a.applied
	default:
		cfg, err := ParseConfig(doc)
		if err != nil {
			if string(doc) != a.lastBadDoc { // once per document, not once per resync
				a.lastBadDoc = string(doc)
				a.Metrics.ParseErrors.Inc()
				a.Log.Error("Ignored a hosts.yaml that does not parse and kept the last applied entries",
					"source", a.Source, "error", err)
			}
			if !a.haveApplied {
				a.ready.Store(true)
				return nil
			}
			entries = a.applied
		} else {
			a.lastBadDoc = ""
			entries = cfg.Entries
			a.reportInvalid(cfg.Invalid)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, a.lockTimeout())
	defer cancel()
	var res MergeResult
	changed, err := UpdateFile(ctx, a.HostsFile, func(old []byte) []byte {
		res = Merge(old, entries)
		return res.Content
	})
	if err != nil {
		a.Metrics.WriteErrors.Inc()
		a.Log.Error("Failed to update the hosts file", "file", a.HostsFile, "error", err)
		return err
	}
	a.applied, a.haveApplied = entries, true
	a.Metrics.Writes.Add(boolToFloat(changed))
	a.Metrics.LastApply.SetToCurrentTime()
	a.Metrics.EntriesApplied.Set(float64(len(entries)))
	a.Metrics.OutsideBlock.Set(float64(len(res.Outside)))
	if outside := strings.Join(res.Outside, ","); outside != a.lastOutside {
		a.lastOutside = outside
		if outside != "" {
			a.Log.Warn("Found managed domains also outside the managed block of the hosts file; the line that comes first wins",
				"file", a.HostsFile, "domains", res.Outside)
		}
	}
	if res.StaleMarkers > 0 {
		a.Log.Warn("Removed a half-deleted managed block from the hosts file", "file", a.HostsFile, "unpairedMarkers", res.StaleMarkers)
	}
	if changed {
		a.Log.Info("Updated the hosts file", "file", a.HostsFile, "source", a.Source, "entries", len(entries))
	}
	a.ready.Store(true)
	return nil
}

// reportMissing says, when the document goes missing, that the entries are kept: in the log, in
// the metric configmap_missing and, for a deleted ConfigMap, in an Event.
func (a *Agent) reportMissing(ctx context.Context, missing string) {
	a.Metrics.ConfigMapMissing.Set(boolToFloat(missing == ConfigMapNotFound))
	if missing == a.lastMissing {
		return
	}
	a.lastMissing = missing
	if missing == "" {
		return
	}
	n := len(a.applied)
	if !a.haveApplied {
		n = a.entriesInFile(ctx)
	}
	msg := fmt.Sprintf("%s; keeping %d entries", missing, n)
	if missing == ConfigKeyMissing {
		a.Log.Info(msg, "source", a.Source, "file", a.HostsFile)
		return
	}
	a.Log.Warn(msg, "source", a.Source, "file", a.HostsFile)
	if a.Event != nil {
		a.Event(ctx, "ConfigMapNotFound", msg)
	}
}

// entriesInFile counts the entries of the managed block in the hosts file, -1 when it cannot be
// read.
func (a *Agent) entriesInFile(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, a.lockTimeout())
	defer cancel()
	n := -1
	if _, err := UpdateFile(ctx, a.HostsFile, func(old []byte) []byte {
		n = countEntries(old)
		return old
	}); err != nil {
		a.Log.Error("Failed to read the hosts file", "file", a.HostsFile, "error", err)
	}
	return n
}

// checkNotReplaced returns ErrHostsFileReplaced when NodeHostsFile is not HostsFile.
func (a *Agent) checkNotReplaced() error {
	if a.NodeHostsFile == "" {
		return nil
	}
	held, err := os.Stat(a.HostsFile)
	if err != nil {
		return fmt.Errorf("inspecting hosts file: %w", err)
	}
	node, err := os.Stat(a.NodeHostsFile)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHostsFileReplaced, err)
	}
	if !os.SameFile(held, node) {
		return fmt.Errorf("%w: %s is inode %d now, while %s, which the agent writes, is still inode %d; exiting so that the kubelet restarts the agent on the new file",
			ErrHostsFileReplaced, a.NodeHostsFile, node.Sys().(*syscall.Stat_t).Ino, a.HostsFile, held.Sys().(*syscall.Stat_t).Ino)
	}
	return nil
}

func (a *Agent) lockTimeout() time.Duration {
	if a.LockTimeout == 0 {
		return DefaultLockTimeout
	}
	return a.LockTimeout
}

func (a *Agent) reportInvalid(invalid []InvalidEntry) {
	a.Metrics.InvalidEntries.Set(float64(len(invalid)))
	var key strings.Builder
	for _, e := range invalid {
		fmt.Fprintf(&key, "%d|%s|%s|%s\n", e.Index, e.Domain, e.IP, e.Reason)
	}
	if key.String() == a.lastInvalid {
		return
	}
	a.lastInvalid = key.String()
	for _, e := range invalid {
		a.Log.Warn("Skipped an invalid hosts.yaml entry", "source", a.Source, "index", e.Index,
			"domain", e.Domain, "ip", e.IP, "reason", e.Reason)
	}
}

func boolToFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// configMaps is the resource the agent reads.
var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// Watch applies the ConfigMap updater-config of namespace as it changes, until ctx ends, and
// re-applies every resync to repair other writers of the file (cloud-init and the like). The
// watch is limited by a field selector to that one name, so its RBAC can be limited to it with
// resourceNames.
func (a *Agent) Watch(ctx context.Context, client dynamic.Interface, namespace string, resync time.Duration) error {
	selector := fields.OneTermEqualSelector("metadata.name", ConfigMapName).String()
	res := client.Resource(configMaps).Namespace(namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return res.Watch(ctx, o)
		},
	}
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	store, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &unstructured.Unstructured{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { poke() },
			UpdateFunc: func(any, any) { poke() },
			DeleteFunc: func(any) { poke() },
		},
	})
	go informer.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return fmt.Errorf("waiting for the ConfigMap %s/%s: %w", namespace, ConfigMapName, ctx.Err())
	}
	a.Log.Info("Started watching the ConfigMap", "configMap", namespace+"/"+ConfigMapName, "file", a.HostsFile, "resync", resync)

	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	var retry <-chan time.Time
	for {
		doc, missing := configDocument(store, namespace)
		err := a.Apply(ctx, doc, missing)
		if errors.Is(err, ErrHostsFileReplaced) {
			a.Log.Error("The node's hosts file was replaced by rename", "file", a.NodeHostsFile, "error", err)
			return err
		}
		if err != nil && ctx.Err() == nil {
			retry = time.After(retryAfterError)
		} else {
			retry = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
		case <-ticker.C:
		case <-retry:
		}
	}
}

// configDocument returns the hosts.yaml of the cached ConfigMap, or why there is none.
func configDocument(store cache.Store, namespace string) ([]byte, string) {
	obj, exists, err := store.GetByKey(namespace + "/" + ConfigMapName)
	if err != nil || !exists {
		return nil, ConfigMapNotFound
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, ConfigMapNotFound
	}
	doc, found, err := unstructured.NestedString(u.Object, "data", ConfigKey)
	if err != nil || !found {
		return nil, ConfigKeyMissing
	}
	return []byte(doc), ""
}

// RecordEvent returns an Agent.Event that creates core/v1 Events about the ConfigMap
// updater-config of namespace, from the agent on node.
func RecordEvent(client dynamic.Interface, namespace, node string, log *slog.Logger) func(ctx context.Context, reason, message string) {
	events := client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "events"}).Namespace(namespace)
	return func(ctx context.Context, reason, message string) {
		now := time.Now().UTC().Format(time.RFC3339)
		ev := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1",
			"kind":       "Event",
			"metadata":   map[string]any{"generateName": ConfigMapName + ".", "namespace": namespace},
			"involvedObject": map[string]any{
				"apiVersion": "v1", "kind": "ConfigMap", "namespace": namespace, "name": ConfigMapName,
			},
			"type":           "Warning",
			"reason":         reason,
			"message":        message,
			"source":         map[string]any{"component": "hosts-updater", "host": node},
			"firstTimestamp": now,
			"lastTimestamp":  now,
			"count":          int64(1),
		}}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := events.Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			log.Error("Failed to record an Event", "reason", reason, "message", message, "error", err)
		}
	}
}
