// Package engine compiles ImagePullSecret rules into CEL programs and answers, for the controller
// and the admission webhook alike, which namespaces and ServiceAccounts a rule selects.
//
// Every part of a spec compiles to CEL: "*" to true, "a, b" to `namespace.name in ["a", "b"]`,
// a label selector to `"k" in namespace.labels && namespace.labels["k"] in [...]`, and the user's
// expressions as written. Those sources, joined with &&, are the rule's reference programs
// (NamespaceCEL, ServiceAccountCEL). Matching evaluates the same clauses in the same order, but
// the clauses generated from lists and selectors, whose CEL shape is fixed, are executed by a
// precompiled, allocation-free plan (a name set, a labels.Selector) instead of the CEL
// interpreter; only user expressions run in CEL on the hot path. Tests and every policy case
// check that the plan and the reference programs agree.
package engine

import (
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation/field"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// Namespace is what a rule may read of a namespace.
type Namespace struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// ServiceAccount is what a rule may read of a ServiceAccount.
type ServiceAccount struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
}

// Rule is a compiled ImagePullSecret spec. It is immutable and safe for concurrent use.
type Rule struct {
	// Namespace clauses, in evaluation order.
	nsAll      bool
	nsNames    nameSet
	excluded   nameSet
	nsSelector labels.Selector // nil when spec.namespaceSelector is unset
	nsExpr     *program        // nil when spec.namespaceExpression is unset

	// ServiceAccount clauses, evaluated after the namespace clauses.
	saAll      bool
	saNames    nameSet
	saSelector labels.Selector
	saExpr     *program

	// Reference programs: every clause above as one CEL program.
	nsRef, saRef *program
}

// Paths into the spec, shared by Compile and Validate so messages always name the same field.
var (
	specPath                     = field.NewPath("spec")
	namespacesPath               = specPath.Child("namespaces")
	serviceAccountsPath          = specPath.Child("serviceAccounts")
	excludeNamespacesPath        = specPath.Child("excludeNamespaces")
	namespaceSelectorPath        = specPath.Child("namespaceSelector")
	serviceAccountSelectorPath   = specPath.Child("serviceAccountSelector")
	namespaceExpressionPath      = specPath.Child("namespaceExpression")
	serviceAccountExpressionPath = specPath.Child("serviceAccountExpression")
	dockerPath                   = specPath.Child("docker")
)

