package engine

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

func TestParseList(t *testing.T) {
	tests := map[string]struct {
		list      string
		wantAll   bool
		wantNames []string
	}{
		"a star selects everything":                  {list: "*", wantAll: true},
		"an empty list selects everything":           {list: "", wantAll: true},
		"a star with spaces selects everything":      {list: "  * ", wantAll: true},
		"only spaces select everything":              {list: "   ", wantAll: true},
		"one name is one exact name":                 {list: "dev", wantNames: []string{"dev"}},
		"names are trimmed":                          {list: " dev ,  prod", wantNames: []string{"dev", "prod"}},
		"empty entries are dropped":                  {list: "a,,b,", wantNames: []string{"a", "b"}},
		"a star among names is a literal name":       {list: "*,a", wantNames: []string{"*", "a"}},
		"a glob is a literal name":                   {list: "dev-*", wantNames: []string{"dev-*"}},
		"only commas select nothing":                 {list: ",,", wantNames: nil},
		"tabs and newlines around names are trimmed": {list: "\tdev\n,prod", wantNames: []string{"dev", "prod"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			all, names := ParseList(tt.list)
			assert.Equal(t, tt.wantAll, all)
			assert.Equal(t, tt.wantNames, names)
		})
	}
}

func TestCompile(t *testing.T) {
	tests := map[string]struct {
		spec        tcrv1.ImagePullSecretSpec
		wantErrs    []string // exact error strings
		wantNsCEL   string
		wantSaCEL   string
		wantNames   []string
		wantNsMeta  bool
		wantSaMetas bool
	}{
		"the original fields with stars compile to true": {
			spec:      tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*"},
			wantNsCEL: "true", wantSaCEL: "true",
		},
		"a comma list compiles to a membership test": {
			spec:      tcrv1.ImagePullSecretSpec{Namespaces: "dev, prod", ServiceAccounts: "default"},
			wantNsCEL: `namespace.name in ["dev", "prod"]`,
			wantSaCEL: `namespace.name in ["dev", "prod"] && serviceAccount.name in ["default"]`,
			wantNames: []string{"dev", "prod"},
		},
		"exclusions and selectors compile to clauses in order": {
			spec: tcrv1.ImagePullSecretSpec{ExcludeNamespaces: "kube-system", NamespaceSelector: &metav1.LabelSelector{
				MatchLabels:      map[string]string{"team": "a"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"dev"}}},
			}},
			wantNsCEL:  `!(namespace.name in ["kube-system"]) && (!("env" in namespace.labels) || !(namespace.labels["env"] in ["dev"])) && ("team" in namespace.labels && namespace.labels["team"] in ["a"])`,
			wantSaCEL:  `!(namespace.name in ["kube-system"]) && (!("env" in namespace.labels) || !(namespace.labels["env"] in ["dev"])) && ("team" in namespace.labels && namespace.labels["team"] in ["a"])`,
			wantNsMeta: true,
		},
		"a list of only commas selects no namespace": {
			spec:      tcrv1.ImagePullSecretSpec{Namespaces: ",,"},
			wantNsCEL: `namespace.name in []`, wantSaCEL: `namespace.name in []`, wantNames: []string{},
		},
		"exists and does-not-exist compile to key tests": {
			spec: tcrv1.ImagePullSecretSpec{ServiceAccountSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: metav1.LabelSelectorOpExists}, {Key: "b", Operator: metav1.LabelSelectorOpDoesNotExist},
			}}},
			wantNsCEL: "true", wantSaCEL: `("a" in serviceAccount.labels) && !("b" in serviceAccount.labels)`, wantSaMetas: true,
		},
		"expressions are kept as written": {
			spec:      tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.name.startsWith("team-")`, ServiceAccountExpression: `serviceAccount.namespace == namespace.name`},
			wantNsCEL: `(namespace.name.startsWith("team-"))`, wantSaCEL: `(namespace.name.startsWith("team-")) && (serviceAccount.namespace == namespace.name)`,
			wantNsMeta: true, wantSaMetas: true,
		},
		"quotes and backslashes in names are escaped": {
			spec:      tcrv1.ImagePullSecretSpec{Namespaces: `a"b, c\d, é`},
			wantNsCEL: `namespace.name in ["a\"b", "c\\d", "\u00e9"]`, wantSaCEL: `namespace.name in ["a\"b", "c\\d", "\u00e9"]`,
			wantNames: []string{`a"b`, `c\d`, "é"},
		},
		"an invalid selector operator is refused": {
			spec:     tcrv1.ImagePullSecretSpec{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Like"}}}},
			wantErrs: []string{`spec.namespaceSelector.matchExpressions[0].operator: Invalid value: "Like": not a valid selector operator`},
		},
		"an In requirement without values is refused": {
			spec:     tcrv1.ImagePullSecretSpec{ServiceAccountSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpIn}}}},
			wantErrs: []string{`spec.serviceAccountSelector.matchExpressions[0].values: Required value: must be specified when ` + "`operator`" + ` is 'In' or 'NotIn'`},
		},
		"an invalid label value is refused": {
			spec:     tcrv1.ImagePullSecretSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a b"}}},
			wantErrs: []string{`spec.namespaceSelector.matchLabels: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
		},
		"an expression that does not parse is refused": {
			spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.name ==`},
			wantErrs: []string{"spec.namespaceExpression: Invalid value: \"namespace.name ==\": is not a valid CEL expression over namespace.name, namespace.labels and namespace.annotations: ERROR: <input>:1:18: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n" +
				" | namespace.name ==\n" +
				" | .................^"},
		},
		"a namespace expression cannot read the ServiceAccount": {
			spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `serviceAccount.name == "a"`},
			wantErrs: []string{"spec.namespaceExpression: Invalid value: \"serviceAccount.name == \\\"a\\\"\": is not a valid CEL expression over namespace.name, namespace.labels and namespace.annotations: ERROR: <input>:1:1: undeclared reference to 'serviceAccount' (in container '')\n" +
				" | serviceAccount.name == \"a\"\n" +
				" | ^"},
		},
		"an unknown field is refused": {
			spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.nmae == "a"`},
			wantErrs: []string{"spec.namespaceExpression: Invalid value: \"namespace.nmae == \\\"a\\\"\": is not a valid CEL expression over namespace.name, namespace.labels and namespace.annotations: ERROR: <input>:1:10: undefined field 'nmae'\n" +
				" | namespace.nmae == \"a\"\n" +
				" | .........^"},
		},
		"a non-boolean expression is refused": {
			spec:     tcrv1.ImagePullSecretSpec{ServiceAccountExpression: `serviceAccount.name`},
			wantErrs: []string{`spec.serviceAccountExpression: Invalid value: "serviceAccount.name": must evaluate to a bool but evaluates to string: compare the value, e.g. namespace.labels["env"] == "prod"`},
		},
		"an expression iterating over annotation values is too expensive": {
			spec:     tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.annotations.exists(k, namespace.annotations[k].contains("x"))`},
			wantErrs: []string{`spec.namespaceExpression: Invalid value: "namespace.annotations.exists(k, namespace.annotations[k].contains(\"x\"))": is too expensive: its estimated cost 1678275 exceeds the limit of 50000; simplify it, e.g. avoid iterating over labels or annotations`},
		},
		"a blank expression is refused": {
			spec:     tcrv1.ImagePullSecretSpec{NamespaceExpression: "  "},
			wantErrs: []string{`spec.namespaceExpression: Invalid value: "  ": must be a CEL expression or left out: remove the field to select without an expression`},
		},
		"an overlong expression is refused": {
			spec:     tcrv1.ImagePullSecretSpec{NamespaceExpression: strings.Repeat("true && ", 600) + "true"},
			wantErrs: []string{`spec.namespaceExpression: Too long: may not be more than 4096 bytes`},
		},
		"invalid UTF-8 in a list is refused": {
			spec:     tcrv1.ImagePullSecretSpec{Namespaces: "a\xffb"},
			wantErrs: []string{`spec.namespaces: Invalid value: must be valid UTF-8 text`},
		},
		"every broken field is reported at once": {
			spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: "1", ServiceAccountExpression: "2"},
			wantErrs: []string{
				`spec.namespaceExpression: Invalid value: "1": must evaluate to a bool but evaluates to int: compare the value, e.g. namespace.labels["env"] == "prod"`,
				`spec.serviceAccountExpression: Invalid value: "2": must evaluate to a bool but evaluates to int: compare the value, e.g. namespace.labels["env"] == "prod"`,
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r, errs := Compile(&tt.spec)
			if tt.wantErrs != nil {
				require.Nil(t, r)
				got := make([]string, len(errs))
				for i, e := range errs {
					got[i] = e.Error()
				}
				assert.Equal(t, tt.wantErrs, got)
				return
			}
			require.Empty(t, errs)
			assert.Equal(t, tt.wantNsCEL, r.NamespaceCEL())
			assert.Equal(t, tt.wantSaCEL, r.ServiceAccountCEL())
			names, all := r.NamespaceNames()
			assert.Equal(t, tt.wantNames == nil, all)
			if tt.wantNames != nil {
				assert.Equal(t, tt.wantNames, names)
			}
			assert.Equal(t, tt.wantNsMeta, r.ReadsNamespaceMetadata())
			assert.Equal(t, tt.wantSaMetas, r.ReadsServiceAccountMetadata())
		})
	}
}

