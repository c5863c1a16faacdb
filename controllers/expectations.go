package controllers

import (
	"strconv"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// expectationTTL bounds how long a write is remembered when its watch event never arrives
// (e.g. the object was deleted by someone else before the cache saw our write).
const expectationTTL = 30 * time.Second

// expectations is the one memory of this controller's writes (docs/design.md, "Minimal
// writes"): apply records every create, patch, delete and status update in it until the informer
// cache has caught up with them. It serves two purposes:
//   - overlay: reads see the object as this controller wrote it while the cache still shows an
//     older version, so that a pass that runs right after another does not write the same change
//     again (this keeps the number of writes at the minimum during a burst);
//   - echo detection: the watch event of our own write is recognised (observed) and needs no pass.
//
// The time of each write travels with the pass's result into record, which keeps it for the
// status's updatedAt.
type expectations struct {
	mu   sync.Mutex
	objs map[expectKey]expectation
}

type expectKey struct {
	kind, namespace, name string
}

type expectation struct {
	obj     client.Object // the object as the API server returned it; nil after a delete
	rv      uint64        // its resourceVersion (after a delete: the one we deleted)
	base    string        // the resourceVersion the write was made over; "" for a create
	expires time.Time
}

func newExpectations() *expectations { return &expectations{objs: map[expectKey]expectation{}} }

func resourceVersion(obj client.Object) (uint64, bool) {
	rv, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	return rv, err == nil
}

// wrote records obj as the API server returned it from a create (base "") or from an update or
// patch made over resourceVersion base.
func (t *expectations) wrote(kind string, obj client.Object, base string) {
	rv, ok := resourceVersion(obj)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.objs[expectKey{kind, obj.GetNamespace(), obj.GetName()}] = expectation{obj: obj, rv: rv, base: base, expires: time.Now().Add(expectationTTL)}
}

// deleted records that obj, as last seen, was deleted.
func (t *expectations) deleted(kind string, obj client.Object) {
	rv, _ := resourceVersion(obj)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.objs[expectKey{kind, obj.GetNamespace(), obj.GetName()}] = expectation{rv: rv, expires: time.Now().Add(expectationTTL)}
}

// observed is called with every object the cache delivers, and the version it replaces (nil for
// a create or delete); it forgets expectations the cache has caught up with. gone is true for
// delete events. It reports whether the event is the echo of this controller's own last write of
// the object: the very version it wrote, replacing the very version it wrote over (so that an
// event that folds someone else's change in, as after a relist, is not taken for an echo), or
// its own delete. An echo needs no further pass.
func (t *expectations) observed(kind string, obj, old client.Object, gone bool) (echo bool) {
	k := expectKey{kind, obj.GetNamespace(), obj.GetName()}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.objs[k]
	if !ok {
		return false
	}
	rv, ok := resourceVersion(obj)
	if gone || !ok || rv >= e.rv {
		delete(t.objs, k)
	}
	switch {
	case gone:
		return e.obj == nil
	case !ok || e.obj == nil || rv != e.rv:
		return false
	case old == nil:
		return e.base == ""
	}
	return old.GetResourceVersion() == e.base
}

// overlay returns what the controller should believe about an object given what the cache holds
// (nil when absent): the cached object, or the newer one this controller wrote, or nil when this
// controller deleted it and the cache still shows it.
func (t *expectations) overlay(kind, namespace, name string, cached client.Object) client.Object {
	k := expectKey{kind, namespace, name}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.objs[k]
	if !ok {
		return cached
	}
	if time.Now().After(e.expires) {
		delete(t.objs, k)
		return cached
	}
	if cached != nil {
		rv, ok := resourceVersion(cached)
		if !ok || (e.obj == nil && rv > e.rv) || (e.obj != nil && rv >= e.rv) {
			delete(t.objs, k)
			return cached
		}
	}
	if e.obj == nil {
		return nil
	}
	return e.obj.DeepCopyObject().(client.Object)
}
