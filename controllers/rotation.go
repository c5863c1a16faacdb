package controllers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
)

// The rotation check (docs/design.md, "Credentials"): with rotationPolicy Verified, the default,
// a new credential of a rule that distributed a working one is checked against the registry
// before it is distributed. The full pass waits for that check, up to rotationCheckTimeout:
//
//	Accepted, Unreachable, TLSError, no answer in time: the new credential is distributed.
//	Rejected: the last accepted credential stays distributed (the hold) and Ready is False with
//	reason RotationHeld. The new one is distributed once the registry accepts it: the credential
//	check asks again every --credential-check-interval, and at once on the next change.
//
// The decision of the last full pass is what every namespace pass distributes, so a namespace
// created during a hold gets the held credential too. A rule without copies (a new rule) or whose
// distributed credential is not known to work distributes as before.

// rotationCheckTimeout bounds the wait of a full pass for the check of a new credential.
const rotationCheckTimeout = 5 * time.Second

// decision is what the last full pass of a rule decided to distribute.
type decision struct {
	// candidate is the data hash of the source's credential the decision was made for.
	candidate [32]byte
	data      secretData
	login     registryLogin
	cred      credential
	// accepted: the registry accepted cred the last time it was asked.
	accepted bool
	// held is the registry's answer to the candidate while it is held; nil when the candidate is
	// what is distributed.
	held *credcheck.Result
}

// rotate decides what the full pass distributes for t, whose data is the source's credential
// (the candidate), and sets t's data to it. The credential check of the candidate has been asked
// for (credentials.check) before.
func (r *Reconciler) rotate(ctx context.Context, t *target) *decision {
	uid := t.owner.uid
	r.mu.Lock()
	prev := r.decisions[uid]
	r.mu.Unlock()
	d := &decision{candidate: t.data.hash, data: t.data, login: t.login, cred: t.cred}
	if res := r.creds.last(uid); res != nil {
		d.accepted = res.Outcome == credcheck.Accepted
	}
	var dist *decision // what the copies hold, when it is not the candidate
	switch {
	case t.ips.Spec.RotationPolicy == tcrv1.RotationImmediate:
	case prev == nil:
		dist = r.distributedCopy(ctx, t.owner, t.data.hash) // after a restart
	case prev.data.hash != t.data.hash:
		dist = prev // a change, or a hold
	}
	if dist != nil {
		res := r.creds.verify(ctx, uid, t.ips.Name, t.cred, rotationCheckTimeout)
		if res != nil {
			d.accepted = res.Outcome == credcheck.Accepted
		}
		if res != nil && res.Outcome == credcheck.Rejected {
			if !dist.accepted {
				dist.accepted = r.probe(ctx, dist.cred).Outcome == credcheck.Accepted
			}
			if dist.accepted {
				d = &decision{candidate: t.data.hash, data: dist.data, login: dist.login, cred: dist.cred, accepted: true, held: res}
			}
		}
	}
	r.mu.Lock()
	r.decisions[uid] = d
	r.mu.Unlock()
	t.data, t.login, t.cred = d.data, d.login, d.cred
	return d
}

// decided returns t with what the last full pass of its rule decided to distribute, or false when
// no full pass decided yet since the manager started (that pass walks every namespace).
func (r *Reconciler) decided(t *target) bool {
	r.mu.Lock()
	d := r.decisions[t.owner.uid]
	r.mu.Unlock()
	if d == nil {
		return false
	}
	t.data, t.login, t.cred = d.data, d.login, d.cred
	return true
}

// probe checks cred against its registry now, with the CAs of the credential check.
func (r *Reconciler) probe(ctx context.Context, cred credential) credcheck.Result {
	r.creds.mu.Lock()
	pool, _ := r.creds.cas(ctx)
	r.creds.mu.Unlock()
	p := &credcheck.Prober{RootCAs: pool, Timeout: rotationCheckTimeout, Now: r.opts.Now}
	return p.Probe(ctx, cred.server, cred.username, cred.password)
}

// distributedCopy returns the credential that most copies of o hold when it is not candidate,
// read from the API server, or nil: no copy, every copy holds the candidate, or the data is not
// one login this controller wrote.
func (r *Reconciler) distributedCopy(ctx context.Context, o owner, candidate [32]byte) *decision {
	counts := map[[32]byte]int{}
	where := map[[32]byte]string{}
	for _, ns := range r.store.allNamespaces() {
		s := r.cachedSecret(ns.Name, o.secretName())
		if s == nil || !owned(s, o) || !s.hasData {
			continue
		}
		counts[s.dataHash]++
		where[s.dataHash] = ns.Name
	}
	if counts[candidate] > 0 {
		return nil // some copies hold the candidate already: it was distributed before
	}
	var best [32]byte
	for h, n := range counts {
		if n > counts[best] {
			best = h
		}
	}
	if counts[best] == 0 {
		return nil
	}
	live := &corev1.Secret{}
	if err := r.reader.Get(ctx, types.NamespacedName{Namespace: where[best], Name: o.secretName()}, live); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Reading a distributed Secret to hold a rejected rotation failed; distributing the new credential")
		return nil
	}
	data := live.Data[corev1.DockerConfigJsonKey]
	server, username, password, ok := parseLogin(data)
	if !ok {
		return nil
	}
	return &decision{data: newSecretData(data), login: registryLogin{server: server, username: username},
		cred: credential{server: server, username: username, password: password}}
}

// parseLogin reads the one login of a .dockerconfigjson this controller rendered.
func parseLogin(data []byte) (server, username, password string, ok bool) {
	var cfg dockerConfig
	if json.Unmarshal(data, &cfg) != nil || len(cfg.Auths) != 1 {
		return "", "", "", false
	}
	for server, a := range cfg.Auths {
		username, password = a.Username, a.Password
		if username == "" && password == "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return "", "", "", false
			}
			username, password, ok = strings.Cut(string(raw), ":")
			return server, username, password, ok
		}
		return server, username, password, true
	}
	return "", "", "", false
}

// rotationStatus sets Ready=False with reason RotationHeld while d holds a rejected credential,
// with one Warning Event when the hold starts or its answer changes.
func (r *Reconciler) rotationStatus(ips *tcrv1.ImagePullSecret, d *decision, cur, st *tcrv1.ImagePullSecretStatus) {
	if d == nil || d.held == nil {
		return
	}
	msg := fmt.Sprintf("the new credential is held: %s; the last accepted credential stays distributed until the registry accepts the new one (rotationPolicy Verified)", d.held.Message)
	if !conditionIs(cur, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonRotationHeld, msg) {
		r.recorder.Eventf(ips, nil, corev1.EventTypeWarning, tcrv1.ReasonRotationHeld, "Distribute", "%s", msg)
	}
	setCondition(st, ips.Generation, tcrv1.ConditionReady, metav1.ConditionFalse, tcrv1.ReasonRotationHeld, msg)
}
