package engine

import (
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation/field"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// FuzzParseList checks ParseList against an independent reading of a comma list (listOracle,
// which scans runes itself), and that every parsed name is matched, and a name not listed is not,
// by the compiled rule's plan and by its reference CEL program alike, without evaluation errors.
// Seed corpus: testdata/fuzz/FuzzParseList.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"", "*", " * ", "dev", "dev, prod", "a,,b,", "*,a", "dev-*", "^prod$", `a"b`, "\t x \n", ",", "é, 😀", "\u00a0a\u2003,\u3000", "a\xffb, c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		all, names := ParseList(list)
		wantAll, wantNames := listOracle(list)
		if all != wantAll || !slices.Equal(names, wantNames) {
			t.Fatalf("ParseList(%q) = %v, %q; the oracle says %v, %q", list, all, names, wantAll, wantNames)
		}
		if !utf8.ValidString(list) {
			return
		}
		r, errs := Compile(&tcrv1.ImagePullSecretSpec{Namespaces: list})
		if len(errs) > 0 {
			t.Fatalf("Compile(namespaces=%q): %v", list, errs)
		}
		// Checking every name would make the harness quadratic on inputs with thousands of names.
		for _, n := range names[:min(len(names), 100)] {
			got, err := r.MatchNamespace(Namespace{Name: n})
			ref, refErr := r.MatchNamespaceCEL(Namespace{Name: n})
			if err != nil || refErr != nil || !got || !ref {
				t.Fatalf("namespaces=%q: %q matched %v (%v) by plan, %v (%v) by CEL", list, n, got, err, ref, refErr)
			}
		}
		probe := Namespace{Name: "probe-" + strings.Join(names, "")}
		got, err := r.MatchNamespace(probe)
		ref, refErr := r.MatchNamespaceCEL(probe)
		if err != nil || refErr != nil {
			t.Fatalf("namespaces=%q: %q failed to evaluate: plan %v, CEL %v", list, probe.Name, err, refErr)
		}
		if want := all || slices.Contains(wantNames, probe.Name); got != want || ref != want {
			t.Fatalf("namespaces=%q: %q matched %v by plan, %v by CEL, want %v", list, probe.Name, got, ref, want)
		}
	})
}

// listOracle reads a comma list as the original product documents it, written without the
// strings package that ParseList uses: split at every comma, trim Unicode white space from each
// entry, drop empty entries; a list that is blank or "*" once trimmed selects everything.
func listOracle(list string) (all bool, names []string) {
	// trim drops white space runes at both ends; an invalid byte decodes as U+FFFD, which is
	// not space, so it stays, byte for byte.
	trim := func(s string) string {
		for s != "" {
			r, size := utf8.DecodeRuneInString(s)
			if !unicode.IsSpace(r) {
				break
			}
			s = s[size:]
		}
		for s != "" {
			r, size := utf8.DecodeLastRuneInString(s)
			if !unicode.IsSpace(r) {
				break
			}
			s = s[:len(s)-size]
		}
		return s
	}
	if whole := trim(list); whole == "" || whole == "*" {
		return true, nil
	}
	var entry []byte
	flush := func() {
		if e := trim(string(entry)); e != "" {
			names = append(names, e)
		}
		entry = entry[:0]
	}
	for i := 0; i < len(list); i++ {
		if list[i] == ',' {
			flush()
			continue
		}
		entry = append(entry, list[i])
	}
	flush()
	return false, names
}

