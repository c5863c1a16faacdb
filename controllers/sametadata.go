package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/tcr-assistant/tcr-assistant/engine"
)

// The ServiceAccount metadata cache (docs/design.md, "Caches").
//
// The main cache keeps no labels or annotations of ServiceAccounts (newSlimMeta): anyone who may
// annotate a ServiceAccount could otherwise grow the manager's heap without bound. The few rules
// that read them (serviceAccountSelector, serviceAccountExpression) get them from samCache: a
// metadata-only informer of ServiceAccounts that runs only while some live ImagePullSecret's rule
// reads ServiceAccount metadata, and keeps only what those rules read (saNeeds): the label keys
// their selectors name, or every label and annotation when one has an expression.
//
// Rules change at runtime. A rule whose needs the running informer does not cover waits (use)
// while a new informer for the union of all needs lists the ServiceAccounts again, syncs and
// replaces the old one; when needs shrink, a smaller one replaces it the same way, and when no
// rule reads ServiceAccount metadata any more, it is stopped. At each replacement, handover
// compares the two informers' contents and asks for the namespace pass of every namespace whose
// metadata differs, so that a change the old informer had not yet delivered when it was stopped
// is not lost.

// saNeeds is what rules read of ServiceAccount metadata.
type saNeeds struct {
	// all is every label and annotation (a rule with serviceAccountExpression).
	all bool
	// labels are the sorted label keys read when !all (serviceAccountSelector).
	labels []string
}

// needsOf returns what rule reads of ServiceAccount metadata; nothing for a nil rule.
func needsOf(rule *engine.Rule) saNeeds {
	if rule == nil {
		return saNeeds{}
	}
	keys, all := rule.ServiceAccountMetadataReads()
	if all {
		return saNeeds{all: true}
	}
	slices.Sort(keys)
	return saNeeds{labels: slices.Compact(keys)}
}

func (n saNeeds) none() bool { return !n.all && len(n.labels) == 0 }

func (n saNeeds) equal(m saNeeds) bool { return n.all == m.all && slices.Equal(n.labels, m.labels) }

// covers reports whether a cache keeping n holds everything m reads.
func (n saNeeds) covers(m saNeeds) bool {
	if n.all {
		return true
	}
	if m.all {
		return false
	}
	for _, k := range m.labels {
		if _, found := slices.BinarySearch(n.labels, k); !found {
			return false
		}
	}
	return true
}

func (n saNeeds) union(m saNeeds) saNeeds {
	if n.all || m.all {
		return saNeeds{all: true}
	}
	keys := append(slices.Clone(n.labels), m.labels...)
	slices.Sort(keys)
	return saNeeds{labels: slices.Compact(keys)}
}

func (n saNeeds) intersect(m saNeeds) saNeeds {
	switch {
	case n.all:
		return m
	case m.all:
		return n
	}
	var keys []string
	for _, k := range n.labels {
		if _, found := slices.BinarySearch(m.labels, k); found {
			keys = append(keys, k)
		}
	}
	return saNeeds{labels: keys}
}

// keep returns the labels and annotations of m that n reads. The last-applied-configuration
// annotation is never kept: it only repeats the object.
func (n saNeeds) keep(m *metav1.ObjectMeta) (labels, annotations map[string]string) {
	if n.all {
		return m.Labels, withoutLastApplied(m.Annotations)
	}
	for _, k := range n.labels {
		if v, ok := m.Labels[k]; ok {
			if labels == nil {
				labels = make(map[string]string, len(n.labels))
			}
			labels[k] = v
		}
	}
	return labels, nil
}

// transform reduces what the metadata informer receives to its key and what n reads; it is
// idempotent.
func (n saNeeds) transform(in any) (any, error) {
	m, ok := in.(*metav1.PartialObjectMetadata)
	if !ok {
		return in, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion,
	}}
	out.Labels, out.Annotations = n.keep(&m.ObjectMeta)
	return out, nil
}

// sameMetadata reports whether a and b (either may be nil) hold the same ServiceAccount and the
// same metadata, as far as n reads.
func (n saNeeds) sameMetadata(a, b *metav1.PartialObjectMetadata) bool {
	if a == nil || b == nil {
		return a == b
	}
	la, aa := n.keep(&a.ObjectMeta)
	lb, ab := n.keep(&b.ObjectMeta)
	return a.UID == b.UID && maps.Equal(la, lb) && maps.Equal(aa, ab)
}

