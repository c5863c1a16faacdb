package admission

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
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
type Validator struct{}

var _ admission.Validator[*tcrv1.ImagePullSecret] = Validator{}

// ValidateCreate validates a new ImagePullSecret.
func (Validator) ValidateCreate(_ context.Context, ips *tcrv1.ImagePullSecret) (admission.Warnings, error) {
	return validate(ips)
}

// ValidateUpdate validates a changed spec. An update that leaves the spec alone (finalizers,
// labels, annotations) or touches an object being deleted is always allowed: the controller must
// be able to remove its finalizer from a CR that predates a stricter rule.
func (Validator) ValidateUpdate(_ context.Context, old, ips *tcrv1.ImagePullSecret) (admission.Warnings, error) {
	if ips.DeletionTimestamp != nil || equality.Semantic.DeepEqual(old.Spec, ips.Spec) {
		return nil, nil
	}
	return validate(ips)
}

// ValidateDelete allows every deletion; the webhook is not even registered for DELETE.
func (Validator) ValidateDelete(context.Context, *tcrv1.ImagePullSecret) (admission.Warnings, error) {
	return nil, nil
}

// validate returns the refusal of ips as an Invalid status error, whose message kubectl prints
// as `ImagePullSecret.tcr.tencentcloudcr.com "name" is invalid: spec.field: ...`, or nil.
func validate(ips *tcrv1.ImagePullSecret) (admission.Warnings, error) {
	var errs field.ErrorList
	if len(ips.Name) > tcrv1.MaxNameLength {
		tooLong := field.TooLong(field.NewPath("metadata", "name"), ips.Name, tcrv1.MaxNameLength)
		tooLong.Detail = fmt.Sprintf("must be at most %d characters: the distributed Secret is named %q + name, and Secret names are limited to 253 characters",
			tcrv1.MaxNameLength, tcrv1.SecretNamePrefix)
		errs = append(errs, tooLong)
	}
	specErrs, warnings := engine.Validate(&ips.Spec)
	errs = append(errs, specErrs...)
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(tcrv1.GroupVersion.WithKind("ImagePullSecret").GroupKind(), ips.Name, errs)
	}
	return warnings, nil
}