// FuzzCompile checks that Compile and Validate never panic and are deterministic on any spec,
// and that a compiled rule's plan and reference CEL program agree on a namespace and a
// ServiceAccount built from the same input. Seed corpus: testdata/fuzz/FuzzCompile.
func FuzzCompile(f *testing.F) {
	f.Add("dev, prod", "*", "", "", "", "dev", "a")
	f.Add("*", "default", "kube-system", `namespace.name.startsWith("d")`, "", "dev", "b")
	f.Add("", "", "", `namespace.labels["env"] == "prod"`, `serviceAccount.labels["team"] == namespace.labels["team"]`, "x", "prod")
	f.Add("a,,b", "*,x", "*", "1", "serviceAccount.name", "a", "")
	f.Add("", "", "", `namespace.annotations.exists(k, namespace.annotations[k].contains("x"))`, "", "x", "y")
	f.Add("", "", "", `"namespace" == namespace.name // namespace`, `serviceAccount.namespace == namespace.name`, "namespace", "v")
	f.Add("", "", "", `[1,2,3].map(x, x * 2).size() == 3`, `namespace.name.matches("^[a-z]+$")`, "abc", "v")
	// A raw bytes literal ending in a backslash, which the pre-lexer once misread (issue 12).
	f.Add("", "", "", `br"\" == b"\\" || namespace.name == "a"`, `Rb'\' == b'\\' && serviceAccount.namespace == namespace.name`, "a", "v")
	f.Fuzz(func(t *testing.T, namespaces, serviceAccounts, exclude, nsExpr, saExpr, name, value string) {
		spec := tcrv1.ImagePullSecretSpec{
			Namespaces: namespaces, ServiceAccounts: serviceAccounts, ExcludeNamespaces: exclude,
			NamespaceExpression: nsExpr, ServiceAccountExpression: saExpr,
		}
		r, errs := Compile(&spec)
		_, errs2 := Compile(&spec)
		if errs.ToAggregate() != nil && errs2.ToAggregate() != nil {
			if errs.ToAggregate().Error() != errs2.ToAggregate().Error() {
				t.Fatalf("Compile is not deterministic: %v then %v", errs, errs2)
			}
		} else if (errs.ToAggregate() == nil) != (errs2.ToAggregate() == nil) {
			t.Fatalf("Compile is not deterministic: %v then %v", errs, errs2)
		}
		for _, e := range errs {
			if e.Type == field.ErrorTypeInternal {
				t.Fatalf("Compile failed internally: %v", e)
			}
			// The pre-lexer renames the variable wherever CEL would see it; CEL must never meet it.
			if strings.Contains(e.Detail, "reserved identifier: namespace") {
				t.Fatalf("the pre-lexer let the variable namespace through: %v", e)
			}
		}
		vErrs, _ := Validate(&spec)
		if len(vErrs) < len(errs) {
			t.Fatalf("Validate reported fewer errors (%v) than Compile (%v)", vErrs, errs)
		}
		if r == nil {
			return
		}
		n := Namespace{Name: name, Labels: map[string]string{"env": value, "team": value}, Annotations: map[string]string{"x": value}}
		sa := ServiceAccount{Name: name, Labels: map[string]string{"team": value}}
		got, err := r.MatchNamespace(n)
		ref, refErr := r.MatchNamespaceCEL(n)
		compareVerdicts(t, "namespace", got, err, ref, refErr)
		got, err = r.MatchServiceAccount(n, sa)
		ref, refErr = r.MatchServiceAccountCEL(n, sa)
		compareVerdicts(t, "serviceAccount", got, err, ref, refErr)
	})
}

// compareVerdicts fails unless the plan and the reference program agree. The one allowed
// difference: when the plan stops at an evaluation error, CEL's commutative && may still
// conclude false from a later clause.
func compareVerdicts(t *testing.T, what string, got bool, err error, ref bool, refErr error) {
	t.Helper()
	switch {
	case err == nil && (refErr != nil || got != ref):
		t.Fatalf("%s: plan says %v, CEL says %v (%v)", what, got, ref, refErr)
	case err != nil && refErr == nil && ref:
		t.Fatalf("%s: plan failed (%v), CEL says true", what, err)
	case err != nil && got:
		t.Fatalf("%s: plan failed (%v) but says true", what, err)
	}
}
