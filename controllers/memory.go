package controllers

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// memory is what the controller remembers per ImagePullSecret between passes and that the API
// objects do not say: when it last wrote each target (for the updatedAt of the status lists,
// which must not move on passes that wrote nothing) and which targets are held by a foreign
// Secret (so that a pass checks them with a read instead of a failing create).
type memory struct {
	mu       sync.Mutex
	written  map[targetKey]metav1.Time
	foreign  map[targetKey]struct{}
	reported map[targetKey]string
}

type targetKey struct {
	uid       types.UID
	kind      string
	namespace string
	name      string
}

func newMemory() *memory {
	return &memory{written: map[targetKey]metav1.Time{}, foreign: map[targetKey]struct{}{}, reported: map[targetKey]string{}}
}

func (m *memory) wrote(k targetKey, at metav1.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written[k] = at
}

func (m *memory) writtenAt(k targetKey) (metav1.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.written[k]
	return t, ok
}

func (m *memory) forgetTarget(k targetKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.written, k)
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
