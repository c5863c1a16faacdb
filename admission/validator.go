package admission

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

// Path is where the webhook server serves the ImagePullSecret validation.
const Path = "/validate-tcr-tencentcloudcr-com-v1-imagepullsecret"

// +kubebuilder:webhookconfiguration:mutating=false,name=tcr-assistant-validating-webhook-configuration
// +kubebuilder:webhook:path=/validate-tcr-tencentcloudcr-com-v1-imagepullsecret,mutating=false,failurePolicy=fail,sideEffects=None,timeoutSeconds=5,groups=tcr.tencentcloudcr.com,resources=imagepullsecrets,verbs=create;update,versions=v1,name=vimagepullsecret.tcr.tencentcloudcr.com,admissionReviewVersions=v1,serviceName=tcr-assistant-webhook-service,serviceNamespace=tcr-assistant-system,matchPolicy=Equivalent

// Validator refuses ImagePullSecrets that engine.Validate refuses and passes on its warnings.
// It is the admission authority; the CRD's x-kubernetes-validations repeat only the cheapest
// structural checks for clusters where the webhook is not installed.
type Validator struct {
	// Rules caches compile verdicts; nil compiles every spec on every review.
	Rules *engine.Cache
	// Secrets reads Secrets of Namespace, to warn when docker.passwordSecretRef names one that
	// may not be a password source; nil skips the check.
	Secrets client.Reader
	// Namespace is the controller's namespace, where password Secrets live.
	Namespace string
	// CertSecretName is the webhook's certificate Secret, which is never a password source.
	CertSecretName string
}

var _ admission.Validator[*tcrv1.ImagePullSecret] = Validator{}

// ValidateCreate validates a new ImagePullSecret.
func (v Validator) ValidateCreate(ctx context.Context, ips *tcrv1.ImagePullSecret) (admission.Warnings, error) {
	return v.validate(ctx, ips)
}

// ValidateUpdate validates a changed spec. An update that leaves the spec alone (finalizers,
// labels, annotations) or touches an object being deleted is always allowed: the controller must
// be able to remove its finalizer from a CR that predates a stricter rule.
func (v Validator) ValidateUpdate(ctx context.Context, old, ips *tcrv1.ImagePullSecret) (admission.Warnings, error) {
	if ips.DeletionTimestamp != nil || equality.Semantic.DeepEqual(old.Spec, ips.Spec) {
		return nil, nil
	}
	return v.validate(ctx, ips)
}

// ValidateDelete allows every deletion; the webhook is not even registered for DELETE.
func (Validator) ValidateDelete(context.Context, *tcrv1.ImagePullSecret) (admission.Warnings, error) {
	return nil, nil
}

// validate returns the refusal of ips as an Invalid status error, whose message kubectl prints
// as `ImagePullSecret.tcr.tencentcloudcr.com "name" is invalid: spec.field: ...`, or nil.
func (v Validator) validate(ctx context.Context, ips *tcrv1.ImagePullSecret) (admission.Warnings, error) {
	var errs field.ErrorList
	if len(ips.Name) > tcrv1.MaxNameLength {
		tooLong := field.TooLong(field.NewPath("metadata", "name"), "", tcrv1.MaxNameLength)
		tooLong.Detail = fmt.Sprintf("must be at most %d characters: the distributed Secret is named %q + name, and Secret names are limited to 253 characters",
			tcrv1.MaxNameLength, tcrv1.SecretNamePrefix)
		errs = append(errs, tooLong)
	}
	var specErrs field.ErrorList
	var warnings []string
	if v.Rules != nil {
		specErrs, warnings = v.Rules.Validate(&ips.Spec)
	} else {
		specErrs, warnings = engine.Validate(&ips.Spec)
	}
	errs = append(errs, specErrs...)
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(tcrv1.GroupVersion.WithKind("ImagePullSecret").GroupKind(), ips.Name, errs)
	}
	if w := v.passwordSourceWarning(ctx, ips.Spec.Docker.PasswordSecretRef); w != "" {
		warnings = append(warnings, w)
	}
	return warnings, nil
}

// passwordSourceWarning warns when ref names a Secret of the controller's namespace that exists
// but may not be a password source: the CR is admitted (the Secret may still be labelled), but
// the controller will distribute nothing from it until it is. A Secret that does not exist yet
// gets no warning; one that cannot be read gets a warning saying so, never a refusal.
func (v Validator) passwordSourceWarning(ctx context.Context, ref *tcrv1.SecretKeyReference) string {
	if ref == nil || v.Secrets == nil {
		return ""
	}
	var secret corev1.Secret
	err := v.Secrets.Get(ctx, client.ObjectKey{Namespace: v.Namespace, Name: ref.Name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		return ""
	case err != nil:
		return fmt.Sprintf("spec.docker.passwordSecretRef: could not check Secret %s/%s: %v", v.Namespace, ref.Name, err)
	}
	if ok, why := tcrv1.PasswordSourceAllowed(&secret, v.CertSecretName); !ok {
		return fmt.Sprintf("spec.docker.passwordSecretRef: Secret %s/%s may not be a password source: %s; nothing will be distributed from it", v.Namespace, ref.Name, why)
	}
	return ""
}
