package engine

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
	"k8s.io/apimachinery/pkg/util/version"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/library"
)

// Limits on user expressions. They are constants, not flags, so the webhook and the controller
// always agree on what is admissible.
const (
	// MaxExpressionLength is the longest namespaceExpression or serviceAccountExpression accepted,
	// in bytes. A rule is evaluated for every namespace and ServiceAccount on every relevant event,
	// so expressions are meant to be short predicates, not programs.
	MaxExpressionLength = 4096

	// MaxEstimatedCost is the highest worst-case cost, as estimated by the CEL checker with the
	// size hints below, of an expression that Compile accepts. It admits one pass over the
	// labels or annotations, or one search in an annotation value of the largest possible size
	// (256 KiB, estimated at about 26,000), and refuses nested iterations and searches in every
	// annotation value. It is ten times below RuntimeCostLimit so that an admitted expression
	// does not hit the runtime limit on real objects.
	MaxEstimatedCost = 50_000

	// RuntimeCostLimit bounds the cost of one evaluation of any program, whatever the input; an
	// evaluation that exceeds it fails with an error instead of burning CPU.
	RuntimeCostLimit = 500_000

	// maxMapEntriesHint is the size hint for labels and annotations maps used in cost estimation.
	// Kubernetes does not bound the number of labels, but 64 is far above what objects carry in
	// practice and keeps iterating macros (exists, all) honestly priced.
	maxMapEntriesHint = 64
	// maxNameHint is the longest object name (a DNS-1123 subdomain).
	maxNameHint = 253
	// maxLabelKeyHint is the longest label or annotation key: a 253-byte prefix, "/" and a
	// 63-byte name.
	maxLabelKeyHint = 317
	// maxLabelValueHint is the longest label value.
	maxLabelValueHint = 63
	// maxAnnotationValueHint is the longest annotation value: all annotations of an object
	// together are limited to 256 KiB.
	maxAnnotationValueHint = 256 * 1024
)

// Variable names visible to expressions.
const (
	varNamespace      = "namespace" // declared as hiddenNamespace, see ident.go
	varServiceAccount = "serviceAccount"

	// Variables of reference programs only, bound to the rule's name lists.
	varNamespaceNames      = "__namespaces__"
	varExcludedNames       = "__excluded__"
	varServiceAccountNames = "__serviceaccounts__"
)

// envs holds the two shared CEL environments: one where only `namespace` is declared (for
// namespace rules) and one that adds `serviceAccount` (for ServiceAccount rules). They are built
// once, on first use, because building a Kubernetes CEL environment costs milliseconds.
type envs struct {
	namespace, serviceAccount *cel.Env
	// generatedNamespace and generatedServiceAccount compile the reference programs, whose
	// source grows with the lists in the spec: they lift the parser's size limit, which exists to
	// bound what users type, not what Compile generates.
	generatedNamespace, generatedServiceAccount *cel.Env
}

var sharedEnvs = sync.OnceValues(buildEnvs)

func buildEnvs() (*envs, error) {
	str := apiservercel.StringType
	strMap := apiservercel.NewMapType(str, str, maxMapEntriesHint)
	nsType := apiservercel.NewObjectType("tcr.Namespace", map[string]*apiservercel.DeclField{
		"name":        apiservercel.NewDeclField("name", str, true, nil, nil),
		"labels":      apiservercel.NewDeclField("labels", strMap, true, nil, nil),
		"annotations": apiservercel.NewDeclField("annotations", strMap, true, nil, nil),
	})
	saType := apiservercel.NewObjectType("tcr.ServiceAccount", map[string]*apiservercel.DeclField{
		"name":        apiservercel.NewDeclField("name", str, true, nil, nil),
		"namespace":   apiservercel.NewDeclField("namespace", str, true, nil, nil),
		"labels":      apiservercel.NewDeclField("labels", strMap, true, nil, nil),
		"annotations": apiservercel.NewDeclField("annotations", strMap, true, nil, nil),
	})
	base := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	ver := version.MajorMinor(1, 0)
	nsSet, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: ver,
		DeclTypes:         []*apiservercel.DeclType{nsType},
		EnvOptions:        []cel.EnvOption{cel.Variable(hiddenNamespace, nsType.CelType())},
	})
	if err != nil {
		return nil, fmt.Errorf("building the namespace CEL environment: %w", err)
	}
	saSet, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: ver,
		DeclTypes:         []*apiservercel.DeclType{nsType, saType},
		EnvOptions: []cel.EnvOption{
			cel.Variable(hiddenNamespace, nsType.CelType()),
			cel.Variable(varServiceAccount, saType.CelType()),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("building the ServiceAccount CEL environment: %w", err)
	}
	e := &envs{namespace: nsSet.NewExpressionsEnv(), serviceAccount: saSet.NewExpressionsEnv()}
	stringList := cel.ListType(cel.StringType)
	unlimited := []cel.EnvOption{
		cel.ParserExpressionSizeLimit(math.MaxInt32),
		cel.Variable(varNamespaceNames, stringList),
		cel.Variable(varExcludedNames, stringList),
		cel.Variable(varServiceAccountNames, stringList),
	}
	if e.generatedNamespace, err = e.namespace.Extend(unlimited...); err != nil {
		return nil, fmt.Errorf("building the namespace CEL environment: %w", err)
	}
	if e.generatedServiceAccount, err = e.serviceAccount.Extend(unlimited...); err != nil {
		return nil, fmt.Errorf("building the ServiceAccount CEL environment: %w", err)
	}
	return e, nil
}

