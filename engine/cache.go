package engine

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// Cache holds compiled rules keyed by UID and generation, so a spec is compiled once per change.
// It is safe for concurrent use.
type Cache struct {
	mu      sync.RWMutex
	entries map[types.UID]cacheEntry
}

type cacheEntry struct {
	generation int64
	rule       *Rule
	errs       field.ErrorList
}

// NewCache returns an empty Cache.
func NewCache() *Cache { return &Cache{entries: map[types.UID]cacheEntry{}} }

// Get returns the compiled rule of ips, compiling it when its UID or generation is new. Compile
// errors are cached too, so a broken spec is not recompiled on every event. The returned rule and
// errors are shared: do not modify them. An object without a UID (never stored by the API server)
// is compiled on every call and not cached.
func (c *Cache) Get(ips *tcrv1.ImagePullSecret) (*Rule, field.ErrorList) {
	uid, gen := ips.UID, ips.Generation
	if uid == "" {
		return Compile(&ips.Spec)
	}
	c.mu.RLock()
	e, ok := c.entries[uid]
	c.mu.RUnlock()
	if ok && e.generation == gen {
		return e.rule, e.errs
	}
	rule, errs := Compile(&ips.Spec)
	c.mu.Lock()
	// Keep the newest generation when two callers race with different versions of the object.
	if cur, ok := c.entries[uid]; !ok || cur.generation <= gen {
		c.entries[uid] = cacheEntry{generation: gen, rule: rule, errs: errs}
	}
	c.mu.Unlock()
	return rule, errs
}

// Forget drops the rule of a deleted ImagePullSecret.
func (c *Cache) Forget(uid types.UID) {
	c.mu.Lock()
	delete(c.entries, uid)
	c.mu.Unlock()
}

// Len returns the number of cached rules.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
