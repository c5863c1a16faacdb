package engine

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/lru"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// Cache holds compiled rules keyed by UID and generation, so a spec is compiled once per change.
// It is safe for concurrent use.
//
// It also keeps, for admission, the compile verdicts of recent specs (Validate). Those are keyed
// by the spec's content, not its UID and generation: a review can come from anyone who reaches
// the webhook's port, with any UID, so a UID key would let a forged review plant a verdict for a
// spec it never showed. A content key can only ever return the verdict of that very content, and
// the number and size of the keys are bounded, so that reviews cannot grow the cache.
type Cache struct {
	mu      sync.RWMutex
	entries map[types.UID]cacheEntry

	verdicts *lru.Cache   // selection key -> field.ErrorList
	compiles atomic.Int64 // compilations for Validate, for tests
}

// AdmissionCacheSize is how many compile verdicts Validate keeps, the least recently used
// dropped first. Admission sees a spec a few times in a row (a dry run, the create, updates that
// leave it alone), so a small cache catches the repeats.
const AdmissionCacheSize = 128

// maxVerdictKey is the longest selection key Validate caches: with both expressions at their
// 4096-byte limit there is room for selectors of a hundred or so values; a larger spec is
// compiled on every review. With AdmissionCacheSize this bounds the keys to 2 MiB.
const maxVerdictKey = 16 << 10

type cacheEntry struct {
	generation int64
	rule       *Rule
	errs       field.ErrorList
}

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{entries: map[types.UID]cacheEntry{}, verdicts: lru.New(AdmissionCacheSize)}
}

// Validate is engine.Validate, compiling the spec's selectors and expressions only when their
// verdict is not cached. The returned errors are the caller's own.
func (c *Cache) Validate(spec *tcrv1.ImagePullSecretSpec) (field.ErrorList, []string) {
	return validateCompiled(spec, c.compileSelection)
}

// compileSelection compiles a spec reduced by withoutLists, through the verdict cache. It
// returns no rule: admission needs only the errors.
func (c *Cache) compileSelection(sel *tcrv1.ImagePullSecretSpec) (*Rule, field.ErrorList) {
	key, ok := selectionKey(sel)
	if ok {
		if v, found := c.verdicts.Get(key); found {
			return nil, v.(field.ErrorList)
		}
	}
	c.compiles.Add(1)
	_, errs := Compile(sel)
	if ok {
		c.verdicts.Add(key, errs)
	}
	return nil, errs
}

// selectionKey is the content of every field Compile reads of sel, or false when it is longer
// than maxVerdictKey.
func selectionKey(sel *tcrv1.ImagePullSecretSpec) (string, bool) {
	if sel == nil || len(sel.NamespaceExpression)+len(sel.ServiceAccountExpression) > maxVerdictKey {
		return "", false
	}
	// encoding/json writes map keys sorted, so equal selectors give equal keys.
	b, err := json.Marshal(struct {
		Namespaces, ServiceAccounts, Exclude string
		NsSel, SaSel                         any
		NsExpr, SaExpr                       string
	}{sel.Namespaces, sel.ServiceAccounts, sel.ExcludeNamespaces, sel.NamespaceSelector, sel.ServiceAccountSelector, sel.NamespaceExpression, sel.ServiceAccountExpression})
	if err != nil || len(b) > maxVerdictKey {
		return "", false
	}
	return string(b), true
}

// VerdictsLen returns the number of cached admission verdicts.
func (c *Cache) VerdictsLen() int { return c.verdicts.Len() }

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