func TestCompileNilSpec(t *testing.T) {
	r, errs := Compile(nil)
	assert.Nil(t, r)
	require.Len(t, errs, 1)
	assert.Equal(t, "spec: Required value: set spec.namespaces, spec.serviceAccounts and spec.docker", errs[0].Error())
}

func ns(name string, labels map[string]string) Namespace {
	return Namespace{Name: name, Labels: labels}
}

func TestMatchNamespace(t *testing.T) {
	teamA := map[string]string{"team": "a", "env": "prod"}
	tests := map[string]struct {
		spec    tcrv1.ImagePullSecretSpec
		ns      Namespace
		want    bool
		wantErr string
	}{
		"a star matches any namespace":             {spec: tcrv1.ImagePullSecretSpec{Namespaces: "*"}, ns: ns("anything", nil), want: true},
		"an empty list matches any namespace":      {spec: tcrv1.ImagePullSecretSpec{}, ns: ns("default", nil), want: true},
		"a listed namespace matches":               {spec: tcrv1.ImagePullSecretSpec{Namespaces: "dev, prod"}, ns: ns("prod", nil), want: true},
		"an unlisted namespace does not match":     {spec: tcrv1.ImagePullSecretSpec{Namespaces: "dev, prod"}, ns: ns("staging", nil), want: false},
		"names match exactly, not by prefix":       {spec: tcrv1.ImagePullSecretSpec{Namespaces: "dev"}, ns: ns("dev2", nil), want: false},
		"a glob is an exact name that never hits":  {spec: tcrv1.ImagePullSecretSpec{Namespaces: "dev-*"}, ns: ns("dev-1", nil), want: false},
		"an excluded namespace does not match":     {spec: tcrv1.ImagePullSecretSpec{Namespaces: "*", ExcludeNamespaces: "kube-system"}, ns: ns("kube-system", nil), want: false},
		"exclusion wins over the list":             {spec: tcrv1.ImagePullSecretSpec{Namespaces: "dev", ExcludeNamespaces: " dev "}, ns: ns("dev", nil), want: false},
		"a star in exclusions excludes nothing":    {spec: tcrv1.ImagePullSecretSpec{ExcludeNamespaces: "*"}, ns: ns("dev", nil), want: true},
		"a matching selector matches":              {spec: tcrv1.ImagePullSecretSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}, ns: ns("x", teamA), want: true},
		"a non-matching selector does not match":   {spec: tcrv1.ImagePullSecretSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}}, ns: ns("x", teamA), want: false},
		"a selector does not match without labels": {spec: tcrv1.ImagePullSecretSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}, ns: ns("x", nil), want: false},
		"an empty selector matches everything":     {spec: tcrv1.ImagePullSecretSpec{NamespaceSelector: &metav1.LabelSelector{}}, ns: ns("x", nil), want: true},
		"NotIn matches a namespace without the key": {spec: tcrv1.ImagePullSecretSpec{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "env", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"dev"}}}}}, ns: ns("x", nil), want: true},
		"the list and the selector must both hold": {spec: tcrv1.ImagePullSecretSpec{Namespaces: "y", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}, ns: ns("x", teamA), want: false},
		"a true expression matches":                {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.name.startsWith("team-")`}, ns: ns("team-a", nil), want: true},
		"a false expression does not match":        {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.name.startsWith("team-")`}, ns: ns("dev", nil), want: false},
		"an expression reads labels":               {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.labels["env"] == "prod"`}, ns: ns("x", teamA), want: true},
		"an expression reads annotations": {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.annotations["tcr/pull"] == "yes"`},
			ns: Namespace{Name: "x", Annotations: map[string]string{"tcr/pull": "yes"}}, want: true},
		"has() tests a field of the namespace":              {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `has(namespace.labels) && has(namespace.name)`}, ns: ns("x", nil), want: true},
		"an optional label read falls back":                 {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.labels[?"env"].orValue("none") == "none"`}, ns: ns("x", nil), want: true},
		"labels can be iterated":                            {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.labels.exists(k, k.startsWith("team"))`}, ns: ns("x", map[string]string{"team": "a"}), want: true},
		"the name can be compared to a list":                {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.name in ["a", "x"]`}, ns: ns("x", nil), want: true},
		"an expression may end with a comment":              {spec: tcrv1.ImagePullSecretSpec{Namespaces: "x", NamespaceExpression: "namespace.name == \"x\" // only x"}, ns: ns("x", nil), want: true},
		"an expression may test for a key":                  {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `"env" in namespace.labels`}, ns: ns("x", nil), want: false},
		"the Kubernetes CEL libraries are available":        {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.name.matches("^team-[a-z]+$")`}, ns: ns("team-abc", nil), want: true},
		"a list filters before the expression is evaluated": {spec: tcrv1.ImagePullSecretSpec{Namespaces: "dev", NamespaceExpression: `namespace.labels["env"] == "prod"`}, ns: ns("other", nil), want: false},
		"a missing label key is an evaluation error": {spec: tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.labels["env"] == "prod"`}, ns: ns("x", nil),
			wantErr: `namespace "x": spec.namespaceExpression: no such key: env`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r, errs := Compile(&tt.spec)
			require.Empty(t, errs)
			got, err := r.MatchNamespace(tt.ns)
			ref, refErr := r.MatchNamespaceCEL(tt.ns)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				assert.False(t, got)
				require.Error(t, refErr, "the reference program must fail too")
				return
			}
			require.NoError(t, err)
			require.NoError(t, refErr)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.want, ref, "the reference CEL program must agree")
		})
	}
}

func TestMatchServiceAccount(t *testing.T) {
	tests := map[string]struct {
		spec    tcrv1.ImagePullSecretSpec
		ns      Namespace
		sa      ServiceAccount
		want    bool
		wantErr string
	}{
		"a star matches every ServiceAccount":   {spec: tcrv1.ImagePullSecretSpec{ServiceAccounts: "*"}, ns: ns("dev", nil), sa: ServiceAccount{Name: "x"}, want: true},
		"a listed ServiceAccount matches":       {spec: tcrv1.ImagePullSecretSpec{ServiceAccounts: "default, builder"}, ns: ns("dev", nil), sa: ServiceAccount{Name: "builder"}, want: true},
		"an unlisted ServiceAccount does not":   {spec: tcrv1.ImagePullSecretSpec{ServiceAccounts: "default"}, ns: ns("dev", nil), sa: ServiceAccount{Name: "builder"}, want: false},
		"dotted ServiceAccount names are exact": {spec: tcrv1.ImagePullSecretSpec{ServiceAccounts: "a.b"}, ns: ns("dev", nil), sa: ServiceAccount{Name: "a.b"}, want: true},
		"a ServiceAccount outside a target namespace does not match": {spec: tcrv1.ImagePullSecretSpec{Namespaces: "prod", ServiceAccounts: "*"},
			ns: ns("dev", nil), sa: ServiceAccount{Name: "default"}, want: false},
		"a ServiceAccount selector reads ServiceAccount labels": {spec: tcrv1.ImagePullSecretSpec{ServiceAccountSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ci": "true"}}},
			ns: ns("dev", map[string]string{"ci": "true"}), sa: ServiceAccount{Name: "x"}, want: false},
		"an expression sees the ServiceAccount and its namespace": {spec: tcrv1.ImagePullSecretSpec{ServiceAccountExpression: `serviceAccount.namespace == namespace.name && namespace.labels["team"] == serviceAccount.labels["team"]`},
			ns: ns("dev", map[string]string{"team": "a"}), sa: ServiceAccount{Name: "x", Labels: map[string]string{"team": "a"}}, want: true},
		"an expression can read ServiceAccount annotations": {spec: tcrv1.ImagePullSecretSpec{ServiceAccountExpression: `!("tcr/skip" in serviceAccount.annotations)`},
			ns: ns("dev", nil), sa: ServiceAccount{Name: "x", Annotations: map[string]string{"tcr/skip": ""}}, want: false},
		"a ServiceAccount of another namespace is an error": {spec: tcrv1.ImagePullSecretSpec{}, ns: ns("dev", nil), sa: ServiceAccount{Name: "x", Namespace: "prod"},
			wantErr: `serviceAccount prod/x is not in namespace "dev"`},
		"an evaluation error names the ServiceAccount": {spec: tcrv1.ImagePullSecretSpec{ServiceAccountExpression: `serviceAccount.labels["team"] == "a"`}, ns: ns("dev", nil), sa: ServiceAccount{Name: "x"},
			wantErr: `serviceAccount dev/x: spec.serviceAccountExpression: no such key: team`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r, errs := Compile(&tt.spec)
			require.Empty(t, errs)
			got, err := r.MatchServiceAccount(tt.ns, tt.sa)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				assert.False(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			ref, err := r.MatchServiceAccountCEL(tt.ns, tt.sa)
			require.NoError(t, err)
			assert.Equal(t, tt.want, ref, "the reference CEL program must agree")
		})
	}
}

func TestNilRule(t *testing.T) {
	var r *Rule
	_, err := r.MatchNamespace(ns("x", nil))
	require.EqualError(t, err, "no compiled rule: the ImagePullSecret did not compile")
	_, err = r.MatchServiceAccount(ns("x", nil), ServiceAccount{Name: "y"})
	require.EqualError(t, err, "no compiled rule: the ImagePullSecret did not compile")
}

func validSpec() tcrv1.ImagePullSecretSpec {
	return tcrv1.ImagePullSecretSpec{
		Namespaces: "*", ServiceAccounts: "*",
		Docker: tcrv1.DockerCredential{Server: "registry.example.com", Username: "u", Password: "s3cret"},
	}
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		edit         func(*tcrv1.ImagePullSecretSpec)
		wantErrs     []string
		wantWarnings []string
	}{
		"the original doc's sample is valid": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker = tcrv1.DockerCredential{Server: "fanjiankong-bj.tencentcloudcr.com", Username: "100012345678", Password: "eyJhbGciOi"}
		}},
		"a list of valid names is valid": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Namespaces = "dev, prod"
			s.ServiceAccounts = "default,builder.v2"
		}},
		"a host with a port is valid":                   {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "registry.example.com:5000" }},
		"an IPv4 address with a port is valid":          {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "10.0.0.1:5000" }},
		"a bracketed IPv6 address with a port is valid": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "[fd00::1]:5000" }},
		"a password from a Secret is valid": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker.Password = ""
			s.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{Name: "tcr-password", Key: "password"}
		}},
		"a glob is refused with a pointer to the selector": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "dev-*" },
			wantErrs: []string{`spec.namespaces: Invalid value: "dev-*": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression`}},
		"a regex is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "^prod" },
			wantErrs: []string{`spec.namespaces: Invalid value: "^prod": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression`}},
		"a ServiceAccount glob points to the ServiceAccount selector": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.ServiceAccounts = "build?r" },
			wantErrs: []string{`spec.serviceAccounts: Invalid value: "build?r": is a pattern, and patterns are not supported: list exact names, or use spec.serviceAccountSelector or spec.serviceAccountExpression`}},
		"a star mixed with names is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "*, dev" },
			wantErrs: []string{`spec.namespaces: Invalid value: "*": selects every namespace and cannot be combined with names: use "*" alone or list names only`}},
		"a ServiceAccount star mixed with names is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.ServiceAccounts = "default,*" },
			wantErrs: []string{`spec.serviceAccounts: Invalid value: "*": selects every ServiceAccount and cannot be combined with names: use "*" alone or list names only`}},
		"empty entries are refused once": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "a,,b," },
			wantErrs: []string{`spec.namespaces: Invalid value: "": entry 2 is empty: remove the extra comma`}},
		"an uppercase namespace name is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "Dev" },
			wantErrs: []string{`spec.namespaces: Invalid value: "Dev": is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
		"a dotted namespace name is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "a.b" },
			wantErrs: []string{`spec.namespaces: Invalid value: "a.b": is not a valid namespace name: must not contain dots`}},
		"a ServiceAccount name with a space is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.ServiceAccounts = "my sa" },
			wantErrs: []string{`spec.serviceAccounts: Invalid value: "my sa": is not a valid ServiceAccount name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`}},
		"a star in exclusions is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.ExcludeNamespaces = "*" },
			wantErrs: []string{`spec.excludeNamespaces: Invalid value: "*": would exclude every namespace: list the exact names to exclude`}},
		"a pattern in exclusions is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.ExcludeNamespaces = "kube-*" },
			wantErrs: []string{`spec.excludeNamespaces: Invalid value: "kube-*": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression`}},
		"duplicates are admitted with a warning": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "dev, prod, dev"; s.ServiceAccounts = "a,a" },
			wantWarnings: []string{`spec.namespaces: "dev" is listed more than once; the duplicate is ignored`, `spec.serviceAccounts: "a" is listed more than once; the duplicate is ignored`}},
		"a listed and excluded namespace is admitted with a warning": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "dev, prod"; s.ExcludeNamespaces = "prod" },
			wantWarnings: []string{`spec.namespaces: "prod" is also listed in spec.excludeNamespaces, so it is excluded`}},
		"a missing server is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = " " },
			wantErrs: []string{`spec.docker.server: Required value: set the registry host name, e.g. registry.example.com or registry.example.com:5000`}},
		"a server with a scheme is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "https://registry.example.com/v2" },
			wantErrs: []string{`spec.docker.server: Invalid value: "https://registry.example.com/v2": must be a host name without a scheme: write "registry.example.com"`}},
		"a server with a path is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "registry.example.com/team" },
			wantErrs: []string{`spec.docker.server: Invalid value: "registry.example.com/team": must be a host name without a path: write "registry.example.com" and put repository paths in image names`}},
		"a server with spaces is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "registry example.com" },
			wantErrs: []string{`spec.docker.server: Invalid value: "registry example.com": must not contain spaces: write the host name only, e.g. registry.example.com or registry.example.com:5000`}},
		"a server with a bad port is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "registry.example.com:99999" },
			wantErrs: []string{`spec.docker.server: Invalid value: "registry.example.com:99999": has an invalid port "99999": use a port from 1 to 65535`}},
		"a server with a named port is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "registry.example.com:https" },
			wantErrs: []string{`spec.docker.server: Invalid value: "registry.example.com:https": has an invalid port "https": use a port from 1 to 65535`}},
		"a server with an empty port is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "registry.example.com:" },
			wantErrs: []string{`spec.docker.server: Invalid value: "registry.example.com:": has an invalid port "": use a port from 1 to 65535`}},
		"a server that is not a host name is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Server = "registry_1.example.com" },
			wantErrs: []string{`spec.docker.server: Invalid value: "registry_1.example.com": "registry_1.example.com" is not a valid host name or IP address: use a DNS name, e.g. registry.example.com or registry.example.com:5000`}},
		"an empty username is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Username = "  " },
			wantErrs: []string{`spec.docker.username: Required value: set the registry user name`}},
		"a blank password is refused without echoing it": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Password = " \t" },
			wantErrs: []string{`spec.docker.password: Required value: set the registry password or token, or spec.docker.passwordSecretRef to read it from a Secret in the controller's namespace`}},
		"a password and a Secret reference together are refused": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{Name: "p", Key: "k"}
		}, wantErrs: []string{`spec.docker.password: Forbidden: set either spec.docker.password or spec.docker.passwordSecretRef, not both`}},
		"a Secret reference without name or key is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker.Password = ""
			s.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{}
		}, wantErrs: []string{
			`spec.docker.passwordSecretRef.name: Required value: name the Secret, in the controller's namespace, that holds the password`,
			`spec.docker.passwordSecretRef.key: Required value: name the key of that Secret that holds the password`,
		}},
		"a Secret reference with invalid names is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker.Password = ""
			s.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{Name: "My_Secret", Key: "a/b"}
		}, wantErrs: []string{
			`spec.docker.passwordSecretRef.name: Invalid value: "My_Secret": is not a valid Secret name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			`spec.docker.passwordSecretRef.key: Invalid value: "a/b": is not a valid Secret key: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`,
		}},
		"an empty namespace list is admitted with a warning that it selects every namespace": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = " " },
			wantWarnings: []string{`spec.namespaces is empty, which selects every namespace, kube-system included, as "*" does: write "*" to say so, or list the namespaces`}},
		"an omitted namespace list is admitted with the same warning": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = ""; s.ExcludeNamespaces = "kube-system" },
			wantWarnings: []string{`spec.namespaces is empty, which selects every namespace, kube-system included, as "*" does: write "*" to say so, or list the namespaces`}},
		"an instance token replaces the user name and password": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker.Username, s.Docker.Password = "", ""
			s.Docker.InstanceToken = &tcrv1.InstanceToken{RegistryID: "tcr-abcd1234", Region: "ap-guangzhou", Type: tcrv1.InstanceTokenLongTerm,
				APIKeySecretRef: &tcrv1.SecretReference{Name: "tcr-api-key"}}
		}},
		"an instance token with a password is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker.InstanceToken = &tcrv1.InstanceToken{RegistryID: "tcr-abcd1234", Region: "ap-guangzhou"}
		}, wantErrs: []string{`spec.docker.instanceToken: Forbidden: set either spec.docker.instanceToken or spec.docker.username with spec.docker.password or spec.docker.passwordSecretRef, not both`}},
		"an instance token with a password Secret is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker.Username, s.Docker.Password = "", ""
			s.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{Name: "p", Key: "k"}
			s.Docker.InstanceToken = &tcrv1.InstanceToken{RegistryID: "tcr-abcd1234", Region: "ap-guangzhou"}
		}, wantErrs: []string{`spec.docker.instanceToken: Forbidden: set either spec.docker.instanceToken or spec.docker.username with spec.docker.password or spec.docker.passwordSecretRef, not both`}},
		"an instance token without instance, with a bad region, type and key Secret is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Docker.Username, s.Docker.Password = "", ""
			s.Docker.InstanceToken = &tcrv1.InstanceToken{Region: "Guangzhou", Type: "Forever", APIKeySecretRef: &tcrv1.SecretReference{Name: "Key_1"}}
		}, wantErrs: []string{
			`spec.docker.instanceToken.registryId: Required value: set it, e.g. tcr-xxxxxxxx`,
			`spec.docker.instanceToken.region: Invalid value: "Guangzhou": must be lower-case letters, digits and '-', at most 64, e.g. ap-guangzhou`,
			`spec.docker.instanceToken.type: Unsupported value: "Forever": supported values: "Temporary", "LongTerm"`,
			`spec.docker.instanceToken.apiKeySecretRef.name: Invalid value: "Key_1": is not a valid Secret name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
		}},
		"an unknown delivery is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Delivery = "Email" },
			wantErrs: []string{`spec.delivery: Unsupported value: "Email": supported values: "Secrets", "CredentialProvider", "Both"`}},
		"a delivery by the credential provider is admitted": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Delivery = tcrv1.DeliveryCredentialProvider }},
		"an unknown rotation policy is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.RotationPolicy = "Later" },
			wantErrs: []string{`spec.rotationPolicy: Unsupported value: "Later": supported values: "Verified", "Immediate"`}},
		"a user name with a colon is refused": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Docker.Username = "team:robot" },
			wantErrs: []string{`spec.docker.username: Invalid value: "team:robot": must not contain ":": the Secret's auth field is username:password, and a ":" in the user name would make it ambiguous`}},
		"an entry longer than a message quotes is cut": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.Namespaces = "ok," + strings.Repeat("x", 70) + "*" },
			wantErrs: []string{`spec.namespaces: Invalid value: "` + strings.Repeat("x", 64) + `...": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression`}},
		"each error names only its own entry": {edit: func(s *tcrv1.ImagePullSecretSpec) {
			s.Namespaces = "good, Bad, also-good, ,x_y"
			s.ServiceAccounts = "default,*"
		},
			wantErrs: []string{
				`spec.namespaces: Invalid value: "Bad": is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
				`spec.namespaces: Invalid value: "": entry 4 is empty: remove the extra comma`,
				`spec.namespaces: Invalid value: "x_y": is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
				`spec.serviceAccounts: Invalid value: "*": selects every ServiceAccount and cannot be combined with names: use "*" alone or list names only`,
			}},
		"compile errors are admission errors": {edit: func(s *tcrv1.ImagePullSecretSpec) { s.NamespaceExpression = "namespace.name" },
			wantErrs: []string{`spec.namespaceExpression: Invalid value: "namespace.name": must evaluate to a bool but evaluates to string: compare the value, e.g. namespace.labels["env"] == "prod"`}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			spec := validSpec()
			tt.edit(&spec)
			errs, warnings := Validate(&spec)
			got := make([]string, len(errs))
			for i, e := range errs {
				got[i] = e.Error()
				assert.NotContains(t, e.Error(), "s3cret", "no message may contain the password")
			}
			if tt.wantErrs == nil {
				assert.Empty(t, got)
			} else {
				assert.Equal(t, tt.wantErrs, got)
			}
			assert.Equal(t, tt.wantWarnings, warnings)
		})
	}
}

