package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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

	mu          sync.Mutex
	applied     []Entry // the entries of the last document that parsed
	haveApplied bool
	lastInvalid string // what was last logged, to log changes only
	lastBadDoc  string
	lastOutside string
	ready       atomic.Bool
}

// Ready reports whether a first pass has left the hosts file as configured (or found nothing to
// apply), for the readiness probe.
func (a *Agent) Ready() bool { return a.ready.Load() }

// Apply makes the hosts file's managed block match doc, the hosts.yaml document; present is
// false when the ConfigMap (or its key) does not exist, which means no managed entries. A
// document that does not parse keeps the entries applied last; at start-up, with nothing
// applied yet, it leaves the file alone, since the block in the file is the last applied state.
func (a *Agent) Apply(ctx context.Context, doc []byte, present bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	var entries []Entry
	if present {
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
	} else {
		a.reportInvalid(nil)
	}

	timeout := a.LockTimeout
	if timeout == 0 {
		timeout = DefaultLockTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
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
		doc, present := configDocument(store, namespace)
		if err := a.Apply(ctx, doc, present); err != nil && ctx.Err() == nil {
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

// configDocument returns the hosts.yaml of the cached ConfigMap, and whether there is one.
func configDocument(store cache.Store, namespace string) ([]byte, bool) {
	obj, exists, err := store.GetByKey(namespace + "/" + ConfigMapName)
	if err != nil || !exists {
		return nil, false
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, false
	}
	doc, found, err := unstructured.NestedString(u.Object, "data", ConfigKey)
	if err != nil || !found {
		return nil, false
	}
	return []byte(doc), true
}
