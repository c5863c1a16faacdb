package controllers

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

// Preview answers, for `kubectl ips preview`, the question a namespace pass asks: what would the
// controller do in this namespace for this ImagePullSecret? It compiles the rule as the
// controller does and runs the same plan over objects the caller read from the cluster; for a
// rule with recoverPods it also runs Pod recovery's plan (planRecovery) over the Pending Pods. It
// writes nothing.

// SecretAction is what a plan does with the Secret tcr.ips<name> of one namespace, as shown by
// the preview.
type SecretAction string

const (
	// SecretNone: there is no such Secret and none is wanted, or the namespace is terminating.
	SecretNone    SecretAction = ""
	SecretCreate  SecretAction = "create"
	SecretUpdate  SecretAction = "update"  // ours, with other data: patched
	SecretReplace SecretAction = "replace" // ours, of another (immutable) type: deleted and created
	SecretKeep    SecretAction = "keep"    // ours and up to date
	SecretDelete  SecretAction = "delete"  // ours and no longer wanted
	SecretForeign SecretAction = "foreign" // wanted, but the name is held by a Secret we do not own
	// SecretUnknown: ours, but the desired content is unknown (the password could not be read),
	// so whether it is up to date cannot be told.
	SecretUnknown SecretAction = "unknown"
)

// PreviewTarget is one ImagePullSecret ready for Preview: its owner, its compiled rule and the
// Secret content.
type PreviewTarget struct {
	owner     owner
	rule      *engine.Rule
	data      secretData
	dataKnown bool
	// server is docker.server; recoverPods is true when the controller's recovery pass would
	// run for the rule: spec.recoverPods, and the ImagePullSecret is not being deleted.
	server      string
	recoverPods bool
}

// NewPreviewTarget compiles the rule of ips the way the controller does (engine.Compile, the
// lenient reading of a spec the webhook would refuse) and renders the Secret content from
// password; a nil password means it is unknown (a passwordSecretRef that could not be read).
// uid is the ImagePullSecret whose Secrets count as ours: the live object's, or empty for one
// that is not in the cluster yet, whose Secrets are all still to be created. An ImagePullSecret
// being deleted selects nothing: its finalizer removes what is ours. The error has the message
// of the controller's InvalidSpec condition.
func NewPreviewTarget(ips *tcrv1.ImagePullSecret, uid types.UID, password *string) (*PreviewTarget, error) {
	t := &PreviewTarget{owner: owner{name: ips.Name, uid: uid}, server: ips.Spec.Docker.Server}
	if ips.DeletionTimestamp.IsZero() {
		t.recoverPods = ips.Spec.RecoverPods && ips.Spec.DeliversSecrets()
		rule, errs := engine.Compile(&ips.Spec)
		if len(errs) > 0 {
			return nil, previewError(describe(errs))
		}
		if ips.Spec.DeliversSecrets() {
			t.rule = rule // delivery CredentialProvider selects no copy: plan removes ours
		}
	}
	if password != nil {
		data, err := renderDockerConfig(ips.Spec.Docker.Server, ips.Spec.Docker.Username, *password)
		if err != nil {
			return nil, err
		}
		t.data, t.dataKnown = newSecretData(data), true
	}
	return t, nil
}

type previewError string

func (e previewError) Error() string { return string(e) }

// SecretName is the name of the distributed Secret, tcr.ips<name>.
func (t *PreviewTarget) SecretName() string { return t.owner.secretName() }

// NamespacePreview is what the controller would do in one namespace.
type NamespacePreview struct {
	Namespace   string
	Terminating bool // skipped: a terminating namespace is never written
	// Selected is true when the rule selects the namespace: the status counts its Secret as
	// desired (secretsDesired), even when a foreign Secret holds the name.
	Selected bool
	Secret   SecretAction
	// ServiceAccounts are the selected ServiceAccounts (the status's sAsDesired), sorted.
	ServiceAccounts []string
	// AddReferences and RemoveReferences name the ServiceAccounts whose imagePullSecrets would
	// gain or lose the reference to the Secret, sorted.
	AddReferences, RemoveReferences []string
	// Failures are those the status would report: a foreign Secret (SecretNotOwned) or a rule
	// that could not be evaluated.
	Failures []tcrv1.TargetFailure
}