func TestCache(t *testing.T) {
	c := NewCache()
	ips := &tcrv1.ImagePullSecret{Spec: tcrv1.ImagePullSecretSpec{Namespaces: "dev"}}
	ips.UID, ips.Generation = types.UID("uid-1"), 1

	first, errs := c.Get(ips)
	require.Empty(t, errs)
	again, _ := c.Get(ips)
	assert.Same(t, first, again, "the same generation must not be recompiled")

	ips.Spec.Namespaces = "prod"
	ips.Generation = 2
	second, _ := c.Get(ips)
	assert.NotSame(t, first, second)
	ok, err := second.MatchNamespace(ns("prod", nil))
	require.NoError(t, err)
	assert.True(t, ok, "a new generation must be compiled from the new spec")

	ips.Spec.NamespaceExpression = "1"
	ips.Generation = 3
	r, errs := c.Get(ips)
	assert.Nil(t, r)
	require.Len(t, errs, 1)
	_, errs2 := c.Get(ips)
	assert.Equal(t, errs, errs2, "compile errors are cached too")
	assert.Equal(t, 1, c.Len())

	c.Forget(ips.UID)
	assert.Equal(t, 0, c.Len())

	noUID := &tcrv1.ImagePullSecret{}
	_, errs = c.Get(noUID)
	require.Empty(t, errs)
	assert.Equal(t, 0, c.Len(), "objects without a UID are not cached")
}

