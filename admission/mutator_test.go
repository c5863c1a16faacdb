package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
)

// refsFunc answers References with a function, and counts the calls.
type refsFunc struct {
	calls *int
	names []string
}

func (f refsFunc) References(context.Context, *corev1.ServiceAccount) ([]string, error) {
	*f.calls++
	return f.names, nil
}

func TestAppendPatchOnlyAppendsWhatIsMissing(t *testing.T) {
	refs := func(names ...string) []corev1.LocalObjectReference {
		out := []corev1.LocalObjectReference{}
		for _, n := range names {
			out = append(out, corev1.LocalObjectReference{Name: n})
		}
		return out
	}
	ref := func(n string) map[string]string { return map[string]string{"name": n} }
	cases := map[string]struct {
		have  []corev1.LocalObjectReference
		names []string
		want  []jsonpatch.Operation
	}{
		"nothing to add":                   {refs("a"), nil, nil},
		"no list: the list is created":     {nil, []string{"tcr.ipsx"}, []jsonpatch.Operation{jsonpatch.NewOperation("add", "/imagePullSecrets", []any{ref("tcr.ipsx")})}},
		"an empty list is replaced":        {refs(), []string{"tcr.ipsx", "tcr.ipsy"}, []jsonpatch.Operation{jsonpatch.NewOperation("add", "/imagePullSecrets", []any{ref("tcr.ipsx")}), jsonpatch.NewOperation("add", "/imagePullSecrets/-", ref("tcr.ipsy"))}},
		"after the user's entries":         {refs("b", "a"), []string{"tcr.ipsx"}, []jsonpatch.Operation{jsonpatch.NewOperation("add", "/imagePullSecrets/-", ref("tcr.ipsx"))}},
		"one already there is not added":   {refs("tcr.ipsx", "a"), []string{"tcr.ipsx", "tcr.ipsy"}, []jsonpatch.Operation{jsonpatch.NewOperation("add", "/imagePullSecrets/-", ref("tcr.ipsy"))}},
		"a name given twice is added once": {nil, []string{"tcr.ipsx", "tcr.ipsx"}, []jsonpatch.Operation{jsonpatch.NewOperation("add", "/imagePullSecrets", []any{ref("tcr.ipsx")})}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, c.want, appendPatch(c.have, c.names))
		})
	}
}

func saReview(t *testing.T, fieldManager string) []byte {
	t.Helper()
	obj, err := json.Marshal(corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "sa"}})
	require.NoError(t, err)
	opts, err := json.Marshal(metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}, FieldManager: fieldManager})
	require.NoError(t, err)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "3c1b7a2e-0000-4000-8000-000000000002", Namespace: "ns", Name: "sa", Operation: admissionv1.Create,
			Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "ServiceAccount"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"},
			Object:   k8sruntime.RawExtension{Raw: obj}, Options: k8sruntime.RawExtension{Raw: opts},
		},
	})
	require.NoError(t, err)
	return body
}

func TestServiceAccountHandler(t *testing.T) {
	calls := 0
	h := ServiceAccountHandler(ServiceAccountMutator{Refs: refsFunc{calls: &calls, names: []string{"tcr.ipsx"}}, FieldManager: "tcr-assistant", Log: logr.Discard()})

	t.Run("a review gets the JSON patch", func(t *testing.T) {
		body := saReview(t, "kubectl-create")
		code, resp := post(h, bytes.NewReader(body), int64(len(body)))
		require.Equal(t, http.StatusOK, code)
		require.NotNil(t, resp)
		assert.True(t, resp.Allowed)
		assert.JSONEq(t, `[{"op":"add","path":"/imagePullSecrets","value":[{"name":"tcr.ipsx"}]}]`, string(resp.Patch))
		assert.Equal(t, 1, calls)
	})
	t.Run("the controller's own write is left alone", func(t *testing.T) {
		body := saReview(t, "tcr-assistant")
		code, resp := post(h, bytes.NewReader(body), int64(len(body)))
		require.Equal(t, http.StatusOK, code)
		assert.True(t, resp.Allowed)
		assert.Empty(t, resp.Patch)
		assert.Equal(t, 1, calls, "no plan for the controller's own write")
	})
	t.Run("a body over the cap is refused unread", func(t *testing.T) {
		code, resp := post(h, bytes.NewReader(nil), MaxRequestBytes+1)
		assert.Equal(t, http.StatusRequestEntityTooLarge, code)
		assert.Nil(t, resp)
		assert.Equal(t, 1, calls)
	})
}
