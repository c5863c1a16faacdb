package controllers

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
)

// The plan tests run without an API server: every branch of plan, from objects built here.

var (
	planOwner = owner{name: "x", uid: "uid-x"}
	planData  = newSecretData([]byte(`{"auths":{"r.example.com":{}}}`))
	planLogin = registryLogin{server: "r.example.com", username: "u"}
)

// planOriginal is the Secret tcr.ipsx in ns as the original TCR Assistant left it: unlabelled,
// without an owner, holding a login of user to server; edit changes it further.
func planOriginal(server, user string, edit func(*corev1.Secret)) *slimSecret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tcr.ipsx", ResourceVersion: "7", UID: "original-uid"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(fmt.Sprintf(
			`{"auths":{%q:{"username":%q,"password":"old-password","auth":%q}}}`, server, user,
			base64.StdEncoding.EncodeToString([]byte(user+":old-password"))))},
	}
	if edit != nil {
		edit(s)
	}
	return newSlimSecret(s)
}

func planNamespace(name string, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func planSA(name string, refs ...string) *slimServiceAccount {
	sa := &slimServiceAccount{slimMeta: slimMeta{namespace: "ns", name: name, resourceVersion: "5"}}
	for _, r := range refs {
		sa.imagePullSecrets = append(sa.imagePullSecrets, corev1.LocalObjectReference{Name: r})
	}
	return sa
}

// planSecret is the Secret tcr.ipsx in ns: ours with the desired data unless changed by edit.
func planSecret(edit func(*corev1.Secret)) *slimSecret {
	s := desiredSecret(&target{owner: planOwner, data: planData}, "ns")
	s.ResourceVersion, s.UID = "7", "secret-uid"
	if edit != nil {
		edit(s)
	}
	return newSlimSecret(s)
}

func planRule(t *testing.T, spec tcrv1.ImagePullSecretSpec) *engine.Rule {
	t.Helper()
	spec.Docker = tcrv1.DockerCredential{Server: "r.example.com", Username: "u", Password: "p"}
	rule, errs := engine.Compile(&spec)
	require.Empty(t, errs)
	return rule
}

// planned is what a test compares of a plan: the step, the edits as "+name" / "-name", and what
// the status counts.
type planned struct {
	secret     secretStep
	refs       []string
	wantSecret bool
	wantSAs    []string
	foreign    bool
	failures   []string // reason: namespaced name
}

func summarize(p nsPlan) planned {
	out := planned{secret: p.secret, wantSecret: p.wantSecret, wantSAs: p.wantSAs, foreign: p.foreign}
	for _, e := range p.refs {
		sign := "-"
		if e.add {
			sign = "+"
		}
		out.refs = append(out.refs, sign+e.sa.name)
	}
	for _, f := range p.failures {
		out.failures = append(out.failures, f.Reason+": "+f.NamespacedName)
	}
	return out
}

func TestPlan(t *testing.T) {
	all := planRule(t, tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*"})
	onlyA := planRule(t, tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "a"})
	otherNS := planRule(t, tcrv1.ImagePullSecretSpec{Namespaces: "elsewhere", ServiceAccounts: "*"})
	labelled := planRule(t, tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.labels["env"] == "prod"`})
	saLabelled := planRule(t, tcrv1.ImagePullSecretSpec{ServiceAccountExpression: `serviceAccount.labels["team"] == "a"`})
	unlabelled := func(s *corev1.Secret) { s.Labels = nil }
	now := metav1.NewTime(time.Unix(100, 0))
	yes := true
	notOwned := []string{"SecretNotOwned: ns/tcr.ipsx"}

	tests := map[string]struct {
		rule    *engine.Rule
		ns      *metav1.PartialObjectMetadata
		sas     []*slimServiceAccount
		secret  *slimSecret
		want    planned
		current bool // the plan acts on the Secret it was given
	}{
		"a new namespace gets the Secret and every matching ServiceAccount the reference": {
			rule: all, sas: []*slimServiceAccount{planSA("default"), planSA("build")},
			want: planned{secret: secretCreate, refs: []string{"+default", "+build"}, wantSecret: true, wantSAs: []string{"default", "build"}},
		},
		"an up-to-date namespace needs nothing": {
			rule: all, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planSecret(nil),
			want: planned{wantSecret: true, wantSAs: []string{"default"}}, current: true,
		},
		"only matching ServiceAccounts get the reference; a stale one is removed from the others": {
			rule: onlyA, sas: []*slimServiceAccount{planSA("a"), planSA("b", "tcr.ipsx"), planSA("c")}, secret: planSecret(nil),
			want: planned{refs: []string{"+a", "-b"}, wantSecret: true, wantSAs: []string{"a"}}, current: true,
		},
		"a foreign Secret of the same name is reported and neither written nor referenced": {
			rule: all, sas: []*slimServiceAccount{planSA("default")}, secret: planSecret(unlabelled),
			want: planned{wantSecret: true, wantSAs: []string{"default"}, foreign: true, failures: []string{"SecretNotOwned: ns/tcr.ipsx"}}, current: true,
		},
		"a labelled Secret without our controller reference is foreign": {
			rule: all, secret: planSecret(func(s *corev1.Secret) { s.OwnerReferences = nil }),
			want: planned{wantSecret: true, foreign: true, failures: []string{"SecretNotOwned: ns/tcr.ipsx"}}, current: true,
		},
		"the Secret of an earlier ImagePullSecret of the same name (another UID) is foreign": {
			rule: all, secret: planSecret(func(s *corev1.Secret) { s.OwnerReferences[0].UID = types.UID("uid-old") }),
			want: planned{wantSecret: true, foreign: true, failures: []string{"SecretNotOwned: ns/tcr.ipsx"}}, current: true,
		},
		"Secret data that has drifted is patched": {
			rule: all, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")},
			secret: planSecret(func(s *corev1.Secret) { s.Data[corev1.DockerConfigJsonKey] = []byte("{}") }),
			want:   planned{secret: secretPatch, wantSecret: true, wantSAs: []string{"default"}}, current: true,
		},
		"an extra data key is drift": {
			rule: all, secret: planSecret(func(s *corev1.Secret) { s.Data["extra"] = []byte("x") }),
			want: planned{secret: secretPatch, wantSecret: true}, current: true,
		},
		"a Secret of ours of another type is replaced": {
			rule: all, secret: planSecret(func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }),
			want: planned{secret: secretReplace, wantSecret: true}, current: true,
		},
		"a namespace that stopped matching loses our Secret and every stale reference": {
			rule: otherNS, sas: []*slimServiceAccount{planSA("default", "keep", "tcr.ipsx"), planSA("other", "keep")}, secret: planSecret(nil),
			want: planned{secret: secretDelete, refs: []string{"-default"}}, current: true,
		},
		"a reference the user added to a same-name Secret we do not own is kept": {
			rule: otherNS, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planSecret(unlabelled),
			want: planned{}, current: true,
		},
		"a stale reference to a Secret that is gone is removed": {
			rule: otherNS, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")},
			want: planned{refs: []string{"-default"}},
		},
		"a terminating namespace is skipped, never written": {
			rule: otherNS, ns: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "ns", DeletionTimestamp: &now}},
			sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planSecret(nil),
			want: planned{}, current: true,
		},
		"a terminating matching namespace is not counted": {
			rule: all, ns: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "ns", DeletionTimestamp: &now}},
			sas:  []*slimServiceAccount{planSA("default")},
			want: planned{},
		},
		"two ImagePullSecrets on one ServiceAccount: each edits only its own reference": {
			rule: all, sas: []*slimServiceAccount{planSA("default", "tcr.ipsother"), planSA("both", "tcr.ipsother", "tcr.ipsx")}, secret: planSecret(nil),
			want: planned{refs: []string{"+default"}, wantSecret: true, wantSAs: []string{"default", "both"}}, current: true,
		},
		"without a rule (the ImagePullSecret is gone) our Secret and its references are removed": {
			sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planSecret(nil),
			want: planned{secret: secretDelete, refs: []string{"-default"}}, current: true,
		},
		"without a rule a foreign Secret and the references to it stay": {
			sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planSecret(func(s *corev1.Secret) { s.OwnerReferences = nil }),
			want: planned{}, current: true,
		},
		"a namespace rule that cannot be evaluated is reported and nothing is written or removed": {
			rule: labelled, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planSecret(nil),
			want: planned{failures: []string{"RuleEvaluationFailed: ns/tcr.ipsx"}}, current: true,
		},
		"a ServiceAccount rule that cannot be evaluated is reported for that ServiceAccount only": {
			rule: saLabelled, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx"), func() *slimServiceAccount {
				sa := planSA("team-a")
				sa.labels = map[string]string{"team": "a"}
				return sa
			}()},
			secret: planSecret(nil),
			want:   planned{refs: []string{"+team-a"}, wantSecret: true, wantSAs: []string{"team-a"}, failures: []string{"RuleEvaluationFailed: ns/default"}}, current: true,
		},
		// Adoption of the Secrets the original TCR Assistant left (docs/design.md, "Ownership").
		"a Secret the original left for this ImagePullSecret is adopted; the references stay and the missing one is added": {
			rule: all, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx"), planSA("build")}, secret: planOriginal("r.example.com", "u", nil),
			want: planned{secret: secretAdopt, refs: []string{"+build"}, wantSecret: true, wantSAs: []string{"default", "build"}}, current: true,
		},
		"an adoptable Secret whose login has only the auth field is adopted": {
			rule: all, secret: planOriginal("r.example.com", "u", func(s *corev1.Secret) {
				s.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"r.example.com":{"auth":"dTpvbGQtcGFzc3dvcmQ="}}}`)
			}),
			want: planned{secret: secretAdopt, wantSecret: true}, current: true,
		},
		"an adoptable Secret that already carries our labels (but no controller) is adopted": {
			rule: all, secret: planOriginal("r.example.com", "u", func(s *corev1.Secret) {
				s.Labels = map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: "x"}
			}),
			want: planned{secret: secretAdopt, wantSecret: true}, current: true,
		},
		"an adoptable Secret with a reference that is not a controller is adopted": {
			rule: all, secret: planOriginal("r.example.com", "u", func(s *corev1.Secret) {
				s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "keep", UID: "cm"}}
			}),
			want: planned{secret: secretAdopt, wantSecret: true}, current: true,
		},
		"a same-name Secret for another username stays foreign": {
			rule: all, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planOriginal("r.example.com", "someone-else", nil),
			want: planned{wantSecret: true, wantSAs: []string{"default"}, foreign: true, failures: notOwned}, current: true,
		},
		"a same-name Secret for another server stays foreign": {
			rule: all, secret: planOriginal("other.example.com", "u", nil),
			want: planned{wantSecret: true, foreign: true, failures: notOwned}, current: true,
		},
		"a same-name Secret of another type stays foreign": {
			rule: all, secret: planOriginal("r.example.com", "u", func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }),
			want: planned{wantSecret: true, foreign: true, failures: notOwned}, current: true,
		},
		"a same-name Secret controlled by another owner stays foreign": {
			rule: all, secret: planOriginal("r.example.com", "u", func(s *corev1.Secret) {
				s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "d", UID: "d", Controller: &yes}}
			}),
			want: planned{wantSecret: true, foreign: true, failures: notOwned}, current: true,
		},
		"a same-name Secret labelled for another ImagePullSecret stays foreign": {
			rule: all, secret: planOriginal("r.example.com", "u", func(s *corev1.Secret) {
				s.Labels = map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: "y"}
			}),
			want: planned{wantSecret: true, foreign: true, failures: notOwned}, current: true,
		},
		"a same-name Secret another tool manages stays foreign": {
			rule: all, secret: planOriginal("r.example.com", "u", func(s *corev1.Secret) {
				s.Labels = map[string]string{tcrv1.ManagedByLabel: "Helm"}
			}),
			want: planned{wantSecret: true, foreign: true, failures: notOwned}, current: true,
		},
		"a same-name Secret being deleted stays foreign": {
			rule: all, secret: planOriginal("r.example.com", "u", func(s *corev1.Secret) { s.DeletionTimestamp = &now }),
			want: planned{wantSecret: true, foreign: true, failures: notOwned}, current: true,
		},
		"an adoptable Secret that a non-matching ServiceAccount references stays foreign, so that no reference is lost": {
			rule: onlyA, sas: []*slimServiceAccount{planSA("a", "tcr.ipsx"), planSA("b", "tcr.ipsx")}, secret: planOriginal("r.example.com", "u", nil),
			want: planned{wantSecret: true, wantSAs: []string{"a"}, foreign: true, failures: notOwned}, current: true,
		},
		"an adoptable Secret in a terminating namespace is left alone": {
			rule: all, ns: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "ns", DeletionTimestamp: &now}},
			sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planOriginal("r.example.com", "u", nil),
			want: planned{}, current: true,
		},
		"an adoptable Secret in a namespace that does not match is neither adopted nor deleted, and its references stay": {
			rule: otherNS, sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planOriginal("r.example.com", "u", nil),
			want: planned{}, current: true,
		},
		"without a rule an adoptable Secret and the references to it stay": {
			sas: []*slimServiceAccount{planSA("default", "tcr.ipsx")}, secret: planOriginal("r.example.com", "u", nil),
			want: planned{}, current: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ns := tc.ns
			if ns == nil {
				ns = planNamespace("ns", nil)
			}
			in := planInput{owner: planOwner, rule: tc.rule, data: planData, login: planLogin, namespace: ns, serviceAccounts: tc.sas, secret: tc.secret}
			before := make([][]corev1.LocalObjectReference, len(tc.sas))
			for i, sa := range tc.sas {
				before[i] = append([]corev1.LocalObjectReference(nil), sa.imagePullSecrets...)
			}
			p := plan(in)
			assert.Equal(t, tc.want, summarize(p))
			assert.Equal(t, "ns", p.namespace)
			if tc.current {
				assert.Same(t, tc.secret, p.current)
			} else {
				assert.Nil(t, p.current)
			}
			for i, sa := range tc.sas {
				assert.Equal(t, before[i], sa.imagePullSecrets, "plan never modifies its input")
			}
			assert.Equal(t, p, plan(in), "plan is a function of its input")
		})
	}
}