func TestCacheConcurrentUse(t *testing.T) {
	c := NewCache()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				ips := &tcrv1.ImagePullSecret{Spec: tcrv1.ImagePullSecretSpec{Namespaces: fmt.Sprintf("ns-%d", j%5)}}
				ips.UID, ips.Generation = types.UID(fmt.Sprintf("uid-%d", j%5)), int64(1+i%2)
				r, errs := c.Get(ips)
				if assert.Empty(t, errs) {
					_, err := r.MatchNamespace(ns("ns-1", nil))
					assert.NoError(t, err)
				}
				if j%7 == 0 {
					c.Forget(ips.UID)
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, c.Len(), 5)
}

// TestOriginalSemanticsProperty checks, on random lists and names, that for specs using only the
// original fields the compiled rule (both the plan and the reference CEL program) says exactly
// what a direct reading of the comma lists says.
func TestOriginalSemanticsProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"dev", "prod", "a", "b", "kube-system", "*", "", " ", "dev ", " prod", "x.y"}
	randomList := func() string {
		n := rng.IntN(5)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return strings.Join(parts, ",")
	}
	// direct is the original product's reading of a list.
	direct := func(list, name string) bool {
		if l := strings.TrimSpace(list); l == "" || l == "*" {
			return true
		}
		for _, e := range strings.Split(list, ",") {
			if strings.TrimSpace(e) == name {
				return true
			}
		}
		return false
	}
	for range 500 {
		spec := tcrv1.ImagePullSecretSpec{Namespaces: randomList(), ServiceAccounts: randomList()}
		r, errs := Compile(&spec)
		require.Empty(t, errs, "spec %+v", spec)
		for range 10 {
			nsName := strings.TrimSpace(alphabet[rng.IntN(len(alphabet))])
			saName := strings.TrimSpace(alphabet[rng.IntN(len(alphabet))])
			if nsName == "" || saName == "" {
				continue // objects always have names
			}
			n, sa := Namespace{Name: nsName}, ServiceAccount{Name: saName}
			wantNs := direct(spec.Namespaces, nsName)
			wantSa := wantNs && direct(spec.ServiceAccounts, saName)

			got, err := r.MatchNamespace(n)
			require.NoError(t, err)
			ref, err := r.MatchNamespaceCEL(n)
			require.NoError(t, err)
			require.Equal(t, wantNs, got, "plan: namespaces %q, name %q", spec.Namespaces, nsName)
			require.Equal(t, wantNs, ref, "CEL: namespaces %q, name %q", spec.Namespaces, nsName)

			got, err = r.MatchServiceAccount(n, sa)
			require.NoError(t, err)
			ref, err = r.MatchServiceAccountCEL(n, sa)
			require.NoError(t, err)
			require.Equal(t, wantSa, got, "plan: %+v, %q/%q", spec, nsName, saName)
			require.Equal(t, wantSa, ref, "CEL: %+v, %q/%q", spec, nsName, saName)
		}
	}
}