// sizeEstimator tells the CEL cost checker how large the declared variables can get, so that
// estimated costs are worst cases over real Kubernetes objects rather than "unbounded".
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(node checker.AstNode) *checker.SizeEstimate {
	path := node.Path()
	if len(path) < 2 || (path[0] != hiddenNamespace && path[0] != varServiceAccount) {
		return nil
	}
	size := func(max uint64) *checker.SizeEstimate { return &checker.SizeEstimate{Min: 0, Max: max} }
	switch path[1] {
	case "name", "namespace":
		if len(path) == 2 {
			return size(maxNameHint)
		}
	case "labels", "annotations":
		switch {
		case len(path) == 2:
			return size(maxMapEntriesHint)
		case len(path) == 3 && path[2] == "@keys":
			return size(maxLabelKeyHint)
		case len(path) == 3 && path[2] == "@values" && path[1] == "labels":
			return size(maxLabelValueHint)
		case len(path) == 3 && path[2] == "@values":
			return size(maxAnnotationValueHint)
		}
	}
	return nil
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// costEstimator prices the Kubernetes library functions at runtime and sizes our variables.
var costEstimator = &library.CostEstimator{SizeEstimator: sizeEstimator{}}

// staticEstimator is costEstimator plus result sizes for optional values, so that
// `namespace.labels[?"team"].orValue("") == "a"` is priced as a comparison of label values
// rather than of strings of unknown (unbounded) size.
type staticEstimator struct{ sizeEstimator }

func (staticEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if est := costEstimator.EstimateCallCost(function, overloadID, target, args); est != nil {
		return est
	}
	one := checker.CostEstimate{Min: 1, Max: 1}
	switch function {
	case "_[?_]", "_?._": // optional index and optional field selection on a map
		if len(args) == 2 {
			if size := (sizeEstimator{}).EstimateSize(pathNode{path: append(slices.Clone(args[0].Path()), "@values")}); size != nil {
				return &checker.CallEstimate{CostEstimate: one, ResultSize: size}
			}
		}
	case "orValue":
		if target != nil && len(args) == 1 {
			t, a := (*target).ComputedSize(), args[0].ComputedSize()
			if t != nil && a != nil {
				return &checker.CallEstimate{CostEstimate: one, ResultSize: &checker.SizeEstimate{Min: min(t.Min, a.Min), Max: max(t.Max, a.Max)}}
			}
		}
	case "value":
		if target != nil {
			if t := (*target).ComputedSize(); t != nil {
				return &checker.CallEstimate{CostEstimate: one, ResultSize: t}
			}
		}
	}
	return nil
}

// pathNode is a synthetic AST node that only carries a path, to ask sizeEstimator about it.
type pathNode struct {
	checker.AstNode
	path []string
}

func (n pathNode) Path() []string { return n.path }

// program is one compiled CEL predicate with the source it came from.
type program struct {
	source string
	prg    cel.Program
}

// errNotBool is returned when a program evaluates to something other than a bool, which the
// type checker rules out for well-typed expressions but dyn values could still produce.
var errNotBool = errors.New("expression did not evaluate to a bool")

// eval runs p against act under RuntimeCostLimit.
func (p *program) eval(act interpreter.Activation) (bool, error) {
	out, _, err := p.prg.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errNotBool
	}
	return b, nil
}

// compileKind distinguishes why compileCEL failed, so callers can build the right field error.
type compileKind int

const (
	compileOK compileKind = iota
	compileSyntax
	compileNotBool
	compileTooCostly
)

// compileCEL parses, checks and plans source in env. A non-empty message explains a failure in
// words fit for a user.
func compileCEL(env *cel.Env, source string) (*program, compileKind, string) {
	ast, iss := env.Compile(hideNamespace(source))
	if iss.Err() != nil {
		return nil, compileSyntax, unhideNamespace(strings.TrimSpace(iss.Err().Error()))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, compileNotBool, t.String()
	}
	est, err := env.EstimateCost(ast, staticEstimator{})
	if err != nil {
		return nil, compileSyntax, unhideNamespace(err.Error())
	}
	if est.Max > MaxEstimatedCost {
		return nil, compileTooCostly, fmt.Sprintf("%d", est.Max)
	}
	return plan(env, ast, source)
}

