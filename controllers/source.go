package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// Credential sources (docs/design.md, "Credentials"): where the credential of a rule comes from.
// The full pass asks the rule's source for the credential to distribute now and when to ask
// again; the rotation check (rotation.go) then decides whether it is distributed or held, and
// namespace passes distribute what the full pass decided. Three sources: the spec itself
// (docker.password), a Secret of the own namespace (docker.passwordSecretRef), and a TCR
// instance token the controller mints (docker.instanceToken, minted.go).

// credentialSource gives the credential of one rule.
type credentialSource interface {
	// credential returns the credential to distribute now and when to ask again (zero: only
	// when the rule or a Secret it reads changes). A misconfiguration is an *invalid: nothing is
	// distributed from it and the copies already distributed keep their last value.
	credential(ctx context.Context, ips *tcrv1.ImagePullSecret) (sourced, *invalid, error)
}

// sourced is what a source gives.
type sourced struct {
	cred credential
	// next is when the source wants to be asked again: a token's refresh, or the retry of a
	// failed mint. Zero when only a change brings a new credential.
	next time.Time
	// minted is the state of a minted credential, for its status; nil for the other sources.
	minted *mintReport
}

// sourceOf returns the source of the credential of ips.
func (r *Reconciler) sourceOf(ips *tcrv1.ImagePullSecret) credentialSource {
	d := &ips.Spec.Docker
	switch {
	case d.InstanceToken != nil:
		return r.minter
	case d.PasswordSecretRef != nil:
		return passwordSecretSource{r}
	}
	return inlineSource{}
}

// inlineSource is docker.username and docker.password, as the original has them.
type inlineSource struct{}

func (inlineSource) credential(_ context.Context, ips *tcrv1.ImagePullSecret) (sourced, *invalid, error) {
	d := &ips.Spec.Docker
	return sourced{cred: credential{server: d.Server, username: d.Username, password: d.Password}}, nil, nil
}

// passwordSecretSource reads the password from docker.passwordSecretRef, a Secret of the own
// namespace that opted in as a password source.
type passwordSecretSource struct{ r *Reconciler }

func (s passwordSecretSource) credential(ctx context.Context, ips *tcrv1.ImagePullSecret) (sourced, *invalid, error) {
	d := &ips.Spec.Docker
	ref := d.PasswordSecretRef
	sec, bad, err := s.r.sourceSecret(ctx, ref.Name, "docker.passwordSecretRef", tcrv1.ReasonPasswordSecretNotFound, "nothing is distributed from it")
	if sec == nil {
		return sourced{}, bad, err
	}
	v, ok := sec.Data[ref.Key]
	if !ok {
		return sourced{}, &invalid{reason: tcrv1.ReasonPasswordKeyNotFound, message: fmt.Sprintf(
			"Secret %s/%s named by docker.passwordSecretRef has no key %q", s.r.opts.Namespace, ref.Name, ref.Key)}, nil
	}
	return sourced{cred: credential{server: d.Server, username: d.Username, password: string(v)}}, nil, nil
}

// sourceSecret reads the Secret name of the own namespace that field names, and refuses it
// unless it opted in as a password source: otherwise any rule could copy the webhook's CA key,
// or a token, into every namespace it selects. notFound is the reason when it does not exist,
// and refused says what a refusal means.
func (r *Reconciler) sourceSecret(ctx context.Context, name, field, notFound, refused string) (*corev1.Secret, *invalid, error) {
	s := &corev1.Secret{}
	if err := r.own.Get(ctx, types.NamespacedName{Namespace: r.opts.Namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &invalid{reason: notFound, message: fmt.Sprintf(
				"Secret %s/%s named by %s does not exist", r.opts.Namespace, name, field)}, nil
		}
		return nil, nil, fmt.Errorf("reading Secret %s/%s named by %s: %w", r.opts.Namespace, name, field, err)
	}
	if ok, why := tcrv1.PasswordSourceAllowed(s, r.opts.WebhookSecretName); !ok {
		return nil, &invalid{reason: tcrv1.ReasonPasswordSourceNotAllowed, message: fmt.Sprintf(
			"Secret %s/%s named by %s may not be a password source: %s; %s",
			r.opts.Namespace, name, field, why, refused)}, nil
	}
	return s, nil, nil
}
