package controllers

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func sa(rv string, pull ...string) *corev1.ServiceAccount {
	s := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "default", ResourceVersion: rv}}
	for _, p := range pull {
		s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
	}
	return s
}

func TestExpectationsOverlay(t *testing.T) {
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
			tr := expectationsWith(tc.wrote, "10", tc.deleted)
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

// expectationsWith returns expectations that remember writing wrote over resourceVersion base and
// deleting deleted (either may be nil), both ServiceAccounts.
func expectationsWith(wrote client.Object, base string, deleted client.Object) *expectations {
	tr := newExpectations()
	if wrote != nil {
		tr.wrote(kindServiceAccount, wrote, base)
	}
	if deleted != nil {
		tr.deleted(kindServiceAccount, deleted)
	}
	return tr
}

func TestExpectationsEcho(t *testing.T) {
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
			tr := expectationsWith(tc.wrote, tc.base, tc.deleted)
			assert.Equal(t, tc.want, tr.observed(kindServiceAccount, tc.observed, tc.old, tc.gone))
			assert.False(t, tr.observed(kindServiceAccount, tc.observed, tc.old, tc.gone), "an expectation is met once")
		})
	}
}