// quote renders s as a CEL string literal. Every rune outside printable ASCII is escaped, so the
// literal means exactly s whatever s holds; s must be valid UTF-8.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// quoteList renders names as a CEL list literal of strings.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// validUTF8 reports whether every string is valid UTF-8; CEL strings cannot hold anything else.
func validUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// celEnv is a shared, immutable CEL environment.
type celEnv = *cel.Env

// compileGenerated compiles source generated by Compile, under the same runtime limit as user
// expressions but without the estimated cost check.
func compileGenerated(env *cel.Env, source string) (*program, compileKind, string) {
	ast, iss := env.Compile(hideNamespace(source))
	if iss.Err() != nil {
		return nil, compileSyntax, unhideNamespace(iss.Err().Error())
	}
	return plan(env, ast, source)
}

// plan turns a checked ast into a program that runs under RuntimeCostLimit.
func plan(env *cel.Env, ast *cel.Ast, source string) (*program, compileKind, string) {
	prg, err := env.Program(ast,
		cel.CostLimit(RuntimeCostLimit),
		cel.CostTracking(costEstimator),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, compileSyntax, err.Error()
	}
	return &program{source: source, prg: prg}, compileOK, ""
}

// emptyMap stands in for nil labels or annotations, so expressions see an empty map, not null.
var emptyMap = map[string]string{}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return emptyMap
	}
	return m
}

// activation binds `namespace` and `serviceAccount` for one evaluation. It holds copies of the
// facts, so one evaluation costs one allocation for the bindings; the variables are objectVals
// that convert a field only when the expression reads it.
type activation struct {
	ns    Namespace
	sa    ServiceAccount
	hasSA bool
	// rule binds the name lists of reference programs; nil for user expressions.
	rule *Rule
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch {
	case name == hiddenNamespace:
		return objectVal{a: a, kind: namespaceObject}, true
	case name == varServiceAccount && a.hasSA:
		return objectVal{a: a, kind: serviceAccountObject}, true
	case a.rule != nil && name == varNamespaceNames:
		return a.rule.nsNames.names, true
	case a.rule != nil && name == varExcludedNames:
		return a.rule.excluded.names, true
	case a.rule != nil && name == varServiceAccountNames:
		return a.rule.saNames.names, true
	}
	return nil, false
}

type objectKind int

const (
	namespaceObject objectKind = iota
	serviceAccountObject
)

// objectVal is the CEL value of `namespace` or `serviceAccount`: an object whose fields are read
// straight from the activation, without building a map per evaluation.
type objectVal struct {
	a    *activation
	kind objectKind
}

var (
	_                        ref.Val            = objectVal{}
	_                        traits.Indexer     = objectVal{}
	_                        traits.FieldTester = objectVal{}
	namespaceObjectType                         = types.NewObjectType("tcr.Namespace")
	serviceAccountObjectType                    = types.NewObjectType("tcr.ServiceAccount")
)

// field returns the named field, or nil when the object has no such field.
func (v objectVal) field(name string) ref.Val {
	var fieldName, namespace string
	var labels, annotations map[string]string
	if v.kind == namespaceObject {
		fieldName, labels, annotations = v.a.ns.Name, v.a.ns.Labels, v.a.ns.Annotations
	} else {
		fieldName, namespace, labels, annotations = v.a.sa.Name, v.a.sa.Namespace, v.a.sa.Labels, v.a.sa.Annotations
	}
	switch name {
	case "name":
		return types.String(fieldName)
	case "namespace":
		if v.kind == serviceAccountObject {
			return types.String(namespace)
		}
	case "labels":
		return types.NewStringStringMap(types.DefaultTypeAdapter, orEmpty(labels))
	case "annotations":
		return types.NewStringStringMap(types.DefaultTypeAdapter, orEmpty(annotations))
	}
	return nil
}

// Get implements traits.Indexer: field selection.
func (v objectVal) Get(index ref.Val) ref.Val {
	if name, ok := index.(types.String); ok {
		if f := v.field(string(name)); f != nil {
			return f
		}
	}
	return types.NewErr("no such field: %v", index)
}

// IsSet implements traits.FieldTester, for has(): every declared field is always set.
func (v objectVal) IsSet(field ref.Val) ref.Val {
	if name, ok := field.(types.String); ok && v.field(string(name)) != nil {
		return types.True
	}
	return types.False
}

func (v objectVal) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("type conversion of %s to %v is not supported", v.Type().TypeName(), t)
}

func (v objectVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return v.Type().(*types.Type)
	}
	return types.NewErr("type conversion of %s to %s is not supported", v.Type().TypeName(), t.TypeName())
}

func (v objectVal) Equal(other ref.Val) ref.Val {
	o, ok := other.(objectVal)
	return types.Bool(ok && o.a == v.a && o.kind == v.kind)
}

func (v objectVal) Type() ref.Type {
	if v.kind == namespaceObject {
		return namespaceObjectType
	}
	return serviceAccountObjectType
}

func (v objectVal) Value() any {
	if v.kind == namespaceObject {
		return v.a.ns
	}
	return v.a.sa
}

func (a *activation) Parent() interpreter.Activation { return nil }