// saMetaGen is one running metadata informer.
type saMetaGen struct {
	needs   saNeeds
	indexer toolscache.Indexer // *metav1.PartialObjectMetadata reduced by needs.transform
	stop    context.CancelFunc
}

func (g *saMetaGen) get(namespace, name string) *metav1.PartialObjectMetadata {
	o, ok, _ := g.indexer.GetByKey(namespace + "/" + name)
	if !ok {
		return nil
	}
	m, _ := o.(*metav1.PartialObjectMetadata)
	return m
}

// errSAMetadataPending is returned by join while the informer is replaced by one that no longer
// covers the rule (it is about to be rebuilt); the pass is retried.
var errSAMetadataPending = errors.New("the ServiceAccount metadata cache is being rebuilt for the rules' needs")

// samCache runs the metadata informer for the needs of the live rules. It is a manager
// Runnable: Start runs the loop that builds, replaces and stops informers.
type samCache struct {
	// build starts an informer keeping needs and waits until it synced; its events go to
	// changed (namespace passes).
	build func(ctx context.Context, needs saNeeds) (*saMetaGen, error)
	// enqueue asks for the namespace pass of every ImagePullSecret in namespace.
	enqueue func(namespace string)
	retry   time.Duration

	mu    sync.Mutex
	rules map[types.UID]saNeeds // per ImagePullSecret whose rule reads ServiceAccount metadata
	cur   *saMetaGen            // nil when no rule reads ServiceAccount metadata
	err   error                 // of the last build, until one succeeds
	// changed is closed, and replaced, whenever cur or err changes.
	changed chan struct{}
	wake    chan struct{}
}

func newSAMCache(build func(context.Context, saNeeds) (*saMetaGen, error), enqueue func(string)) *samCache {
	return &samCache{
		build: build, enqueue: enqueue, retry: 5 * time.Second,
		rules: map[types.UID]saNeeds{}, changed: make(chan struct{}), wake: make(chan struct{}, 1),
	}
}

func (s *samCache) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// use records what the rule of the ImagePullSecret uid reads and waits, when it reads
// ServiceAccount metadata that the running informer does not keep, until one that does has
// synced. A build error is returned (the pass is retried).
func (s *samCache) use(ctx context.Context, uid types.UID, needs saNeeds) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if needs.none() {
		if _, ok := s.rules[uid]; ok {
			delete(s.rules, uid)
			s.poke() // needs may shrink
		}
		return nil
	}
	if old, ok := s.rules[uid]; !ok || !old.equal(needs) {
		s.rules[uid] = needs
		s.poke()
	}
	for s.cur == nil || !s.cur.needs.covers(needs) {
		if s.err != nil {
			return fmt.Errorf("starting the ServiceAccount metadata cache: %w", s.err)
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			return ctx.Err()
		}
		s.mu.Lock()
	}
	return nil
}

// forget drops the needs of a deleted ImagePullSecret.
func (s *samCache) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rules[uid]; ok {
		delete(s.rules, uid)
		s.poke()
	}
}

// join returns sas with the labels and annotations needs reads, from the metadata informer. The
// objects returned are copies; their maps are shared with the caches and must not be modified.
// With no needs, sas is returned as it is.
func (s *samCache) join(needs saNeeds, sas []*slimServiceAccount) ([]*slimServiceAccount, error) {
	if needs.none() {
		return sas, nil
	}
	s.mu.Lock()
	g := s.cur
	s.mu.Unlock()
	if g == nil || !g.needs.covers(needs) {
		return nil, errSAMetadataPending
	}
	out := make([]*slimServiceAccount, len(sas))
	for i, sa := range sas {
		c := *sa
		// A ServiceAccount the metadata informer has not seen yet (or only an earlier one of
		// the same name) reads as unlabelled; the informer's event brings another pass.
		if m := g.get(sa.namespace, sa.name); m != nil && m.UID == sa.uid {
			c.labels, c.annotations = m.Labels, m.Annotations
		}
		out[i] = &c
	}
	return out, nil
}

// wanted is the union of the needs of every live rule; call with mu held.
func (s *samCache) wanted() saNeeds {
	var n saNeeds
	for _, r := range s.rules {
		n = n.union(r)
	}
	return n
}

func (s *samCache) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// NeedLeaderElection: only the leader reconciles, so only the leader's rules ever need it.
func (s *samCache) NeedLeaderElection() bool { return true }

