package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credprovider"
)

// The credential endpoint's side of the reconciler (docs/design.md, "Delivery"): for a rule with
// delivery CredentialProvider or Both, the kubelet's plugin asks the manager with a Pod's
// ServiceAccount token, and the endpoint (package credprovider) asks Credential below, with the
// namespace and ServiceAccount the API server vouched for. The answer is what the last full pass
// of the rule decided to distribute (rotation.go), so a held rotation holds here too, and the
// rules are evaluated by the same engine, over the same caches, as a namespace pass.

// maxServedPerRule bounds the ServiceAccounts counted per rule in status.serviceAccountsServed.
const maxServedPerRule = 100_000

// CredentialProvider returns the lookup of the credential endpoint.
func (r *Reconciler) CredentialProvider() credprovider.Lookup { return providerLookup{r} }

type providerLookup struct{ r *Reconciler }

// Credential returns the credential that the first rule, by name, delivering to the
// ServiceAccount namespace/name for the registry host delivers.
func (l providerLookup) Credential(ctx context.Context, namespace, name, host string) (credprovider.Answer, bool, error) {
	r := l.r
	if r.store == nil {
		return credprovider.Answer{}, false, nil
	}
	ns := r.store.namespace(namespace)
	if ns == nil || ns.DeletionTimestamp != nil {
		return credprovider.Answer{}, false, nil
	}
	var sa *slimServiceAccount
	for _, s := range r.serviceAccounts(namespace) {
		if s.name == name {
			sa = s
		}
	}
	if sa == nil {
		return credprovider.Answer{}, false, nil
	}
	rules := r.imagePullSecrets(ctx)
	slices.SortFunc(rules, func(a, b tcrv1.ImagePullSecret) int { return strings.Compare(a.Name, b.Name) })
	for i := range rules {
		ips := &rules[i]
		if !ips.Spec.ServesCredentialProvider() || ips.Spec.Docker.Server != host ||
			!ips.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(ips, tcrv1.Finalizer) {
			continue
		}
		t, bad, err := r.prepare(ctx, ips)
		if err != nil {
			return credprovider.Answer{}, false, err
		}
		if bad != nil {
			continue // a rule that does not compile
		}
		if ok, err := t.rule.MatchNamespace(nsFacts(ns)); err != nil || !ok {
			continue
		}
		joined, err := r.saMeta.join(t.saNeeds, []*slimServiceAccount{sa})
		if err != nil {
			return credprovider.Answer{}, false, err
		}
		if ok, err := t.rule.MatchServiceAccount(nsFacts(ns), saFacts(joined[0])); err != nil || !ok {
			continue
		}
		if !r.decided(t) {
			// Only the leader's full pass decides; a replica that is not the leader, or a leader
			// that has not passed over the rule yet, cannot answer.
			return credprovider.Answer{}, false, fmt.Errorf("ImagePullSecret %s selects it, but no full pass of this replica has decided its credential yet (starting, or not the leader)", ips.Name)
		}
		r.served(ctx, ips, namespace+"/"+name)
		return credprovider.Answer{Rule: ips.Name, Username: t.cred.username, Password: t.cred.password, ExpiresAt: t.cred.expiry}, true, nil
	}
	return credprovider.Answer{}, false, nil
}

// served counts a ServiceAccount served by the rule ips, and asks for a status pass when it is
// a new one.
func (r *Reconciler) served(ctx context.Context, ips *tcrv1.ImagePullSecret, sa string) {
	r.mu.Lock()
	set := r.servedTo[ips.UID]
	if set == nil {
		set = map[string]struct{}{}
		r.servedTo[ips.UID] = set
	}
	_, known := set[sa]
	if !known && len(set) < maxServedPerRule {
		set[sa] = struct{}{}
	}
	r.mu.Unlock()
	if !known {
		ctrl.LoggerFrom(ctx).V(1).Info("A new ServiceAccount was served", "imagePullSecret", ips.Name, "serviceAccount", sa)
		r.requestStatus(ips.Name)
	}
}

// servedCount is status.serviceAccountsServed of the rule uid.
func (r *Reconciler) servedCount(uid types.UID) int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int32(len(r.servedTo[uid]))
}
