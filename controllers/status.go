package controllers

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// ConditionReady is the condition summarising an ImagePullSecret.
const ConditionReady = "Ready"

// successEntry is a target in a status success list.
type successEntry struct {
	namespace, name string
	fallback        metav1.Time
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

// buildStatus computes the status of ips from the results of a full pass that started at since:
// exact counters, the success lists sorted and capped, the failures sorted and capped, and the
// Ready condition. The updatedAt of a target is when this controller last wrote it, else what
// the status already said, else the creation of the Secret: it never moves on a pass that wrote
// nothing.
func (r *Reconciler) buildStatus(ips *tcrv1.ImagePullSecret, results []nsResult, since time.Time) (*tcrv1.ImagePullSecretStatus, bool) {
	st := &tcrv1.ImagePullSecretStatus{
		ObservedGeneration: ips.Generation,
		Conditions:         slices.Clone(ips.Status.Conditions),
	}
	secretName := ips.SecretName()
	limit := r.opts.StatusListLimit
	secrets, sas := firstEntries{limit: limit}, firstEntries{limit: limit}
	var failures []tcrv1.TargetFailure
	for i := range results {
		res := &results[i]
		failures = append(failures, res.failures...)
		if res.secretDesired {
			st.SecretsDesired++
			if res.secretOK {
				st.SecretsSuccess++
				secrets.add(successEntry{namespace: res.namespace, name: secretName, fallback: res.secretCreated})
			}
		}
		for _, sa := range res.sas {
			st.SAsDesired++
			if sa.ok {
				st.SAsSuccess++
				sas.add(successEntry{namespace: res.namespace, name: sa.name, fallback: res.secretCreated})
			}
		}
	}
	st.SecretUpdateSuccessful = r.successList(ips.UID, kindSecret, secrets.entries, ips.Status.SecretUpdateSuccessful)
	st.ServiceAccountsModifySuccessful = r.successList(ips.UID, kindServiceAccount, sas.entries, ips.Status.ServiceAccountsModifySuccessful)
	passStart := metav1.NewTime(since.Truncate(time.Second))
	r.memory.prune(ips.UID, kindSecret, secrets.entries, passStart)
	r.memory.prune(ips.UID, kindServiceAccount, sas.entries, passStart)
	slices.SortFunc(failures, func(a, b tcrv1.TargetFailure) int {
		return cmp.Or(cmp.Compare(a.NamespacedName, b.NamespacedName), cmp.Compare(a.Kind, b.Kind))
	})
	if len(failures) > limit {
		failures = failures[:limit]
	}
	st.Failures = failures

	ready := len(failures) == 0 && st.SecretsSuccess == st.SecretsDesired && st.SAsSuccess == st.SAsDesired
	switch {
	case ready:
		setReady(st, ips.Generation, metav1.ConditionTrue, "Distributed", fmt.Sprintf(
			"Secret %s is up to date in %d namespaces and referenced by %d ServiceAccounts",
			secretName, st.SecretsSuccess, st.SAsSuccess))
	case len(failures) > 0:
		n := 0
		for i := range results {
			n += len(results[i].failures)
		}
		setReady(st, ips.Generation, metav1.ConditionFalse, "TargetsFailed", fmt.Sprintf(
			"%d targets failed, see status.failures; %d of %d Secrets and %d of %d ServiceAccounts are up to date",
			n, st.SecretsSuccess, st.SecretsDesired, st.SAsSuccess, st.SAsDesired))
	default:
		setReady(st, ips.Generation, metav1.ConditionFalse, "Progressing", fmt.Sprintf(
			"%d of %d Secrets and %d of %d ServiceAccounts are up to date",
			st.SecretsSuccess, st.SecretsDesired, st.SAsSuccess, st.SAsDesired))
	}
	return st, ready
}

// successList renders the entries of a success list (already sorted and capped) with their
// updatedAt.
func (r *Reconciler) successList(uid types.UID, kind string, entries []successEntry, previous []tcrv1.TargetUpdate) []tcrv1.TargetUpdate {
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
		at, ok := r.memory.writtenAt(targetKey{uid: uid, kind: kind, namespace: e.namespace, name: e.name})
		if !ok {
			if at, ok = prev[nn]; !ok {
				at = e.fallback
			}
		}
		out[i] = tcrv1.TargetUpdate{NamespacedName: nn, UpdatedAt: at}
	}
	return out
}

func setReady(st *tcrv1.ImagePullSecretStatus, generation int64, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}

func isReady(st *tcrv1.ImagePullSecretStatus) bool {
	return meta.IsStatusConditionTrue(st.Conditions, ConditionReady)
}

// statusEqual compares two statuses as the API server stores them (times at second precision).
func statusEqual(a, b *tcrv1.ImagePullSecretStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}