// Start runs the loop that keeps the informer matching the live rules' needs, until ctx ends.
func (s *samCache) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("serviceaccount-metadata")
	defer func() {
		s.mu.Lock()
		if s.cur != nil {
			s.cur.stop()
		}
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
		for ctx.Err() == nil {
			s.mu.Lock()
			want, cur := s.wanted(), s.cur
			if cur == nil && want.none() || cur != nil && cur.needs.equal(want) {
				if want.none() {
					s.err = nil // of a build nobody waits for any more
				}
				s.mu.Unlock()
				break
			}
			if want.none() {
				s.cur, s.err = nil, nil
				s.signal()
				s.mu.Unlock()
				cur.stop()
				log.Info("Stopped the ServiceAccount metadata cache: no rule reads ServiceAccount labels or annotations")
				break
			}
			s.mu.Unlock()
			g, err := s.build(ctx, want)
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.signal()
				s.mu.Unlock()
				log.Error(err, "Failed to start the ServiceAccount metadata cache; retrying")
				select {
				case <-ctx.Done():
				case <-time.After(s.retry):
				}
				continue
			}
			if !g.needs.covers(s.wanted()) {
				// A rule came that reads more while it was built: build again for it.
				s.mu.Unlock()
				g.stop()
				continue
			}
			old := s.cur
			s.cur, s.err = g, nil
			s.signal()
			s.mu.Unlock()
			log.Info("Started the ServiceAccount metadata cache", "allLabelsAndAnnotations", want.all, "labelKeys", want.labels)
			if old != nil {
				s.handover(old, g)
				old.stop()
			}
		}
	}
}

// handover asks for the namespace pass of every namespace where the new informer holds other
// metadata than the old one, as far as both keep it. Passes from then on read the new one; a
// change the old one had not delivered yet would otherwise never bring a pass. What only the
// new one keeps needs no pass: the rules that read it were waiting for it, and their own full
// pass walks every namespace.
func (s *samCache) handover(old, cur *saMetaGen) {
	both := old.needs.intersect(cur.needs)
	namespaces := map[string]bool{}
	for _, o := range cur.indexer.List() {
		m, ok := o.(*metav1.PartialObjectMetadata)
		if !ok || namespaces[m.Namespace] {
			continue
		}
		if !both.sameMetadata(old.get(m.Namespace, m.Name), m) {
			namespaces[m.Namespace] = true
		}
	}
	for ns := range namespaces {
		s.enqueue(ns)
	}
}

// startSAMetadata is samCache.build for a manager: a cache of its own holding ServiceAccounts
// metadata-only, reduced by needs.transform, whose events ask for namespace passes.
func startSAMetadata(mgr ctrl.Manager, enqueue func(string)) func(ctx context.Context, needs saNeeds) (*saMetaGen, error) {
	return func(ctx context.Context, needs saNeeds) (*saMetaGen, error) {
		c, err := cache.New(mgr.GetConfig(), cache.Options{
			HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
			DefaultTransform: needs.transform,
		})
		if err != nil {
			return nil, err
		}
		obj := &metav1.PartialObjectMetadata{}
		obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceAccount"))
		ctx, stop := context.WithCancel(ctx)
		inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			stop()
			return nil, err
		}
		idx, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
		if !ok {
			stop()
			return nil, fmt.Errorf("the ServiceAccount metadata informer has no indexer (%T)", inf)
		}
		if _, err := inf.AddEventHandler(samHandler(needs, enqueue)); err != nil {
			stop()
			return nil, err
		}
		go func() { _ = c.Start(ctx) }()
		syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if !c.WaitForCacheSync(syncCtx) {
			stop()
			return nil, errors.New("the ServiceAccount metadata informer did not sync within 2 minutes")
		}
		return &saMetaGen{needs: needs, indexer: idx.GetIndexer(), stop: stop}, nil
	}
}

// samHandler asks for the namespace pass of a ServiceAccount's namespace when what the rules
// read of its metadata changed, or when it appears. Deletes need nothing: the main cache's
// ServiceAccount handler asks for that pass.
func samHandler(needs saNeeds, enqueue func(string)) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok && !initial {
				enqueue(m.Namespace)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*metav1.PartialObjectMetadata)
			n, ok2 := newObj.(*metav1.PartialObjectMetadata)
			if ok1 && ok2 && !needs.sameMetadata(o, n) {
				enqueue(n.Namespace)
			}
		},
	}
}
