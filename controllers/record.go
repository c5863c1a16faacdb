package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// record is the third stage of a pass (docs/design.md, "Data path"): it keeps each namespace's
// result until the next pass over that namespace replaces it, sends one Event for each failure
// that is new, and builds the status by adding the kept results up. A status pass therefore
// reads no cache and evaluates no rule: it costs a walk over the kept results.

// results holds, per ImagePullSecret UID, the last result of each namespace that has something
// to show: a Secret or ServiceAccount it should hold, or a failure. Namespaces that a rule does
// not select keep nothing.
type results struct {
	mu      sync.Mutex
	byOwner map[types.UID]map[string]*nsResult
}

func newResults() *results { return &results{byOwner: map[types.UID]map[string]*nsResult{}} }

// get returns the kept result of namespace for uid, or nil. It is shared: do not modify it.
func (rs *results) get(uid types.UID, namespace string) *nsResult {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.byOwner[uid][namespace]
}

// put keeps res as the result of namespace for uid and returns the one it replaces.
func (rs *results) put(uid types.UID, namespace string, res nsResult) *nsResult {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	m := rs.byOwner[uid]
	prev := m[namespace]
	if !res.wantSecret && len(res.failures) == 0 {
		delete(m, namespace)
		return prev
	}
	if m == nil {
		m = map[string]*nsResult{}
		rs.byOwner[uid] = m
	}
	m[namespace] = &res
	return prev
}

// forgetNamespace drops the results of a deleted namespace, for every ImagePullSecret.
func (rs *results) forgetNamespace(namespace string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, m := range rs.byOwner {
		delete(m, namespace)
	}
}

// forgetOwner drops the results of a deleted ImagePullSecret.
func (rs *results) forgetOwner(uid types.UID) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.byOwner, uid)
}

// each calls fn with every kept result of uid, under the lock: fn must not call results.
func (rs *results) each(uid types.UID, fn func(namespace string, res *nsResult)) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for ns, res := range rs.byOwner[uid] {
		fn(ns, res)
	}
}

// record keeps res as the result of namespace for t, and sends a Warning Event for each failure
// that the previous result did not have: one Event per occurrence, not one per pass.
func (r *Reconciler) record(t *target, namespace string, res nsResult) {
	prev := r.results.put(t.owner.uid, namespace, res)
	for _, f := range res.failures {
		if prev != nil && slices.ContainsFunc(prev.failures, func(p tcrv1.TargetFailure) bool {
			return p.Kind == f.Kind && p.NamespacedName == f.NamespacedName && p.Reason == f.Reason
		}) {
			continue
		}
		r.recorder.Eventf(t.ips, nil, corev1.EventTypeWarning, f.Reason, "Distribute", "%s", failureNote(f))
	}
}

// failureNote is the note of the Event of a failure.
func failureNote(f tcrv1.TargetFailure) string {
	switch f.Reason {
	case tcrv1.ReasonSecretNotOwned:
		return fmt.Sprintf("Secret %s exists and is not managed by this ImagePullSecret; it was left untouched", f.NamespacedName)
	case tcrv1.ReasonWriteFailed:
		return fmt.Sprintf("Writing %s %s failed: %s", f.Kind, f.NamespacedName, f.Message)
	}
	return fmt.Sprintf("%s %s: %s", f.Kind, f.NamespacedName, f.Message)
}

// successEntry is a target in a status success list.
type successEntry struct {
	namespace, name string
	at, fallback    int64 // Unix seconds; 0 when unknown
}

// firstEntries keeps the limit entries that sort first by namespace/name, so that building the
// lists of 40,000 targets neither keeps nor sorts them all.
type firstEntries struct {
	limit   int
	entries []successEntry
}

func (f *firstEntries) add(e successEntry) {
	less := func(a, b successEntry) int { return compareTargets(a.namespace, a.name, b.namespace, b.name) }
	if n := len(f.entries); n == f.limit && (n == 0 || less(e, f.entries[n-1]) >= 0) {
		return
	}
	i, _ := slices.BinarySearchFunc(f.entries, e, less)
	f.entries = slices.Insert(f.entries, i, e)
	if len(f.entries) > f.limit {
		f.entries = f.entries[:f.limit]
	}
}

// compareTargets orders targets as their "namespace/name" strings sort, without building them.
func compareTargets(ns1, name1, ns2, name2 string) int {
	a, b := [3]string{ns1, "/", name1}, [3]string{ns2, "/", name2}
	i, j, x, y := 0, 0, 0, 0 // part and offset in a and b
	for {
		for i < 3 && x == len(a[i]) {
			i, x = i+1, 0
		}
		for j < 3 && y == len(b[j]) {
			j, y = j+1, 0
		}
		switch {
		case i == 3 && j == 3:
			return 0
		case i == 3:
			return -1
		case j == 3:
			return 1
		}
		if c := cmp.Compare(a[i][x], b[j][y]); c != 0 {
			return c
		}
		x, y = x+1, y+1
	}
}