// Compile compiles spec into a Rule, or returns errors whose paths point into the spec. It accepts
// everything the original product accepted (any comma list is a list of exact names); Validate
// adds the stricter admission checks.
func Compile(spec *tcrv1.ImagePullSecretSpec) (*Rule, field.ErrorList) {
	if spec == nil {
		return nil, field.ErrorList{field.Required(specPath, "set spec.namespaces, spec.serviceAccounts and spec.docker")}
	}
	envs, err := sharedEnvs()
	if err != nil {
		return nil, field.ErrorList{field.InternalError(specPath, err)}
	}
	var errs field.ErrorList
	r := &Rule{}
	// Clauses in the reference programs. Name lists are shown as literals but compiled as
	// references to variables bound at evaluation, so that compiling a rule costs the same
	// whether it lists ten names or ten thousand.
	var nsClauses, saClauses []clause

	// spec.namespaces
	if !validUTF8(spec.Namespaces) {
		errs = append(errs, notUTF8(namespacesPath))
	} else {
		var names []string
		r.nsAll, names = ParseList(spec.Namespaces)
		r.nsNames = newNameSet(names)
		if !r.nsAll {
			nsClauses = append(nsClauses, clause{"namespace.name in " + quoteList(names), "namespace.name in " + varNamespaceNames})
		}
	}

	// spec.excludeNamespaces
	if !validUTF8(spec.ExcludeNamespaces) {
		errs = append(errs, notUTF8(excludeNamespacesPath))
	} else if names := parseExclusions(spec.ExcludeNamespaces); len(names) > 0 {
		r.excluded = newNameSet(names)
		nsClauses = append(nsClauses, clause{"!(namespace.name in " + quoteList(names) + ")", "!(namespace.name in " + varExcludedNames + ")"})
	}

	// spec.namespaceSelector
	sel, src, selErrs := compileSelector(spec.NamespaceSelector, namespaceSelectorPath, "namespace.labels")
	errs = append(errs, selErrs...)
	if sel != nil {
		r.nsSelector = sel
		nsClauses = append(nsClauses, clause{src, src})
	}

	// spec.namespaceExpression
	if spec.NamespaceExpression != "" {
		prg, exprErrs := compileExpression(envs.namespace, spec.NamespaceExpression, namespaceExpressionPath, namespaceVars)
		errs = append(errs, exprErrs...)
		if prg != nil {
			r.nsExpr = prg
			nsClauses = append(nsClauses, userClause(spec.NamespaceExpression))
		}
	}

	// spec.serviceAccounts
	if !validUTF8(spec.ServiceAccounts) {
		errs = append(errs, notUTF8(serviceAccountsPath))
	} else {
		var names []string
		r.saAll, names = ParseList(spec.ServiceAccounts)
		r.saNames = newNameSet(names)
		if !r.saAll {
			saClauses = append(saClauses, clause{"serviceAccount.name in " + quoteList(names), "serviceAccount.name in " + varServiceAccountNames})
		}
	}

	// spec.serviceAccountSelector
	sel, src, selErrs = compileSelector(spec.ServiceAccountSelector, serviceAccountSelectorPath, "serviceAccount.labels")
	errs = append(errs, selErrs...)
	if sel != nil {
		r.saSelector = sel
		saClauses = append(saClauses, clause{src, src})
	}

	// spec.serviceAccountExpression
	if spec.ServiceAccountExpression != "" {
		prg, exprErrs := compileExpression(envs.serviceAccount, spec.ServiceAccountExpression, serviceAccountExpressionPath, serviceAccountVars)
		errs = append(errs, exprErrs...)
		if prg != nil {
			r.saExpr = prg
			saClauses = append(saClauses, userClause(spec.ServiceAccountExpression))
		}
	}

	if len(errs) > 0 {
		return nil, errs
	}

	// The reference programs are generated from parts that each compiled on their own, so they
	// compile too; they are not cost-checked because generated clauses are linear in the spec.
	var kind compileKind
	var msg string
	if r.nsRef, kind, msg = compileReference(envs.generatedNamespace, nsClauses); kind != compileOK {
		return nil, field.ErrorList{field.InternalError(specPath, fmt.Errorf("compiling the namespace rule: %s", msg))}
	}
	if r.saRef, kind, msg = compileReference(envs.generatedServiceAccount, append(nsClauses, saClauses...)); kind != compileOK {
		return nil, field.ErrorList{field.InternalError(specPath, fmt.Errorf("compiling the ServiceAccount rule: %s", msg))}
	}
	return r, nil
}

// parseExclusions reads spec.excludeNamespaces: a comma list of exact names where, unlike the
// selecting lists, "" excludes nothing (and "*" is just a name that no namespace can have).
func parseExclusions(list string) []string {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	var names []string
	for entry := range strings.SplitSeq(list, ",") {
		if entry = strings.TrimSpace(entry); entry != "" {
			names = append(names, entry)
		}
	}
	return names
}

// clause is one part of a reference program: its source as shown to people and as compiled.
type clause struct{ shown, compiled string }

// userClause wraps a user expression for a reference program. The newline before the closing
// parenthesis keeps a trailing // comment in the expression from swallowing it.
func userClause(expr string) clause {
	src := "(" + expr + ")"
	if strings.Contains(expr, "//") {
		src = "(" + expr + "\n)"
	}
	return clause{src, src}
}

// compileReference compiles the conjunction of clauses into a reference program.
func compileReference(env celEnv, clauses []clause) (*program, compileKind, string) {
	shown := make([]string, len(clauses))
	compiled := make([]string, len(clauses))
	for i, c := range clauses {
		shown[i], compiled[i] = c.shown, c.compiled
	}
	prg, kind, msg := compileGenerated(env, conjunction(compiled))
	if prg != nil {
		prg.source = conjunction(shown)
	}
	return prg, kind, msg
}

func conjunction(clauses []string) string {
	if len(clauses) == 0 {
		return "true"
	}
	return strings.Join(clauses, " && ")
}

