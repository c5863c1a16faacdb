package admission

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// ServiceAccountPath is where the webhook server serves the ServiceAccount mutation.
const ServiceAccountPath = "/mutate--v1-serviceaccount"

// +kubebuilder:webhookconfiguration:mutating=true,name=tcr-assistant-mutating-webhook-configuration
// +kubebuilder:webhook:path=/mutate--v1-serviceaccount,mutating=true,failurePolicy=ignore,sideEffects=None,timeoutSeconds=3,groups="",resources=serviceaccounts,verbs=create;update,versions=v1,name=mserviceaccount.tcr.tencentcloudcr.com,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded,serviceName=tcr-assistant-webhook-service,serviceNamespace=tcr-assistant-system,matchPolicy=Equivalent

// References answers which Secret references a ServiceAccount being admitted lacks: the
// controller's Admission, which asks the controller's own plan.
type References interface {
	References(ctx context.Context, sa *corev1.ServiceAccount) ([]string, error)
}

// ServiceAccountMutator adds, at admission, the references the controller would add later, so
// that a Pod created right after its ServiceAccount (Helm, a GitOps sync) gets the credential,
// and a GitOps tool that applies a ServiceAccount without them never removes them. It only
// appends after the user's entries; it never removes or reorders one. It allows every request:
// the webhook is optional (failurePolicy Ignore), and whatever it cannot add the controller adds.
type ServiceAccountMutator struct {
	Refs References
	// FieldManager is the controller's field manager, whose own writes are left alone.
	FieldManager string
	Log          logr.Logger
}

var _ admission.Handler = ServiceAccountMutator{}

// Handle answers one review with a JSON patch appending the missing references, or none.
func (m ServiceAccountMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	if m.FieldManager != "" && fieldManager(req) == m.FieldManager {
		// The controller's own patch: it adds and removes references on purpose, and one it
		// removes (its ImagePullSecret is being deleted) must not come back from a replica
		// whose cache has not seen the deletion yet.
		return admission.Allowed("")
	}
	var sa corev1.ServiceAccount
	if err := json.Unmarshal(req.Object.Raw, &sa); err != nil {
		// Never a refusal: the API server decoded it, and the webhook only ever adds.
		m.Log.Error(err, "Failed to decode a ServiceAccount; admitted unchanged", "namespace", req.Namespace, "name", req.Name)
		return admission.Allowed("")
	}
	if sa.Namespace == "" {
		sa.Namespace = req.Namespace // absent from the object on CREATE with generateName and the like
	}
	names, err := m.Refs.References(ctx, &sa)
	if err != nil {
		// Allowed without them: the controller adds them once it can read what failed here.
		m.Log.Error(err, "Failed to work out the references of a ServiceAccount; the controller will add them", "namespace", sa.Namespace, "name", sa.Name)
	}
	return admission.Patched("", appendPatch(sa.ImagePullSecrets, names)...)
}

// fieldManager returns the field manager of the request's options, or "".
func fieldManager(req admission.Request) string {
	var opts struct {
		FieldManager string `json:"fieldManager"`
	}
	if len(req.Options.Raw) == 0 || json.Unmarshal(req.Options.Raw, &opts) != nil {
		return ""
	}
	return opts.FieldManager
}

// appendPatch returns the JSON patch appending names to refs, skipping a name already there.
func appendPatch(refs []corev1.LocalObjectReference, names []string) []jsonpatch.Operation {
	have := make(map[string]bool, len(refs))
	for _, r := range refs {
		have[r.Name] = true
	}
	var ops []jsonpatch.Operation
	for _, n := range names {
		if have[n] {
			continue
		}
		have[n] = true
		ref := map[string]string{"name": n}
		if len(refs) == 0 && len(ops) == 0 {
			// No list, or an empty or null one: "add" on the field creates or replaces it.
			ops = append(ops, jsonpatch.NewOperation("add", "/imagePullSecrets", []any{ref}))
			continue
		}
		ops = append(ops, jsonpatch.NewOperation("add", "/imagePullSecrets/-", ref))
	}
	return ops
}

// ServiceAccountHandler serves m, refusing bodies over MaxRequestBytes as the validation does.
func ServiceAccountHandler(m ServiceAccountMutator) http.Handler {
	return limitBody(&admission.Webhook{Handler: m}, MaxRequestBytes)
}
