package controllers

import (
	"cmp"
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// memory is what the controller remembers per ImagePullSecret between passes and that the API
// objects do not say: when it last wrote the targets that the status lists show (their
// updatedAt must not move on passes that wrote nothing) and which targets are held by a foreign
// Secret (so that a pass checks them with a read instead of a failing create).
type memory struct {
	mu sync.Mutex
	// written holds, per ImagePullSecret and kind, the last write of the targets that sort first
	// by namespace/name: the status lists show only the first limit successful targets in that
	// order, so remembering every write would cost memory for nothing in a large cluster. A
	// target that only later moves into a list (an earlier one failed or went away) shows the
	// time of its status entry or of its Secret's creation instead.
	written  map[listKey][]recentWrite
	limit    int
	foreign  map[targetKey]struct{}
	reported map[targetKey]string
}

type targetKey struct {
	uid       types.UID
	kind      string
	namespace string
	name      string
}

// listKey names one status list: the Secrets or the ServiceAccounts of one ImagePullSecret.
type listKey struct {
	uid  types.UID
	kind string
}

type recentWrite struct {
	namespace, name string
	at              metav1.Time
}

func newMemory(limit int) *memory {
	return &memory{written: map[listKey][]recentWrite{}, limit: limit, foreign: map[targetKey]struct{}{}, reported: map[targetKey]string{}}
}

// find returns the position of k in its sorted list and whether it is there.
func find(list []recentWrite, k targetKey) (int, bool) {
	return slices.BinarySearchFunc(list, k, func(w recentWrite, k targetKey) int {
		return compareTargets(w.namespace, w.name, k.namespace, k.name)
	})
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

// wrote records that this controller wrote target k at the given time.
func (m *memory) wrote(k targetKey, at metav1.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lk := listKey{k.uid, k.kind}
	list := m.written[lk]
	i, ok := find(list, k)
	switch {
	case ok:
		list[i].at = at
		return
	case i >= m.limit:
		return // sorts after every remembered target of a full list
	}
	list = slices.Insert(list, i, recentWrite{namespace: k.namespace, name: k.name, at: at})
	if len(list) > m.limit {
		list = list[:m.limit]
	}
	m.written[lk] = list
}

// prune drops the remembered writes of one status list that the list does not show although
// they sort before its last entry (or at all, when the list is not full): their targets went
// away or stopped succeeding, and they would otherwise hold the places of targets that are shown.
// Writes made at or after since, which a pass still running may have made, are kept.
func (m *memory) prune(uid types.UID, kind string, shown []successEntry, since metav1.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lk := listKey{uid, kind}
	list := m.written[lk]
	kept := list[:0]
	j := 0 // shown and list are both sorted
	for _, w := range list {
		for j < len(shown) && compareTargets(shown[j].namespace, shown[j].name, w.namespace, w.name) < 0 {
			j++
		}
		isShown := j < len(shown) && shown[j].namespace == w.namespace && shown[j].name == w.name
		beyond := len(shown) == m.limit && j == len(shown)
		if isShown || beyond || !w.at.Before(&since) {
			kept = append(kept, w)
		}
	}
	if len(kept) == 0 {
		delete(m.written, lk)
		return
	}
	m.written[lk] = kept
}

// writtenAt returns when this controller last wrote target k, if it remembers.
func (m *memory) writtenAt(k targetKey) (metav1.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	list := m.written[listKey{k.uid, k.kind}]
	if i, ok := find(list, k); ok {
		return list[i].at, true
	}
	return metav1.Time{}, false
}

func (m *memory) forgetTarget(k targetKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lk := listKey{k.uid, k.kind}
	if list := m.written[lk]; len(list) > 0 {
		if i, ok := find(list, k); ok {
			m.written[lk] = slices.Delete(list, i, i+1)
		}
	}
	delete(m.foreign, k)
	delete(m.reported, k)
}

func (m *memory) setForeign(k targetKey, foreign bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if foreign {
		m.foreign[k] = struct{}{}
	} else {
		delete(m.foreign, k)
	}
}

func (m *memory) isForeign(k targetKey) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.foreign[k]
	return ok
}

// report records that a failure with reason was seen on k and returns true the first time, so
// that each failure gets one Event rather than one per pass.
func (m *memory) report(k targetKey, reason string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reported[k] == reason {
		return false
	}
	m.reported[k] = reason
	return true
}

// resolved forgets a reported failure of k once it succeeds.
func (m *memory) resolved(k targetKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.reported, k)
}

// forgetCR drops everything remembered about a deleted ImagePullSecret.
func (m *memory) forgetCR(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.written {
		if k.uid == uid {
			delete(m.written, k)
		}
	}
	for k := range m.foreign {
		if k.uid == uid {
			delete(m.foreign, k)
		}
	}
	for k := range m.reported {
		if k.uid == uid {
			delete(m.reported, k)
		}
	}
}