// compileSelector converts sel into a labels.Selector and the equivalent CEL source over
// labelsExpr. It returns a nil selector when sel is nil or has errors.
func compileSelector(sel *metav1.LabelSelector, path *field.Path, labelsExpr string) (labels.Selector, string, field.ErrorList) {
	if sel == nil {
		return nil, "", nil
	}
	errs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, path)
	if len(errs) > 0 {
		return nil, "", errs
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, "", field.ErrorList{field.Invalid(path, sel.String(), err.Error())}
	}
	reqs, _ := s.Requirements()
	clauses := make([]string, 0, len(reqs))
	for _, req := range reqs {
		key := quote(req.Key())
		has := key + " in " + labelsExpr
		value := labelsExpr + "[" + key + "]"
		vals := quoteList(req.ValuesUnsorted())
		switch req.Operator() {
		case selection.In, selection.Equals, selection.DoubleEquals:
			clauses = append(clauses, "("+has+" && "+value+" in "+vals+")")
		case selection.NotIn, selection.NotEquals:
			clauses = append(clauses, "(!("+has+") || !("+value+" in "+vals+"))")
		case selection.Exists:
			clauses = append(clauses, "("+has+")")
		case selection.DoesNotExist:
			clauses = append(clauses, "!("+has+")")
		default:
			return nil, "", field.ErrorList{field.NotSupported(path.Child("matchExpressions"), req.Operator(),
				[]string{"In", "NotIn", "Exists", "DoesNotExist"})}
		}
	}
	return s, conjunction(clauses), nil
}

// Hints appended to expression errors, naming what each expression can read.
const (
	namespaceVars      = "namespace.name, namespace.labels and namespace.annotations"
	serviceAccountVars = "namespace (name, labels, annotations) and serviceAccount.name, serviceAccount.namespace, serviceAccount.labels and serviceAccount.annotations"
)

// compileExpression compiles a user expression, with errors fit for admission.
func compileExpression(env celEnv, expr string, path *field.Path, vars string) (*program, field.ErrorList) {
	if len(expr) > MaxExpressionLength {
		return nil, field.ErrorList{field.TooLong(path, "", MaxExpressionLength)}
	}
	if !validUTF8(expr) {
		return nil, field.ErrorList{field.Invalid(path, expr, msgUTF8)}
	}
	if strings.TrimSpace(expr) == "" {
		return nil, field.ErrorList{field.Invalid(path, expr, "must be a CEL expression or left out: remove the field to select without an expression")}
	}
	prg, kind, msg := compileCEL(env, expr)
	switch kind {
	case compileSyntax:
		return nil, field.ErrorList{field.Invalid(path, expr, "is not a valid CEL expression over "+vars+": "+msg)}
	case compileNotBool:
		return nil, field.ErrorList{field.Invalid(path, expr, "must evaluate to a bool but evaluates to "+msg+`: compare the value, e.g. namespace.labels["env"] == "prod"`)}
	case compileTooCostly:
		return nil, field.ErrorList{field.Invalid(path, expr, fmt.Sprintf("is too expensive: its estimated cost %s exceeds the limit of %d; simplify it, e.g. avoid iterating over labels or annotations", msg, MaxEstimatedCost))}
	}
	return prg, nil
}

const msgUTF8 = "must be valid UTF-8 text"

// notUTF8 is the error for a list that is not UTF-8. It does not quote the list, which may be
// long and cannot be shown as text anyway.
func notUTF8(path *field.Path) *field.Error {
	return field.Invalid(path, field.OmitValueType{}, msgUTF8)
}

// MatchNamespace reports whether ns is a target namespace of the rule. An error means a user
// expression failed to evaluate (e.g. it read a missing label key); the namespace then does not
// match.
func (r *Rule) MatchNamespace(ns Namespace) (bool, error) {
	if r == nil {
		return false, errNilRule
	}
	if !r.nsAll && !r.nsNames.has(ns.Name) {
		return false, nil
	}
	if r.excluded.has(ns.Name) {
		return false, nil
	}
	if r.nsSelector != nil && !r.nsSelector.Matches(labels.Set(ns.Labels)) {
		return false, nil
	}
	if r.nsExpr != nil {
		return r.evalNamespaceExpression(ns)
	}
	return true, nil
}

// evalNamespaceExpression is apart from MatchNamespace so that only rules with an expression pay
// for moving ns to the heap.
func (r *Rule) evalNamespaceExpression(ns Namespace) (bool, error) {
	ok, err := r.nsExpr.eval(&activation{ns: ns})
	if err != nil {
		return false, fmt.Errorf("namespace %q: spec.namespaceExpression: %w", ns.Name, err)
	}
	return ok, nil
}

