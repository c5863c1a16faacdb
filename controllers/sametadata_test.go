package controllers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

func TestSANeeds(t *testing.T) {
	k := func(keys ...string) saNeeds { return saNeeds{labels: keys} }
	all := saNeeds{all: true}
	assert.True(t, saNeeds{}.none())
	assert.True(t, all.covers(k("a")))
	assert.False(t, k("a").covers(all))
	assert.True(t, k("a", "b").covers(k("b")))
	assert.False(t, k("a").covers(k("a", "b")))
	assert.Equal(t, k("a", "b", "c"), k("a", "c").union(k("b", "c")))
	assert.Equal(t, all, k("a").union(all))
	assert.Equal(t, k("c"), k("a", "c").intersect(k("b", "c")))
	assert.Equal(t, k("a"), all.intersect(k("a")))

	rule, errs := engine.Compile(&tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*",
		ServiceAccountSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a", "app": "x"}}})
	require.Empty(t, errs)
	assert.Equal(t, k("app", "team"), needsOf(rule))
	assert.True(t, needsOf(nil).none())

	in := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: "sa", UID: "u", ResourceVersion: "3", Generation: 9,
		Labels:      map[string]string{"team": "a", "big": "x"},
		Annotations: map[string]string{"note": "n", lastAppliedAnnotation: "{...}"},
	}}
	out, err := k("team").transform(in)
	require.NoError(t, err)
	assert.Equal(t, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: "sa", UID: "u", ResourceVersion: "3", Labels: map[string]string{"team": "a"},
	}}, out, "only the label keys selectors read")
	out, err = all.transform(in)
	require.NoError(t, err)
	m := out.(*metav1.PartialObjectMetadata)
	assert.Equal(t, map[string]string{"team": "a", "big": "x"}, m.Labels)
	assert.Equal(t, map[string]string{"note": "n"}, m.Annotations, "never the last-applied annotation")
	again, err := all.transform(m)
	require.NoError(t, err)
	assert.Equal(t, m, again, "the transform is idempotent")
}

// fakeGen is an informer generation over a fixed list, for the loop of samCache.
func fakeGen(needs saNeeds, objs ...*metav1.PartialObjectMetadata) *saMetaGen {
	idx := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{})
	for _, o := range objs {
		t, _ := needs.transform(o)
		_ = idx.Add(t)
	}
	return &saMetaGen{needs: needs, indexer: idx, stop: func() {}}
}

func saMeta(ns, name string, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name), Labels: labels}}
}

// TestSAMCacheFollowsNeeds runs the loop of samCache with a fake build: a rule waits until an
// informer covering its needs has synced; needs that grow rebuild it for the union, and the
// handover asks for the passes of the namespaces whose kept metadata differs; needs that shrink
// rebuild it smaller; no needs stop it.
func TestSAMCacheFollowsNeeds(t *testing.T) {
	var mu sync.Mutex
	var builds []saNeeds
	// world is what the API server holds; each build lists it.
	world := []*metav1.PartialObjectMetadata{saMeta("a", "x", map[string]string{"team": "1"}), saMeta("b", "y", map[string]string{"team": "1", "tier": "f"})}
	fail := true
	var enqueued []string
	s := newSAMCache(func(_ context.Context, needs saNeeds) (*saMetaGen, error) {
		mu.Lock()
		defer mu.Unlock()
		builds = append(builds, needs)
		if fail {
			fail = false
			return nil, errors.New("forbidden")
		}
		return fakeGen(needs, world...), nil
	}, func(ns string) {
		mu.Lock()
		enqueued = append(enqueued, ns)
		mu.Unlock()
	})
	s.retry = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Start(ctx) }()

	team, tier := saNeeds{labels: []string{"team"}}, saNeeds{labels: []string{"tier"}}
	// The first build fails: use reports it, and the loop retries.
	err := s.use(ctx, "r1", team)
	require.EqualError(t, err, "starting the ServiceAccount metadata cache: forbidden")
	require.Eventually(t, func() bool { return s.use(ctx, "r1", team) == nil }, 5*time.Second, 10*time.Millisecond)
	joined, err := s.join(team, []*slimServiceAccount{{slimMeta: slimMeta{namespace: "b", name: "y", uid: "b/y"}}, {slimMeta: slimMeta{namespace: "b", name: "y", uid: "other"}}})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"team": "1"}, joined[0].labels)
	assert.Nil(t, joined[1].labels, "another ServiceAccount of the same name reads as unlabelled")
	_, err = s.join(tier, nil)
	assert.ErrorIs(t, err, errSAMetadataPending, "a rule is never joined with metadata the cache does not keep")

	// Meanwhile team changed in namespace a, and the running informer missed it.
	mu.Lock()
	world[0] = saMeta("a", "x", map[string]string{"team": "2"})
	enqueued = nil
	mu.Unlock()
	require.NoError(t, s.use(ctx, "r2", tier))
	mu.Lock()
	assert.Equal(t, []saNeeds{team, team, {labels: []string{"team", "tier"}}}, builds)
	assert.Equal(t, []string{"a"}, enqueued, "the handover asks for the pass where the kept metadata differs")
	mu.Unlock()
	joined, err = s.join(tier, []*slimServiceAccount{{slimMeta: slimMeta{namespace: "b", name: "y", uid: "b/y"}}})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"team": "1", "tier": "f"}, joined[0].labels)

	// r2 goes: rebuilt for team alone; then r1 no longer reads metadata: stopped.
	s.forget("r2")
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cur != nil && s.cur.needs.equal(team)
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, s.use(ctx, "r1", saNeeds{}))
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cur == nil
	}, 5*time.Second, 10*time.Millisecond)
	_, err = s.join(team, nil)
	assert.ErrorIs(t, err, errSAMetadataPending)
}