// Namespace runs the controller's plan over one namespace: its metadata, its ServiceAccounts and
// the Secret tcr.ips<name> in it (nil when there is none). It takes over the maps of the objects
// passed, as the controller's caches do, but only reads them.
func (t *PreviewTarget) Namespace(ns *metav1.PartialObjectMetadata, sas []*corev1.ServiceAccount, secret *corev1.Secret) NamespacePreview {
	in := planInput{owner: t.owner, rule: t.rule, data: t.data, namespace: ns}
	for _, sa := range sas {
		// The caches keep no labels or annotations (a pass joins in what its rule reads, see
		// sametadata.go); the preview has the objects themselves.
		s := newSlimServiceAccount(sa)
		s.labels, s.annotations = sa.Labels, sa.Annotations
		in.serviceAccounts = append(in.serviceAccounts, s)
	}
	if secret != nil {
		in.secret = newSlimSecret(secret)
		if !t.dataKnown {
			// Taken as up to date, so that plan still tells a wrong type or stray keys apart.
			in.data = secretData{hash: in.secret.dataHash}
		}
	}
	p := plan(in)

	out := NamespacePreview{Namespace: ns.Name, Terminating: ns.DeletionTimestamp != nil, Selected: p.wantSecret, Failures: p.failures}
	out.ServiceAccounts = slices.Sorted(slices.Values(p.wantSAs))
	for _, e := range p.refs {
		if e.add {
			out.AddReferences = append(out.AddReferences, e.sa.name)
		} else {
			out.RemoveReferences = append(out.RemoveReferences, e.sa.name)
		}
	}
	slices.Sort(out.AddReferences)
	slices.Sort(out.RemoveReferences)

	switch {
	case p.foreign:
		out.Secret = SecretForeign
	case p.secret == secretCreate:
		out.Secret = SecretCreate
	case p.secret == secretPatch:
		out.Secret = SecretUpdate
	case p.secret == secretReplace:
		out.Secret = SecretReplace
	case p.secret == secretDelete:
		out.Secret = SecretDelete
	case p.secret == secretKeep:
		// Keep also means "absent and unwanted" and "foreign and not selected": neither is ours.
		if in.secret != nil && owned(in.secret, t.owner) && !out.Terminating {
			out.Secret = SecretKeep
			if !t.dataKnown {
				out.Secret = SecretUnknown
			}
		}
	default:
		// A step this preview does not know yet keeps the plan's own name for it.
		out.Secret = SecretAction(p.secret.String())
	}
	return out
}

// RecoverPods tells whether the controller would recover the rule's stuck Pods: the rule has
// recoverPods and is not being deleted. Only then does the preview need the Pending Pods.
func (t *PreviewTarget) RecoverPods() bool { return t.recoverPods }

// PendingPod is a Pending Pod in the form Pod recovery keeps of it: what its plan reads.
type PendingPod struct{ pod *slimPod }

// NewPendingPod keeps of pod what Pod recovery reads, as the controller's informer does. pod is
// only read.
func NewPendingPod(pod *corev1.Pod) PendingPod { return PendingPod{pod: newSlimPod(pod)} }

// PodPreview is one Pod that Pod recovery would act on.
type PodPreview struct {
	Namespace, Name string
	// ControllerKind and ControllerName are the Pod's controller reference, empty for a Pod
	// without one.
	ControllerKind, ControllerName string
	// Reason is why a stuck Pod is left alone: tcrv1.ReasonBarePod or tcrv1.ReasonOwnPullSecrets.
	Reason string
}

// RecoveryPreview is what Pod recovery would do for the rule, each list sorted by namespace and
// name.
type RecoveryPreview struct {
	// Evict are the stuck Pods owned by a controller, which would be evicted.
	Evict []PodPreview
	// Stuck are the stuck Pods left alone and reported (status.stuckPods, a PodStuck Event).
	Stuck []PodPreview
}

// Recovery runs the controller's recovery plan (planRecovery) over the Pending Pods, given the
// namespace previews the caller computed with Namespace. It shows what the controller does once
// it has distributed: a Pod's ServiceAccount counts as referencing the Secret when the rule
// selects it, in a namespace that is not terminating and where the Secret's name is not held by
// a foreign Secret (there the controller never adds the reference, so it never recovers). It
// returns nothing for a rule without recoverPods.
func (t *PreviewTarget) Recovery(pods []PendingPod, namespaces []NamespacePreview) RecoveryPreview {
	var out RecoveryPreview
	if !t.recoverPods {
		return out
	}
	byName := make(map[string]*NamespacePreview, len(namespaces))
	for i := range namespaces {
		byName[namespaces[i].Namespace] = &namespaces[i]
	}
	facts := make([]podFacts, 0, len(pods))
	for _, p := range pods {
		f := podFacts{pod: p.pod}
		if np := byName[p.pod.namespace]; np != nil && np.Selected && !np.Terminating {
			f.selected = slices.Contains(np.ServiceAccounts, p.pod.serviceAccount)
			f.referenced = f.selected && np.Secret != SecretForeign
		}
		facts = append(facts, f)
	}
	plan := planRecovery(t.SecretName(), t.server, facts)
	for _, pod := range plan.evict {
		out.Evict = append(out.Evict, podPreview(pod, ""))
	}
	for _, s := range plan.stuck {
		out.Stuck = append(out.Stuck, podPreview(s.pod, s.reason))
	}
	return out
}

func podPreview(pod *slimPod, reason string) PodPreview {
	p := PodPreview{Namespace: pod.namespace, Name: pod.name, Reason: reason}
	if pod.controller != nil {
		p.ControllerKind, p.ControllerName = pod.controller.Kind, pod.controller.Name
	}
	return p
}