func TestOwned(t *testing.T) {
	tests := map[string]struct {
		edit func(*corev1.Secret)
		want bool
	}{
		"our name, labels and controller reference with our UID": {want: true},
		"another name":        {edit: func(s *corev1.Secret) { s.Name = "tcr.ipsy" }},
		"no managed-by label": {edit: func(s *corev1.Secret) { delete(s.Labels, tcrv1.ManagedByLabel) }},
		"the owner label of another ImagePullSecret":                  {edit: func(s *corev1.Secret) { s.Labels[tcrv1.OwnerLabel] = "y" }},
		"no controller reference":                                     {edit: func(s *corev1.Secret) { s.OwnerReferences = nil }},
		"a controller reference with another UID (a recreated CR)":    {edit: func(s *corev1.Secret) { s.OwnerReferences[0].UID = "uid-old" }},
		"a reference that is not the controller":                      {edit: func(s *corev1.Secret) { s.OwnerReferences[0].Controller = nil }},
		"a controller reference to another kind with our UID":         {edit: func(s *corev1.Secret) { s.OwnerReferences[0].Kind = "ConfigMap" }},
		"a controller reference to another name with our UID (spoof)": {edit: func(s *corev1.Secret) { s.OwnerReferences[0].Name = "y" }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := desiredSecret(&target{owner: planOwner, data: planData}, "ns")
			if tc.edit != nil {
				tc.edit(s)
			}
			assert.Equal(t, tc.want, owned(s, planOwner))
			assert.Equal(t, tc.want, owned(newSlimSecret(s), planOwner), "the slim form is judged alike")
		})
	}
}

// TestPlanAdoptionMessages checks the exact messages of the two ways an adoptable-looking Secret
// stays foreign: they tell the user what to do.
func TestPlanAdoptionMessages(t *testing.T) {
	onlyA := planRule(t, tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "a"})
	in := planInput{owner: planOwner, rule: onlyA, data: planData, login: planLogin, namespace: planNamespace("ns", nil),
		serviceAccounts: []*slimServiceAccount{planSA("a", "tcr.ipsx"), planSA("b", "tcr.ipsx")}, secret: planOriginal("r.example.com", "u", nil)}
	p := plan(in)
	require.Len(t, p.failures, 1)
	assert.Equal(t, "Secret ns/tcr.ipsx was left by the original TCR Assistant and could be adopted, but ServiceAccount ns/b "+
		"references it and does not match serviceAccounts: adopting it would remove that reference; it was left untouched", p.failures[0].Message)

	in.secret = planOriginal("r.example.com", "someone-else", nil)
	p = plan(in)
	require.Len(t, p.failures, 1)
	assert.Equal(t, "Secret ns/tcr.ipsx exists and is not managed by this ImagePullSecret; it was left untouched: "+
		"delete or rename it to let tcr-assistant create its own", p.failures[0].Message)
}