func TestHideNamespace(t *testing.T) {
	tests := map[string]struct{ src, want string }{
		"a variable is renamed":                   {src: `namespace.name`, want: `__nmspc__.name`},
		"a field of the same name is kept":        {src: `serviceAccount.namespace == namespace.name`, want: `serviceAccount.namespace == __nmspc__.name`},
		"a field after spaces is kept":            {src: `serviceAccount . namespace`, want: `serviceAccount . namespace`},
		"strings are kept":                        {src: `"namespace" == 'namespace'`, want: `"namespace" == 'namespace'`},
		"escaped quotes do not end strings":       {src: `"a\"namespace" + namespace.name`, want: `"a\"namespace" + __nmspc__.name`},
		"triple-quoted strings are kept":          {src: `"""x"namespace""" == namespace.name`, want: `"""x"namespace""" == __nmspc__.name`},
		"raw strings end at their quote":          {src: `r"\" + namespace.name`, want: `r"\" + __nmspc__.name`},
		"raw bytes end at their quote":            {src: `br"\" == b"\\" || namespace.name == "a"`, want: `br"\" == b"\\" || __nmspc__.name == "a"`},
		"raw bytes in any order and case":         {src: `Rb'\' + bR'\' + namespace.name`, want: `Rb'\' + bR'\' + __nmspc__.name`},
		"bytes are not raw":                       {src: `b"\"" + namespace.name`, want: `b"\"" + __nmspc__.name`},
		"an identifier ending in r is no prefix":  {src: `for"\"namespace"`, want: `for"\"namespace"`},
		"comments are kept":                       {src: "// namespace\nnamespace.name", want: "// namespace\n__nmspc__.name"},
		"longer identifiers are kept":             {src: `namespaces + mynamespace`, want: `namespaces + mynamespace`},
		"backtick field names are kept":           {src: "x.`namespace`", want: "x.`namespace`"},
		"an unterminated string runs to the end":  {src: `"namespace`, want: `"namespace`},
		"text without the word is returned as is": {src: `true`, want: `true`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := hideNamespace(tt.src)
			assert.Equal(t, tt.want, got)
			assert.Len(t, got, len(tt.src), "columns must not move")
		})
	}
}

