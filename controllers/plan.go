package controllers

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

// A namespace pass has three stages (docs/design.md, "Data path"):
//
//	plan   (this file)   what one namespace must look like for one ImagePullSecret; pure
//	apply  (apply.go)    the writes of a plan, recorded in the expectations store
//	record (record.go)   the namespace's result, kept until the next pass; the status adds them up
//
// plan reads nothing but its input: no client, no clock. Its table tests run without an API
// server, and the admission-time ServiceAccount references and the credential checks can ask it
// the same question the controller does.

// planInput is everything a plan reads. The objects are shared with the caches: a plan never
// modifies them.
type planInput struct {
	owner owner
	// rule is the compiled rule, or nil when the ImagePullSecret is gone or being deleted: then
	// the plan removes what is ours.
	rule *engine.Rule
	// data is what the Secret must hold, and login the server and username it is for, which
	// decide whether a Secret the original TCR Assistant left is adopted.
	data            secretData
	login           registryLogin
	namespace       *metav1.PartialObjectMetadata
	serviceAccounts []*slimServiceAccount
	// secret is the Secret named tcr.ips<name> in the namespace, ours or not, or nil when there
	// is none.
	secret *slimSecret
}

// secretStep is what a plan does with the Secret.
type secretStep int

const (
	secretKeep    secretStep = iota // nothing to write: up to date, absent and unwanted, or foreign
	secretCreate                    // wanted and absent
	secretPatch                     // ours, with other data
	secretReplace                   // ours, of another type, which is immutable: delete and create
	secretDelete                    // ours and no longer wanted
	secretAdopt                     // not ours but adoptable (see adoptable): take it over in place
)

var secretStepNames = [...]string{"keep", "create", "patch", "replace", "delete", "adopt"}

func (s secretStep) String() string { return secretStepNames[s] }

// refEdit adds or removes the Secret's reference in one ServiceAccount's imagePullSecrets.
type refEdit struct {
	sa  *slimServiceAccount
	add bool
}

// nsPlan is what plan decides for one namespace.
type nsPlan struct {
	namespace string
	// secret is the step for the Secret; current is the Secret the plan was made over (nil when
	// there was none), which a patch, adoption, replace or delete acts on.
	secret  secretStep
	current *slimSecret
	// refs are the reference edits, in the order of planInput.serviceAccounts.
	refs []refEdit
	// wantSecret and wantSAs are what the status counts as desired.
	wantSecret bool
	wantSAs    []string
	// foreign is true when a Secret we do not own holds the name.
	foreign bool
	// failures found while planning: a rule that could not be evaluated, a foreign Secret.
	failures []tcrv1.TargetFailure
}

