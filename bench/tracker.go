package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// credential is what a distributed Secret must carry to count as up to date.
type credential struct{ Server, Username, Password string }

// holds reports whether a kubernetes.io/dockerconfigjson Secret carries c, whether the
// renderer wrote the password field, the auth field or both.
func (c credential) holds(s *corev1.Secret) bool {
	if s.Type != corev1.SecretTypeDockerConfigJson {
		return false
	}
	var cfg struct {
		Auths map[string]struct {
			Username string `json:"username"`
			Password string `json:"password"`
			Auth     string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		return false
	}
	a, ok := cfg.Auths[c.Server]
	if !ok {
		return false
	}
	auth := base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))
	pwOK := a.Password == "" || (a.Username == c.Username && a.Password == c.Password)
	authOK := a.Auth == "" || a.Auth == auth
	return (a.Password != "" || a.Auth != "") && pwOK && authOK
}

// nsState is what the tracker saw in one namespace.
type nsState struct {
	target    bool
	wantSAs   []string
	secretOK  bool
	saOK      map[string]bool
	ready     bool
	createdAt time.Time
	readyAt   time.Time
}

// tracker follows, through watches, which namespaces hold an up-to-date Secret and whose
// ServiceAccounts reference it, so that convergence is observed at the event that completes it
// rather than by polling. Every check is O(1) per event, so it keeps up at 10,000 namespaces.
type tracker struct {
	secretName string
	mu         sync.Mutex
	cred       credential
	secrets    map[string]*corev1.Secret
	ns         map[string]*nsState
	targets    int
	ready      int
	doneAt     time.Time
	changed    chan struct{}
}

func newTracker(secretName string, cred credential) *tracker {
	return &tracker{secretName: secretName, cred: cred, secrets: map[string]*corev1.Secret{},
		ns: map[string]*nsState{}, changed: make(chan struct{})}
}

// run starts the informers and waits for their first list.
func (t *tracker) run(ctx context.Context, kube kubernetes.Interface, crName string) error {
	secrets := informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = tcrv1.OwnerLabel + "=" + crName
		}))
	sas := informers.NewSharedInformerFactory(kube, 0)
	si := secrets.Core().V1().Secrets().Informer()
	ai := sas.Core().V1().ServiceAccounts().Informer()
	_, err := si.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.onSecret(o, false) },
		UpdateFunc: func(_, o any) { t.onSecret(o, false) },
		DeleteFunc: func(o any) { t.onSecret(o, true) },
	})
	if err != nil {
		return err
	}
	if _, err = ai.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.onSA(o, false) },
		UpdateFunc: func(_, o any) { t.onSA(o, false) },
		DeleteFunc: func(o any) { t.onSA(o, true) },
	}); err != nil {
		return err
	}
	secrets.Start(ctx.Done())
	sas.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), si.HasSynced, ai.HasSynced) {
		return fmt.Errorf("watching Secrets and ServiceAccounts: %w", ctx.Err())
	}
	return nil
}

func unwrap(o any) any {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return o
}

func (t *tracker) state(ns string) *nsState {
	s, ok := t.ns[ns]
	if !ok {
		s = &nsState{saOK: map[string]bool{}}
		t.ns[ns] = s
	}
	return s
}

func (t *tracker) onSecret(o any, deleted bool) {
	s, ok := unwrap(o).(*corev1.Secret)
	if !ok || s.Name != t.secretName {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if deleted {
		delete(t.secrets, s.Namespace)
	} else {
		t.secrets[s.Namespace] = s
	}
	st := t.state(s.Namespace)
	st.secretOK = !deleted && t.cred.holds(s)
	t.update(st, now)
}

func (t *tracker) onSA(o any, deleted bool) {
	sa, ok := unwrap(o).(*corev1.ServiceAccount)
	if !ok {
		return
	}
	now := time.Now()
	ref := false
	for _, r := range sa.ImagePullSecrets {
		if r.Name == t.secretName {
			ref = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state(sa.Namespace)
	st.saOK[sa.Name] = !deleted && ref
	t.update(st, now)
}

// update recomputes the readiness of one namespace; t.mu is held.
func (t *tracker) update(st *nsState, now time.Time) {
	ready := st.target && st.secretOK
	for _, sa := range st.wantSAs {
		ready = ready && st.saOK[sa]
	}
	if ready == st.ready {
		return
	}
	st.ready = ready
	if ready {
		t.ready++
		st.readyAt = now
	} else {
		t.ready--
	}
	if t.ready == t.targets {
		t.doneAt = now
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// expect adds a target namespace and the ServiceAccounts in it that must reference the Secret.
// createdAt is when the namespace was created, for latency.
func (t *tracker) expect(ns string, createdAt time.Time, sas ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state(ns)
	if !st.target {
		st.target = true
		t.targets++
	}
	st.wantSAs, st.createdAt = sas, createdAt
	t.update(st, time.Now())
}

// rotate makes c the credential every Secret must carry from now on.
func (t *tracker) rotate(c credential) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cred = c
	now := time.Now()
	for ns, st := range t.ns {
		s := t.secrets[ns]
		st.secretOK = s != nil && c.holds(s)
		t.update(st, now)
	}
}

// wait blocks until every target namespace is ready and returns when that was first observed.
func (t *tracker) wait(ctx context.Context) (time.Time, error) {
	for {
		t.mu.Lock()
		done, at, ch := t.ready == t.targets, t.doneAt, t.changed
		ready, targets := t.ready, t.targets
		t.mu.Unlock()
		if done {
			return at, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%d of %d target namespaces up to date: %w", ready, targets, ctx.Err())
		}
	}
}

// latency returns readyAt - createdAt of the given namespaces.
func (t *tracker) latency(names []string) []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, 0, len(names))
	for _, n := range names {
		if st := t.ns[n]; st != nil && st.ready {
			out = append(out, st.readyAt.Sub(st.createdAt))
		}
	}
	return out
}