func TestQuote(t *testing.T) {
	env, err := sharedEnvs()
	require.NoError(t, err)
	for name, s := range map[string]string{
		"plain text":      "dev",
		"quotes":          `a"b'c`,
		"backslashes":     `a\b\\`,
		"control bytes":   "a\x00b\n\t",
		"non-ASCII":       "é日本",
		"astral runes":    "😀",
		"triple quotes":   `"""`,
		"raw-like prefix": `r"x"`,
	} {
		t.Run(name, func(t *testing.T) {
			prg, kind, msg := compileGenerated(env.namespace, quote(s)+" == namespace.name")
			require.Equal(t, compileOK, kind, msg)
			ok, err := prg.eval(&activation{ns: Namespace{Name: s}})
			require.NoError(t, err)
			assert.True(t, ok, "the literal %s must mean %q", quote(s), s)
		})
	}
}

// TestRuntimeCostLimit feeds an expression that the estimate admits (it assumes at most
// maxMapEntriesHint labels) a namespace with far more labels than that, and checks that the
// runtime limit stops the evaluation with an error instead of running on.
func TestRuntimeCostLimit(t *testing.T) {
	r, errs := Compile(&tcrv1.ImagePullSecretSpec{NamespaceExpression: `namespace.labels.exists(k, namespace.labels[k].contains("needle"))`})
	require.Empty(t, errs)

	// Real label values have at most 63 characters; these are far larger.
	many := map[string]string{}
	for i := range 1000 {
		many[fmt.Sprintf("k%d", i)] = strings.Repeat("hay", 10_000)
	}
	_, err := r.MatchNamespace(ns("big", many))
	require.EqualError(t, err, `namespace "big": spec.namespaceExpression: operation cancelled: actual cost limit exceeded`)

	ok, err := r.MatchNamespace(ns("small", map[string]string{"a": "a needle"}))
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestEstimatedCosts(t *testing.T) {
	tests := map[string]struct {
		expr    string
		wantErr bool
	}{
		"a name comparison is cheap":                    {expr: `namespace.name == "a"`},
		"a label lookup is cheap":                       {expr: `namespace.labels["env"] == "prod"`},
		"an optional label lookup is cheap":             {expr: `namespace.labels[?"env"].orValue("") == "prod"`},
		"comparing optional labels is cheap":            {expr: `serviceAccount.labels.?team.orValue("") == namespace.labels.?team.orValue("")`},
		"a regex on the name is cheap":                  {expr: `namespace.name.matches("^team-[a-z]+$")`},
		"one pass over labels is admitted":              {expr: `namespace.labels.exists(k, k.startsWith("team."))`},
		"a search in one annotation value is admitted":  {expr: `namespace.annotations["a"].contains("yes")`},
		"a search in every annotation value is refused": {expr: `namespace.annotations.exists(k, namespace.annotations[k].contains("x"))`, wantErr: true},
		"nested iteration is refused":                   {expr: `namespace.labels.all(k, namespace.labels.all(j, namespace.labels[j].contains(k)))`, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, errs := Compile(&tcrv1.ImagePullSecretSpec{ServiceAccountExpression: tt.expr})
			if tt.wantErr {
				require.Len(t, errs, 1)
				assert.Contains(t, errs[0].Error(), "is too expensive: its estimated cost")
			} else {
				assert.Empty(t, errs)
			}
		})
	}
}