// plan decides what one namespace must look like for one ImagePullSecret:
//   - a terminating namespace is skipped, never written;
//   - where the namespace matches: the Secret exists with the desired data, and exactly the
//     matching ServiceAccounts reference it;
//   - elsewhere: our Secret is deleted and every reference to its name removed;
//   - a Secret of that name that is not ours (owned) is never written, no ServiceAccount is
//     pointed at it, and no reference to it is removed: it is someone else's;
//   - except where the namespace matches, the Secret is adoptable (the original TCR Assistant
//     left it for this ImagePullSecret) and no ServiceAccount that references it stops matching:
//     then it is adopted, and from then on it is ours.
func plan(in planInput) nsPlan {
	p := nsPlan{namespace: in.namespace.Name, current: in.secret}
	if in.namespace.DeletionTimestamp != nil {
		return p
	}
	name := in.owner.secretName()
	ours := in.secret != nil && owned(in.secret, in.owner)
	foreign := in.secret != nil && !ours
	ns := nsFacts(in.namespace)

	match := false
	if in.rule != nil {
		var err error
		if match, err = in.rule.MatchNamespace(ns); err != nil {
			// Neither add nor remove on a verdict we do not have.
			p.failures = append(p.failures, tcrv1.TargetFailure{
				Kind: kindSecret, NamespacedName: in.namespace.Name + "/" + name, Reason: tcrv1.ReasonRuleEvaluationFailed,
				Message: fmt.Sprintf("evaluating the namespace rule failed: %v", err),
			})
			return p
		}
	}
	if !match {
		if ours {
			p.secret = secretDelete
		}
		if !foreign {
			for _, sa := range in.serviceAccounts {
				if hasRef(sa, name) {
					p.refs = append(p.refs, refEdit{sa: sa})
				}
			}
		}
		return p
	}

	p.wantSecret = true
	// want[i] is the verdict for the ServiceAccount i; evaluated[i] is false when there is none.
	want := make([]bool, len(in.serviceAccounts))
	evaluated := make([]bool, len(in.serviceAccounts))
	var saFailures []tcrv1.TargetFailure
	for i, sa := range in.serviceAccounts {
		w, err := in.rule.MatchServiceAccount(ns, saFacts(sa))
		if err != nil {
			saFailures = append(saFailures, tcrv1.TargetFailure{
				Kind: kindServiceAccount, NamespacedName: sa.namespace + "/" + sa.name, Reason: tcrv1.ReasonRuleEvaluationFailed,
				Message: fmt.Sprintf("evaluating the ServiceAccount rule failed: %v", err),
			})
			continue
		}
		want[i], evaluated[i] = w, true
		if w {
			p.wantSAs = append(p.wantSAs, sa.name)
		}
	}
	// Adopting makes the references ours to manage: a ServiceAccount that references the Secret
	// but does not match would lose its reference, so then the Secret stays foreign.
	keeps := -1
	if foreign && adoptable(in.secret, in.owner, in.login) {
		for i, sa := range in.serviceAccounts {
			if evaluated[i] && !want[i] && hasRef(sa, name) {
				keeps = i
				break
			}
		}
		if keeps < 0 {
			foreign = false
			p.secret = secretAdopt
		}
	}
	nn := in.namespace.Name + "/" + name
	switch {
	case foreign && keeps >= 0:
		sa := in.serviceAccounts[keeps]
		p.failures = append(p.failures, tcrv1.TargetFailure{
			Kind: kindSecret, NamespacedName: nn, Reason: tcrv1.ReasonSecretNotOwned,
			Message: fmt.Sprintf("Secret %s was left by the original TCR Assistant and could be adopted, but ServiceAccount %s/%s references it and does not match serviceAccounts: adopting it would remove that reference; it was left untouched", nn, sa.namespace, sa.name),
		})
	case foreign:
		p.failures = append(p.failures, tcrv1.TargetFailure{
			Kind: kindSecret, NamespacedName: nn, Reason: tcrv1.ReasonSecretNotOwned,
			Message: fmt.Sprintf("Secret %s exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own", nn),
		})
	case p.secret == secretAdopt:
	case in.secret == nil:
		p.secret = secretCreate
	case in.secret.secretType != corev1.SecretTypeDockerConfigJson:
		p.secret = secretReplace
	case !in.data.matches(in.secret):
		p.secret = secretPatch
	}
	p.foreign = foreign
	p.failures = append(p.failures, saFailures...)
	if foreign {
		return p
	}
	for i, sa := range in.serviceAccounts {
		if evaluated[i] && want[i] != hasRef(sa, name) {
			p.refs = append(p.refs, refEdit{sa: sa, add: want[i]})
		}
	}
	return p
}

// hasRef reports whether sa references the Secret name.
func hasRef(sa *slimServiceAccount, name string) bool {
	return slices.ContainsFunc(sa.imagePullSecrets, func(ref corev1.LocalObjectReference) bool { return ref.Name == name })
}

func nsFacts(ns *metav1.PartialObjectMetadata) engine.Namespace {
	return engine.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
}

func saFacts(sa *slimServiceAccount) engine.ServiceAccount {
	return engine.ServiceAccount{Name: sa.name, Namespace: sa.namespace, Labels: sa.labels, Annotations: sa.annotations}
}
