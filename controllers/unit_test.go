package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

func TestRenderDockerConfig(t *testing.T) {
	tests := map[string]struct {
		server, user, pass string
		want               string
	}{
		"the original's sample renders username, password and auth in that order": {
			server: "fanjiankong-bj.tencentcloudcr.com", user: "100012345678", pass: "tcr.jwt.token",
			want: `{"auths":{"fanjiankong-bj.tencentcloudcr.com":{"username":"100012345678","password":"tcr.jwt.token","auth":"MTAwMDEyMzQ1Njc4OnRjci5qd3QudG9rZW4="}}}`,
		},
		"a server with a port is kept as the key": {
			server: "registry.example.com:5000", user: "u", pass: "p",
			want: `{"auths":{"registry.example.com:5000":{"username":"u","password":"p","auth":"dTpw"}}}`,
		},
		"HTML characters are not escaped and quotes are": {
			server: "r.example.com", user: "a&b", pass: `<"x">`,
			want: `{"auths":{"r.example.com":{"username":"a&b","password":"<\"x\">","auth":"YSZiOjwieCI+"}}}`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := renderDockerConfig(tc.server, tc.user, tc.pass)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
			assert.True(t, json.Valid(got))
		})
	}
}

func TestSecretDataMatches(t *testing.T) {
	want := newSecretData([]byte(`{"auths":{}}`))
	tests := map[string]struct {
		secret corev1.Secret
		want   bool
	}{
		"the same type and data match": {
			secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{}}`)}},
			want:   true,
		},
		"other data does not match": {
			secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte(`{}`)}},
		},
		"an extra key does not match": {
			secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{}}`), "x": nil}},
		},
		"another type does not match": {
			secret: corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{}}`)}},
		},
		"no data does not match": {
			secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, want.matches(newSlimSecret(&tc.secret)))
		})
	}
}

func sa(rv string, pull ...string) *corev1.ServiceAccount {
	s := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "default", ResourceVersion: rv}}
	for _, p := range pull {
		s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
	}
	return s
}

func TestTrackerOverlay(t *testing.T) {
	tests := map[string]struct {
		wrote, deleted client.Object
		observed       client.Object
		cached         client.Object
		wantRV         string // "" for nil
	}{
		"with nothing written the cache is believed": {
			cached: sa("10"), wantRV: "10",
		},
		"a write newer than the cache is believed": {
			wrote: sa("12", "x"), cached: sa("10"), wantRV: "12",
		},
		"a cache that caught up with the write is believed": {
			wrote: sa("12", "x"), cached: sa("12", "x"), wantRV: "12",
		},
		"a cache newer than the write is believed": {
			wrote: sa("12", "x"), cached: sa("15"), wantRV: "15",
		},
		"a created object missing from the cache is believed to exist": {
			wrote: sa("12"), cached: nil, wantRV: "12",
		},
		"a deleted object still in the cache is believed gone": {
			deleted: sa("12"), cached: sa("12"), wantRV: "",
		},
		"an object recreated after our delete is believed": {
			deleted: sa("12"), cached: sa("20"), wantRV: "20",
		},
		"an observed event forgets the write": {
			wrote: sa("12", "x"), observed: sa("12", "x"), cached: sa("10"), wantRV: "10",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tr := trackerWith(tc.wrote, "10", tc.deleted)
			if tc.observed != nil {
				tr.observed(kindServiceAccount, tc.observed, nil, false)
			}
			got := tr.overlay(kindServiceAccount, "ns", "default", tc.cached)
			if tc.wantRV == "" {
				assert.Nil(t, got)
				return
			}
			require.NotNil(t, got)
			assert.Equal(t, tc.wantRV, got.GetResourceVersion())
		})
	}
}

func TestBuildStatus(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	created := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	written := metav1.NewTime(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "x", UID: "uid", Generation: 3}}
	ips.Status.SecretUpdateSuccessful = []tcrv1.TargetUpdate{{NamespacedName: "b/tcr.ipsx", UpdatedAt: earlier}}
	tests := map[string]struct {
		results       []nsResult
		wantCounts    [4]int32
		wantSecrets   []tcrv1.TargetUpdate
		wantReady     metav1.ConditionStatus
		wantReason    string
		wantFailures  int
		writtenSecret string
	}{
		"counters are exact and the list keeps earlier timestamps, capped and sorted": {
			results: []nsResult{
				{namespace: "c", secretDesired: true, secretOK: true, secretCreated: created, sas: []saResult{{name: "default", ok: true}}},
				{namespace: "b", secretDesired: true, secretOK: true, secretCreated: created},
				{namespace: "a", secretDesired: true, secretOK: true, secretCreated: created},
				{namespace: "skipped"},
			},
			writtenSecret: "a",
			wantCounts:    [4]int32{3, 3, 1, 1},
			wantSecrets: []tcrv1.TargetUpdate{
				{NamespacedName: "a/tcr.ipsx", UpdatedAt: written},
				{NamespacedName: "b/tcr.ipsx", UpdatedAt: earlier},
			},
			wantReady: metav1.ConditionTrue, wantReason: "Distributed",
		},
		"a target not up to date leaves Ready false and Progressing": {
			results: []nsResult{
				{namespace: "a", secretDesired: true, secretOK: true, secretCreated: created, sas: []saResult{{name: "default"}}},
			},
			wantCounts:  [4]int32{1, 1, 1, 0},
			wantSecrets: []tcrv1.TargetUpdate{{NamespacedName: "a/tcr.ipsx", UpdatedAt: created}},
			wantReady:   metav1.ConditionFalse, wantReason: "Progressing",
		},
		"a failure leaves Ready false with TargetsFailed": {
			results: []nsResult{
				{namespace: "a", secretDesired: true, failures: []tcrv1.TargetFailure{{Kind: "Secret", NamespacedName: "a/tcr.ipsx", Reason: ReasonSecretNotOwned}}},
			},
			wantCounts: [4]int32{1, 0, 0, 0},
			wantReady:  metav1.ConditionFalse, wantReason: "TargetsFailed", wantFailures: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := New(Options{StatusListLimit: 2})
			if tc.writtenSecret != "" {
				r.memory.wrote(targetKey{uid: "uid", kind: kindSecret, namespace: tc.writtenSecret, name: "tcr.ipsx"}, written)
			}
			st, ready := r.buildStatus(ips, tc.results, time.Now())
			assert.Equal(t, tc.wantCounts, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
			assert.Equal(t, tc.wantSecrets, st.SecretUpdateSuccessful)
			assert.Len(t, st.Failures, tc.wantFailures)
			assert.Equal(t, int64(3), st.ObservedGeneration)
			require.Len(t, st.Conditions, 1)
			assert.Equal(t, tc.wantReady, st.Conditions[0].Status)
			assert.Equal(t, tc.wantReason, st.Conditions[0].Reason)
			assert.Equal(t, int64(3), st.Conditions[0].ObservedGeneration)
			assert.Equal(t, tc.wantReady == metav1.ConditionTrue, ready)
		})
	}
}

func TestOwnerLabelValue(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 100)
	tests := map[string]struct {
		name string
		want string
	}{
		"a name that fits a label value is used as it is":  {name: "imagepullsecret-sample", want: "imagepullsecret-sample"},
		"a name of exactly 63 characters is used as it is": {name: strings.Repeat("x", 63), want: strings.Repeat("x", 63)},
		"a longer name is cut and suffixed with a hash":    {name: long, want: strings.Repeat("a", 52) + "-" + hashPrefix(long)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := OwnerLabelValue(tc.name)
			assert.Equal(t, tc.want, got)
			assert.Empty(t, validation.IsValidLabelValue(got))
		})
	}
}

func hashPrefix(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:10]
}

func TestStatusDelay(t *testing.T) {
	tests := map[string]struct {
		statusDelay, lastPass, want time.Duration
	}{
		"a CR never passed waits StatusDelay":                   {time.Second, 0, time.Second},
		"a cheap pass keeps StatusDelay":                        {time.Second, 20 * time.Millisecond, time.Second},
		"an expensive pass spaces the next by ten times itself": {time.Second, 500 * time.Millisecond, 5 * time.Second},
		"the wait is capped so status never lags far":           {time.Second, 37 * time.Second, maxStatusDelay},
		"a StatusDelay above the cap is kept":                   {time.Minute, 37 * time.Second, time.Minute},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := New(Options{StatusDelay: tc.statusDelay})
			if tc.lastPass > 0 {
				r.passTime["ips"] = tc.lastPass
			}
			assert.Equal(t, tc.want, r.statusDelay("ips"))
		})
	}
}

func TestCompareTargets(t *testing.T) {
	names := []string{"", "a", "a-b", "a/b", "a.b", "ab", "b", "default", "kube-system", "z", "a0", "é"}
	for _, ns1 := range names {
		for _, n1 := range names {
			for _, ns2 := range names {
				for _, n2 := range names {
					want := strings.Compare(ns1+"/"+n1, ns2+"/"+n2)
					if got := compareTargets(ns1, n1, ns2, n2); got != want {
						t.Fatalf("compareTargets(%q, %q, %q, %q) = %d, want %d", ns1, n1, ns2, n2, got, want)
					}
				}
			}
		}
	}
}

func TestMemoryKeepsTheWritesTheListsCanShow(t *testing.T) {
	m := newMemory(3)
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(int64(s), 0)) }
	key := func(ns string) targetKey {
		return targetKey{uid: "u", kind: kindSecret, namespace: ns, name: "tcr.ipsx"}
	}
	for i, ns := range []string{"d", "b", "e", "a", "c"} {
		m.wrote(key(ns), at(i))
	}
	remembered := func() (out []string) {
		for _, ns := range []string{"a", "b", "c", "d", "e"} {
			if _, ok := m.writtenAt(key(ns)); ok {
				out = append(out, ns)
			}
		}
		return out
	}
	assert.Equal(t, []string{"a", "b", "c"}, remembered(), "only the first three by namespace/name")
	got, _ := m.writtenAt(key("b"))
	assert.Equal(t, at(1), got)

	m.wrote(key("b"), at(9))
	got, _ = m.writtenAt(key("b"))
	assert.Equal(t, at(9), got, "a rewrite moves the time")

	m.forgetTarget(key("a"))
	m.wrote(key("e"), at(10))
	assert.Equal(t, []string{"b", "c", "e"}, remembered(), "a forgotten target frees its place")

	other := targetKey{uid: "u", kind: kindServiceAccount, namespace: "a", name: "default"}
	m.wrote(other, at(11))
	_, ok := m.writtenAt(other)
	assert.True(t, ok, "each kind has its own list")

	m.forgetCR("u")
	assert.Empty(t, remembered())
	assert.Empty(t, m.written)
}

func TestMemoryPrunesWritesOfTargetsTheListNoLongerShows(t *testing.T) {
	m := newMemory(3)
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(int64(s), 0)) }
	key := func(ns string) targetKey {
		return targetKey{uid: "u", kind: kindSecret, namespace: ns, name: "tcr.ipsx"}
	}
	shown := func(nss ...string) (out []successEntry) {
		for _, ns := range nss {
			out = append(out, successEntry{namespace: ns, name: "tcr.ipsx"})
		}
		return out
	}
	for _, ns := range []string{"a", "b", "c", "d"} {
		m.wrote(key(ns), at(1))
	}
	// Namespace b went away: the list now shows a, c, d, and b's place must go to d.
	m.prune("u", kindSecret, shown("a", "c", "d"), at(50))
	m.wrote(key("d"), at(100))
	got, ok := m.writtenAt(key("d"))
	assert.True(t, ok)
	assert.Equal(t, at(100), got)
	_, ok = m.writtenAt(key("b"))
	assert.False(t, ok)

	m.wrote(key("b"), at(60))
	m.prune("u", kindSecret, shown("a", "c", "d"), at(60))
	_, ok = m.writtenAt(key("b"))
	assert.True(t, ok, "a write made while the pass ran is kept")

	m.prune("u", kindSecret, shown("a"), at(200))
	_, ok = m.writtenAt(key("c"))
	assert.False(t, ok, "a list that is not full keeps only what it shows")
	_, ok = m.writtenAt(key("a"))
	assert.True(t, ok)
}

func TestFirstEntries(t *testing.T) {
	f := firstEntries{limit: 3}
	for _, ns := range []string{"m", "c", "x", "a-b", "a", "b", "c"} {
		f.add(successEntry{namespace: ns, name: "default"})
	}
	var got []string
	for _, e := range f.entries {
		got = append(got, e.namespace+"/"+e.name)
	}
	assert.Equal(t, []string{"a-b/default", "a/default", "b/default"}, got)
}

// trackerWith returns a tracker that remembers writing wrote over resourceVersion base and
// deleting deleted (either may be nil), both ServiceAccounts.
func trackerWith(wrote client.Object, base string, deleted client.Object) *tracker {
	tr := newTracker()
	if wrote != nil {
		tr.wrote(kindServiceAccount, wrote, base)
	}
	if deleted != nil {
		tr.deleted(kindServiceAccount, deleted)
	}
	return tr
}

func TestTrackerEcho(t *testing.T) {
	tests := map[string]struct {
		wrote, deleted client.Object
		base           string // the resourceVersion the write was made over
		observed, old  client.Object
		gone           bool
		want           bool
	}{
		"the event of our own patch is its echo": {
			wrote: sa("12", "x"), base: "10", observed: sa("12", "x"), old: sa("10"), want: true,
		},
		"the event of our own create is its echo": {
			wrote: sa("12", "x"), observed: sa("12", "x"), want: true,
		},
		"an event folding someone else's change in is not (a relist after our write over a live read)": {
			wrote: sa("12", "x"), base: "11", observed: sa("12", "x"), old: sa("10"),
		},
		"a later version is someone else's change": {
			wrote: sa("12", "x"), base: "10", observed: sa("13", "x"), old: sa("12", "x"),
		},
		"an older version is not the echo": {
			wrote: sa("12", "x"), base: "10", observed: sa("11"), old: sa("10"),
		},
		"nothing written: no echo": {
			observed: sa("12"), old: sa("10"),
		},
		"the delete event of our own delete is its echo": {
			deleted: sa("12"), observed: sa("12"), gone: true, want: true,
		},
		"a delete of what we wrote is someone else's doing": {
			wrote: sa("12", "x"), base: "10", observed: sa("12", "x"), gone: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tr := trackerWith(tc.wrote, tc.base, tc.deleted)
			assert.Equal(t, tc.want, tr.observed(kindServiceAccount, tc.observed, tc.old, tc.gone))
			assert.False(t, tr.observed(kindServiceAccount, tc.observed, tc.old, tc.gone), "an expectation is met once")
		})
	}
}

func TestSlimTransform(t *testing.T) {
	yes := true
	owner := metav1.OwnerReference{APIVersion: "tcr.tencentcloudcr.com/v1", Kind: "ImagePullSecret", Name: "x", UID: "u", Controller: &yes}
	in := &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: "default", ResourceVersion: "7", UID: "sa-uid",
			Labels:      map[string]string{"team": "a"},
			Annotations: map[string]string{"note": "kept", lastAppliedAnnotation: "{...}"},
		},
		Secrets:          []corev1.ObjectReference{{Name: "token"}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "other"}, {Name: "tcr.ipsx"}},
	}
	got, err := slimTransform(in)
	require.NoError(t, err)
	sa, ok := got.(*slimServiceAccount)
	require.True(t, ok, "got %T", got)
	assert.Equal(t, "ns", sa.GetNamespace())
	assert.Equal(t, "default", sa.GetName())
	assert.Equal(t, "7", sa.GetResourceVersion())
	assert.Equal(t, map[string]string{"team": "a"}, sa.GetLabels())
	assert.Equal(t, map[string]string{"note": "kept"}, sa.GetAnnotations(), "the last-applied annotation is dropped")
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "other"}, {Name: "tcr.ipsx"}}, sa.imagePullSecrets)
	again, err := slimTransform(sa)
	require.NoError(t, err)
	assert.Same(t, sa, again, "the transform is idempotent")

	c := sa.DeepCopyObject().(*slimServiceAccount)
	c.labels["team"] = "b"
	c.imagePullSecrets[0].Name = "changed"
	assert.Equal(t, "a", sa.labels["team"], "a deep copy shares no map")
	assert.Equal(t, "other", sa.imagePullSecrets[0].Name, "a deep copy shares no slice")

	data := []byte(`{"auths":{}}`)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tcr.ipsx", OwnerReferences: []metav1.OwnerReference{owner}},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data, "b": nil, "a": nil},
	}
	got, err = slimTransform(secret)
	require.NoError(t, err)
	s, ok := got.(*slimSecret)
	require.True(t, ok, "got %T", got)
	assert.Equal(t, sha256.Sum256(data), s.dataHash)
	assert.True(t, s.hasData)
	assert.Equal(t, []string{"a", "b"}, s.otherKeys)
	assert.Equal(t, corev1.SecretTypeDockerConfigJson, s.secretType)
	assert.Equal(t, "x", ownerName(&slimSecret{slimMeta: slimMeta{
		labels:          map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: "x"},
		ownerReferences: []metav1.OwnerReference{owner},
	}}))
	sc := s.DeepCopyObject().(*slimSecret)
	sc.ownerReferences[0].Name = "y"
	assert.Equal(t, "x", s.ownerReferences[0].Name, "a deep copy shares no owner reference")
}