// buildStatus adds up the kept results of ips into its status: exact counters, the success lists
// sorted and capped, the failures sorted and capped, and the Ready condition. cur is the status
// the API server holds (as far as we know). The updatedAt of a target is when this controller
// last wrote it, else what cur says, else the creation of the Secret: it never moves on a pass
// that wrote nothing.
func buildStatus(ips *tcrv1.ImagePullSecret, cur *tcrv1.ImagePullSecretStatus, rs *results, limit int) *tcrv1.ImagePullSecretStatus {
	st := &tcrv1.ImagePullSecretStatus{
		ObservedGeneration: ips.Generation,
		Conditions:         slices.Clone(cur.Conditions),
		// Pod recovery's own, which it writes itself (recovery.go).
		PodsRecovered: cur.PodsRecovered, PodsStuck: cur.PodsStuck, StuckPods: cur.StuckPods,
	}
	secretName := ips.SecretName()
	secrets, sas := firstEntries{limit: limit}, firstEntries{limit: limit}
	var failures []tcrv1.TargetFailure
	failed := 0
	rs.each(ips.UID, func(ns string, res *nsResult) {
		failed += len(res.failures)
		failures = append(failures, res.failures...)
		if res.wantSecret {
			st.SecretsDesired++
			if res.secretOK {
				st.SecretsSuccess++
				secrets.add(successEntry{namespace: ns, name: secretName, at: res.secretAt, fallback: res.secretCreated})
			}
		}
		for _, sa := range res.sas {
			st.SAsDesired++
			if sa.ok {
				st.SAsSuccess++
				sas.add(successEntry{namespace: ns, name: sa.name, at: sa.at, fallback: res.secretCreated})
			}
		}
	})
	st.SecretUpdateSuccessful = successList(secrets.entries, cur.SecretUpdateSuccessful)
	st.ServiceAccountsModifySuccessful = successList(sas.entries, cur.ServiceAccountsModifySuccessful)
	slices.SortFunc(failures, func(a, b tcrv1.TargetFailure) int {
		return cmp.Or(cmp.Compare(a.NamespacedName, b.NamespacedName), cmp.Compare(a.Kind, b.Kind))
	})
	if len(failures) > limit {
		failures = failures[:limit]
	}
	st.Failures = failures

	switch {
	case failed == 0 && !ips.Spec.DeliversSecrets():
		setCondition(st, ips.Generation, tcrv1.ConditionReady, metav1.ConditionTrue, tcrv1.ReasonDistributed,
			"delivery CredentialProvider: no namespace holds a copy; the credential endpoint serves the selected ServiceAccounts")
	case failed == 0 && st.SecretsSuccess == st.SecretsDesired && st.SAsSuccess == st.SAsDesired:
		setCondition(st, ips.Generation, tcrv1.ConditionReady, metav1.ConditionTrue, tcrv1.ReasonDistributed, fmt.Sprintf(
			"Secret %s is up to date in %d namespaces and referenced by %d ServiceAccounts",
			secretName, st.SecretsSuccess, st.SAsSuccess))
	case failed > 0:
		setCondition(st, ips.Generation, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonTargetsFailed, fmt.Sprintf(
			"%d targets failed, see status.failures; %d of %d Secrets and %d of %d ServiceAccounts are up to date",
			failed, st.SecretsSuccess, st.SecretsDesired, st.SAsSuccess, st.SAsDesired))
	default:
		setCondition(st, ips.Generation, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonProgressing, fmt.Sprintf(
			"%d of %d Secrets and %d of %d ServiceAccounts are up to date",
			st.SecretsSuccess, st.SecretsDesired, st.SAsSuccess, st.SAsDesired))
	}
	return st
}

// successList renders the entries of a success list (already sorted and capped) with their
// updatedAt.
func successList(entries []successEntry, previous []tcrv1.TargetUpdate) []tcrv1.TargetUpdate {
	if len(entries) == 0 {
		return nil
	}
	prev := make(map[string]metav1.Time, len(previous))
	for _, p := range previous {
		prev[p.NamespacedName] = p.UpdatedAt
	}
	out := make([]tcrv1.TargetUpdate, len(entries))
	for i, e := range entries {
		nn := e.namespace + "/" + e.name
		at, ok := prev[nn]
		switch {
		case e.at != 0:
			at = metav1.NewTime(time.Unix(e.at, 0).UTC())
		case !ok:
			at = metav1.NewTime(time.Unix(e.fallback, 0).UTC())
		}
		out[i] = tcrv1.TargetUpdate{NamespacedName: nn, UpdatedAt: at}
	}
	return out
}

func setCondition(st *tcrv1.ImagePullSecretStatus, generation int64, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}

// statusEqual compares two statuses as the API server stores them (times at second precision).
func statusEqual(a, b *tcrv1.ImagePullSecretStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// writeStatus writes st as the status of ips unless cur, the status the API server holds as far
// as we know, already says it. It reports whether it wrote. Only the full pass of an
// ImagePullSecret calls it, and the queue never runs one key twice at once: one writer per
// ImagePullSecret.
func (r *Reconciler) writeStatus(ctx context.Context, ips *tcrv1.ImagePullSecret, cur, st *tcrv1.ImagePullSecretStatus) (bool, error) {
	if statusEqual(cur, st) {
		return false, nil
	}
	// An update, not a merge patch: the status is entirely ours, the counters must be sent even
	// when zero, and lists that became empty must be cleared. resourceVersion guards it.
	base := ips.ResourceVersion
	obj := ips.DeepCopy()
	obj.Status = *st
	if err := r.client.Status().Update(ctx, obj); err != nil {
		return false, fmt.Errorf("writing the status of ImagePullSecret %s: %w", ips.Name, err)
	}
	r.expect.wrote(kindImagePullSecret, obj, base)
	return true, nil
}