// MatchServiceAccount reports whether sa, in namespace ns, is a target ServiceAccount of the
// rule; it includes the namespace match. sa.Namespace may be left empty; it then means ns.Name.
func (r *Rule) MatchServiceAccount(ns Namespace, sa ServiceAccount) (bool, error) {
	if r == nil {
		return false, errNilRule
	}
	if sa.Namespace == "" {
		sa.Namespace = ns.Name
	} else if sa.Namespace != ns.Name {
		return false, fmt.Errorf("serviceAccount %s/%s is not in namespace %q", sa.Namespace, sa.Name, ns.Name)
	}
	if ok, err := r.MatchNamespace(ns); !ok || err != nil {
		return false, err
	}
	if !r.saAll && !r.saNames.has(sa.Name) {
		return false, nil
	}
	if r.saSelector != nil && !r.saSelector.Matches(labels.Set(sa.Labels)) {
		return false, nil
	}
	if r.saExpr != nil {
		return r.evalServiceAccountExpression(ns, sa)
	}
	return true, nil
}

func (r *Rule) evalServiceAccountExpression(ns Namespace, sa ServiceAccount) (bool, error) {
	ok, err := r.saExpr.eval(&activation{ns: ns, sa: sa, hasSA: true})
	if err != nil {
		return false, fmt.Errorf("serviceAccount %s/%s: spec.serviceAccountExpression: %w", sa.Namespace, sa.Name, err)
	}
	return ok, nil
}

var errNilRule = errors.New("no compiled rule: the ImagePullSecret did not compile")

// MatchNamespaceCEL is MatchNamespace computed by the rule's reference program alone: the whole
// namespace rule as one CEL program. It is slower and exists to cross-check the compiled plan
// (policy suites run both).
func (r *Rule) MatchNamespaceCEL(ns Namespace) (bool, error) {
	if r == nil {
		return false, errNilRule
	}
	return r.nsRef.eval(&activation{ns: ns, rule: r})
}

// MatchServiceAccountCEL is MatchServiceAccount computed by the rule's reference program alone.
func (r *Rule) MatchServiceAccountCEL(ns Namespace, sa ServiceAccount) (bool, error) {
	if r == nil {
		return false, errNilRule
	}
	if sa.Namespace == "" {
		sa.Namespace = ns.Name
	}
	return r.saRef.eval(&activation{ns: ns, sa: sa, hasSA: true, rule: r})
}

// NamespaceCEL is the CEL source of the whole namespace rule, for display and debugging.
func (r *Rule) NamespaceCEL() string { return r.nsRef.source }

// ServiceAccountCEL is the CEL source of the whole ServiceAccount rule (namespace clauses
// included), for display and debugging.
func (r *Rule) ServiceAccountCEL() string { return r.saRef.source }

// NamespaceNames returns the exact names spec.namespaces lists, and all = true (with no names)
// when it selects every namespace. When all is false only the listed namespaces can match, so
// the controller can look them up by name instead of walking every namespace.
func (r *Rule) NamespaceNames() (names []string, all bool) {
	if r.nsAll {
		return nil, true
	}
	return append([]string{}, r.nsNames.names...), false
}

// ReadsNamespaceMetadata reports whether a verdict may depend on a namespace's labels or
// annotations (through namespaceSelector, namespaceExpression, or serviceAccountExpression, which
// sees the namespace too), i.e. whether a metadata change on a namespace can change a verdict.
// When false, only names matter and such updates can be ignored.
func (r *Rule) ReadsNamespaceMetadata() bool {
	return r.nsSelector != nil || r.nsExpr != nil || r.saExpr != nil
}

// ReadsServiceAccountMetadata reports whether the ServiceAccount verdict depends on a
// ServiceAccount's labels or annotations, i.e. whether such a change can change the verdict.
func (r *Rule) ReadsServiceAccountMetadata() bool { return r.saSelector != nil || r.saExpr != nil }

// ServiceAccountMetadataReads tells which ServiceAccount metadata a verdict may depend on, so
// that the controller's cache can drop the rest: all is true when serviceAccountExpression is
// set (an expression can reach any label or annotation, even through dyn(serviceAccount)[key]);
// otherwise labelKeys are the label keys serviceAccountSelector names, and annotations are never
// read. A rule that reads none returns (nil, false).
func (r *Rule) ServiceAccountMetadataReads() (labelKeys []string, all bool) {
	if r.saExpr != nil {
		return nil, true
	}
	if r.saSelector == nil {
		return nil, false
	}
	reqs, _ := r.saSelector.Requirements()
	for _, req := range reqs {
		labelKeys = append(labelKeys, req.Key())
	}
	return labelKeys, false
}