// TestLongLists checks that rules listing many names compile (CEL's parser limits expressions
// to 100,000 code points, which a list of 10,000 namespaces exceeds when written out) and that
// the plan and the reference program agree on them.
func TestLongLists(t *testing.T) {
	names := make([]string, 10_000)
	for i := range names {
		names[i] = fmt.Sprintf("namespace-%d", i)
	}
	list := strings.Join(names, ", ")
	r, errs := Compile(&tcrv1.ImagePullSecretSpec{Namespaces: list, ExcludeNamespaces: "namespace-5", ServiceAccounts: list})
	require.Empty(t, errs)
	assert.True(t, strings.HasPrefix(r.NamespaceCEL(), `namespace.name in ["namespace-0", "namespace-1", `), "the shown source lists the names")
	for name, want := range map[string]bool{"namespace-0": true, "namespace-9999": true, "namespace-5": false, "namespace-10000": false} {
		got, err := r.MatchNamespace(ns(name, nil))
		require.NoError(t, err)
		ref, err := r.MatchNamespaceCEL(ns(name, nil))
		require.NoError(t, err)
		assert.Equal(t, want, got, name)
		assert.Equal(t, want, ref, name)
		gotSA, err := r.MatchServiceAccount(ns(name, nil), ServiceAccount{Name: "namespace-42"})
		require.NoError(t, err)
		refSA, err := r.MatchServiceAccountCEL(ns(name, nil), ServiceAccount{Name: "namespace-42"})
		require.NoError(t, err)
		assert.Equal(t, want, gotSA, name)
		assert.Equal(t, want, refSA, name)
	}
}

