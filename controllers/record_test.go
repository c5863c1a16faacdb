package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

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

func TestBuildStatus(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	written := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "x", UID: "uid", Generation: 3}}
	cur := &tcrv1.ImagePullSecretStatus{SecretUpdateSuccessful: []tcrv1.TargetUpdate{{NamespacedName: "b/tcr.ipsx", UpdatedAt: earlier}}}
	failure := tcrv1.TargetFailure{Kind: "Secret", NamespacedName: "a/tcr.ipsx", Reason: tcrv1.ReasonSecretNotOwned}
	tests := map[string]struct {
		results      map[string]nsResult
		wantCounts   [4]int32
		wantSecrets  []tcrv1.TargetUpdate
		wantSAs      []tcrv1.TargetUpdate
		wantReady    metav1.ConditionStatus
		wantReason   string
		wantFailures int
	}{
		"counters are exact; the list is sorted, capped, and keeps the time of our write, else the status's, else the creation": {
			results: map[string]nsResult{
				"c": {wantSecret: true, secretOK: true, secretCreated: created.Unix(), sas: []saResult{{name: "default", ok: true}}},
				"b": {wantSecret: true, secretOK: true, secretCreated: created.Unix()},
				"a": {wantSecret: true, secretOK: true, secretCreated: created.Unix(), secretAt: written.Unix()},
			},
			wantCounts: [4]int32{3, 3, 1, 1},
			wantSecrets: []tcrv1.TargetUpdate{
				{NamespacedName: "a/tcr.ipsx", UpdatedAt: metav1.NewTime(written)},
				{NamespacedName: "b/tcr.ipsx", UpdatedAt: earlier},
			},
			wantSAs:   []tcrv1.TargetUpdate{{NamespacedName: "c/default", UpdatedAt: metav1.NewTime(created)}},
			wantReady: metav1.ConditionTrue, wantReason: tcrv1.ReasonDistributed,
		},
		"a target not up to date leaves Ready false and Progressing": {
			results: map[string]nsResult{
				"a": {wantSecret: true, secretOK: true, secretCreated: created.Unix(), sas: []saResult{{name: "default"}}},
			},
			wantCounts:  [4]int32{1, 1, 1, 0},
			wantSecrets: []tcrv1.TargetUpdate{{NamespacedName: "a/tcr.ipsx", UpdatedAt: metav1.NewTime(created)}},
			wantReady:   metav1.ConditionFalse, wantReason: tcrv1.ReasonProgressing,
		},
		"a failure leaves Ready false with TargetsFailed": {
			results:    map[string]nsResult{"a": {wantSecret: true, foreign: true, failures: []tcrv1.TargetFailure{failure}}},
			wantCounts: [4]int32{1, 0, 0, 0},
			wantReady:  metav1.ConditionFalse, wantReason: tcrv1.ReasonTargetsFailed, wantFailures: 1,
		},
		"nothing selected is Ready with zero counters": {
			wantReady: metav1.ConditionTrue, wantReason: tcrv1.ReasonDistributed,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rs := newResults()
			for ns, res := range tc.results {
				rs.put(ips.UID, ns, res)
			}
			rs.put("other-uid", "a", nsResult{wantSecret: true, secretOK: true})
			st := buildStatus(ips, cur, rs, 2)
			assert.Equal(t, tc.wantCounts, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
			assert.Equal(t, tc.wantSecrets, st.SecretUpdateSuccessful)
			assert.Equal(t, tc.wantSAs, st.ServiceAccountsModifySuccessful)
			assert.Len(t, st.Failures, tc.wantFailures)
			assert.Equal(t, int64(3), st.ObservedGeneration)
			require.Len(t, st.Conditions, 1)
			assert.Equal(t, tc.wantReady, st.Conditions[0].Status)
			assert.Equal(t, tc.wantReason, st.Conditions[0].Reason)
			assert.Equal(t, int64(3), st.Conditions[0].ObservedGeneration)
		})
	}
}

func TestResultsKeepOnlyWhatTheStatusShows(t *testing.T) {
	rs := newResults()
	assert.Nil(t, rs.put("u", "a", nsResult{wantSecret: true}))
	rs.put("u", "b", nsResult{}) // not selected, no failure: nothing to keep
	assert.Nil(t, rs.get("u", "b"))
	prev := rs.put("u", "a", nsResult{wantSecret: true, secretOK: true})
	require.NotNil(t, prev)
	assert.False(t, prev.secretOK, "put returns the result it replaces")
	rs.put("v", "a", nsResult{wantSecret: true})
	rs.forgetNamespace("a")
	assert.Nil(t, rs.get("u", "a"))
	assert.Nil(t, rs.get("v", "a"))
	rs.put("u", "c", nsResult{failures: []tcrv1.TargetFailure{{Reason: tcrv1.ReasonRuleEvaluationFailed}}})
	assert.NotNil(t, rs.get("u", "c"), "a failure is kept even where nothing is desired")
	rs.forgetOwner("u")
	assert.Empty(t, rs.byOwner["u"])
}
