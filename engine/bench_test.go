package engine

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

var benchNamespace = Namespace{
	Name:        "team-payments",
	Labels:      map[string]string{"team": "payments", "env": "prod", "kubernetes.io/metadata.name": "team-payments"},
	Annotations: map[string]string{"owner": "alice"},
}

func benchRule(b *testing.B, spec tcrv1.ImagePullSecretSpec) *Rule {
	b.Helper()
	r, errs := Compile(&spec)
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	return r
}

func benchMatch(b *testing.B, r *Rule, want bool) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		ok, err := r.MatchNamespace(benchNamespace)
		if err != nil || ok != want {
			b.Fatalf("got %v, %v", ok, err)
		}
	}
}

// BenchmarkMatchNamespace measures one namespace verdict per rule shape.
func BenchmarkMatchNamespace(b *testing.B) {
	b.Run("list", func(b *testing.B) {
		benchMatch(b, benchRule(b, tcrv1.ImagePullSecretSpec{Namespaces: "dev, staging, team-payments, prod"}), true)
	})
	b.Run("list-100", func(b *testing.B) {
		names := "team-payments"
		for i := range 99 {
			names += ",ns-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		}
		benchMatch(b, benchRule(b, tcrv1.ImagePullSecretSpec{Namespaces: names}), true)
	})
	b.Run("all", func(b *testing.B) {
		benchMatch(b, benchRule(b, tcrv1.ImagePullSecretSpec{Namespaces: "*", ExcludeNamespaces: "kube-system, kube-public"}), true)
	})
	b.Run("selector", func(b *testing.B) {
		benchMatch(b, benchRule(b, tcrv1.ImagePullSecretSpec{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels:      map[string]string{"team": "payments"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}}},
		}}), true)
	})
	b.Run("expression", func(b *testing.B) {
		benchMatch(b, benchRule(b, tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.name.startsWith("team-") && namespace.labels["env"] == "prod"`}), true)
	})
	b.Run("reference-cel-list", func(b *testing.B) {
		r := benchRule(b, tcrv1.ImagePullSecretSpec{Namespaces: "dev, staging, team-payments, prod"})
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := r.MatchNamespaceCEL(benchNamespace); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}

// BenchmarkMatchServiceAccount measures one ServiceAccount verdict (namespace match included).
func BenchmarkMatchServiceAccount(b *testing.B) {
	sa := ServiceAccount{Name: "builder", Labels: map[string]string{"ci": "true"}}
	run := func(b *testing.B, r *Rule) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := r.MatchServiceAccount(benchNamespace, sa); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	}
	b.Run("list", func(b *testing.B) {
		run(b, benchRule(b, tcrv1.ImagePullSecretSpec{Namespaces: "dev, team-payments", ServiceAccounts: "default, builder"}))
	})
	b.Run("selector", func(b *testing.B) {
		run(b, benchRule(b, tcrv1.ImagePullSecretSpec{ServiceAccountSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ci": "true"}}}))
	})
	b.Run("expression", func(b *testing.B) {
		run(b, benchRule(b, tcrv1.ImagePullSecretSpec{ServiceAccounts: "default, builder", ServiceAccountExpression: `serviceAccount.labels["ci"] == "true"`}))
	})
}

// BenchmarkCompile measures compiling a spec that uses every field.
func BenchmarkCompile(b *testing.B) {
	spec := tcrv1.ImagePullSecretSpec{
		Namespaces: "dev, prod", ServiceAccounts: "default", ExcludeNamespaces: "kube-system",
		NamespaceSelector:        &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
		NamespaceExpression:      `namespace.name.startsWith("d")`,
		ServiceAccountExpression: `!("skip" in serviceAccount.annotations)`,
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, errs := Compile(&spec); len(errs) > 0 {
				b.Fatal(errs)
			}
		}
	})
	b.Run("original-fields", func(b *testing.B) {
		b.ReportAllocs()
		s := tcrv1.ImagePullSecretSpec{Namespaces: "dev, prod", ServiceAccounts: "*"}
		for b.Loop() {
			if _, errs := Compile(&s); len(errs) > 0 {
				b.Fatal(errs)
			}
		}
	})
}