// TestSelectorsAndExclusionsProperty checks, on random selectors, exclusions and labels, that
// the compiled plan (labels.Selector, name sets) and the reference CEL program agree, and that
// both agree with the Kubernetes reading of the selector.
func TestSelectorsAndExclusionsProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	keys := []string{"env", "team", "tcr.tencentcloudcr.com/pull"}
	values := []string{"", "a", "b", "prod"}
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	randomLabels := func() map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			if rng.IntN(2) == 0 {
				m[k] = values[rng.IntN(len(values))]
			}
		}
		return m
	}
	for range 300 {
		sel := &metav1.LabelSelector{MatchLabels: map[string]string{}}
		for range rng.IntN(2) {
			sel.MatchLabels[keys[rng.IntN(len(keys))]] = values[rng.IntN(len(values))]
		}
		for range rng.IntN(3) {
			req := metav1.LabelSelectorRequirement{Key: keys[rng.IntN(len(keys))], Operator: ops[rng.IntN(len(ops))]}
			if req.Operator == metav1.LabelSelectorOpIn || req.Operator == metav1.LabelSelectorOpNotIn {
				req.Values = []string{values[rng.IntN(len(values))], values[rng.IntN(len(values))]}
			}
			sel.MatchExpressions = append(sel.MatchExpressions, req)
		}
		spec := tcrv1.ImagePullSecretSpec{NamespaceSelector: sel, ServiceAccountSelector: sel, ExcludeNamespaces: []string{"", "b", "a, b"}[rng.IntN(3)]}
		r, errs := Compile(&spec)
		require.Empty(t, errs, "%v", sel)
		kubeSel, err := metav1.LabelSelectorAsSelector(sel)
		require.NoError(t, err)
		for range 10 {
			n := Namespace{Name: []string{"a", "b", "c"}[rng.IntN(3)], Labels: randomLabels()}
			sa := ServiceAccount{Name: "x", Labels: randomLabels()}
			// Read the exclusions directly, not with the implementation's parser.
			excluded := false
			for _, e := range strings.Split(spec.ExcludeNamespaces, ",") {
				excluded = excluded || strings.TrimSpace(e) == n.Name
			}
			wantNs := !excluded && kubeSel.Matches(labels.Set(n.Labels))
			wantSa := wantNs && kubeSel.Matches(labels.Set(sa.Labels))

			got, err := r.MatchNamespace(n)
			require.NoError(t, err)
			ref, err := r.MatchNamespaceCEL(n)
			require.NoError(t, err)
			require.Equal(t, wantNs, got, "plan: %v on %v", sel, n)
			require.Equal(t, wantNs, ref, "CEL %s on %v", r.NamespaceCEL(), n)

			got, err = r.MatchServiceAccount(n, sa)
			require.NoError(t, err)
			ref, err = r.MatchServiceAccountCEL(n, sa)
			require.NoError(t, err)
			require.Equal(t, wantSa, got, "plan: %v on %v, %v", sel, n, sa)
			require.Equal(t, wantSa, ref, "CEL %s on %v, %v", r.ServiceAccountCEL(), n, sa)
		}
	}
}

// TestConcurrentMatch shares one rule between goroutines, as the controller's workers do; run
// with -race it checks that matching never writes shared state.
func TestConcurrentMatch(t *testing.T) {
	r, errs := Compile(&tcrv1.ImagePullSecretSpec{
		Namespaces: "a, b, c", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}},
		NamespaceExpression: `namespace.name != "c"`, ServiceAccountExpression: `serviceAccount.name.startsWith("s")`,
	})
	require.Empty(t, errs)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				n := ns([]string{"a", "b", "c", "d"}[(i+j)%4], map[string]string{"team": "x"})
				want := n.Name == "a" || n.Name == "b"
				got, err := r.MatchNamespace(n)
				assert.NoError(t, err)
				assert.Equal(t, want, got)
				got, err = r.MatchServiceAccount(n, ServiceAccount{Name: "sa"})
				assert.NoError(t, err)
				assert.Equal(t, want, got)
				ref, err := r.MatchNamespaceCEL(n)
				assert.NoError(t, err)
				assert.Equal(t, want, ref)
			}
		})
	}
	wg.Wait()
}

func TestServiceAccountMetadataReads(t *testing.T) {
	for name, tt := range map[string]struct {
		spec     tcrv1.ImagePullSecretSpec
		wantKeys []string
		wantAll  bool
	}{
		"names only":                {spec: tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "a"}},
		"namespace metadata only":   {spec: tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*", NamespaceExpression: `namespace.annotations["x"] == "y"`}},
		"empty selector reads none": {spec: tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*", ServiceAccountSelector: &metav1.LabelSelector{}}},
		"selector keys": {spec: tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*", ServiceAccountSelector: &metav1.LabelSelector{
			MatchLabels:      map[string]string{"team": "a"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist}},
		}}, wantKeys: []string{"team", "tier"}},
		"expression reads everything": {spec: tcrv1.ImagePullSecretSpec{Namespaces: "*", ServiceAccounts: "*", ServiceAccountSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
			ServiceAccountExpression: `dyn(serviceAccount)["annot" + "ations"].size() > 0`}, wantAll: true},
	} {
		t.Run(name, func(t *testing.T) {
			r, errs := Compile(&tt.spec)
			require.Empty(t, errs)
			keys, all := r.ServiceAccountMetadataReads()
			assert.ElementsMatch(t, tt.wantKeys, keys)
			assert.Equal(t, tt.wantAll, all)
			assert.Equal(t, len(tt.wantKeys) > 0 || tt.wantAll, len(keys) > 0 || all)
		})
	}
}
