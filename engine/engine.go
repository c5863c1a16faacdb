// Package engine compiles ImagePullSecret rules into CEL programs and answers, for the controller
// and the admission webhook alike, which namespaces and ServiceAccounts a rule selects.
//
// STUB: the interface below is fixed; the implementation is a placeholder until issue 3 lands.
package engine

import (
	"strings"

	"k8s.io/apimachinery/pkg/types"
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
	namespaces, serviceAccounts []string
}

// Compile compiles spec into a Rule, or returns errors whose paths point into the spec.
func Compile(spec *tcrv1.ImagePullSecretSpec) (*Rule, field.ErrorList) {
	return &Rule{namespaces: split(spec.Namespaces), serviceAccounts: split(spec.ServiceAccounts)}, nil
}

func split(list string) []string {
	if strings.TrimSpace(list) == "*" || strings.TrimSpace(list) == "" {
		return nil
	}
	var out []string
	for _, s := range strings.Split(list, ",") {
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

func in(list []string, name string) bool {
	if list == nil {
		return true
	}
	for _, s := range list {
		if s == name {
			return true
		}
	}
	return false
}

// MatchNamespace reports whether ns is a target namespace of the rule.
func (r *Rule) MatchNamespace(ns Namespace) (bool, error) { return in(r.namespaces, ns.Name), nil }

// MatchServiceAccount reports whether sa, in namespace ns, is a target ServiceAccount of the
// rule; it includes the namespace match.
func (r *Rule) MatchServiceAccount(ns Namespace, sa ServiceAccount) (bool, error) {
	return in(r.namespaces, ns.Name) && in(r.serviceAccounts, sa.Name), nil
}

// Cache holds compiled rules keyed by UID and generation, so a spec is compiled once per change.
// It is safe for concurrent use.
type Cache struct{}

// NewCache returns an empty Cache.
func NewCache() *Cache { return &Cache{} }

// Get returns the compiled rule of ips, compiling it when its UID or generation is new.
func (c *Cache) Get(ips *tcrv1.ImagePullSecret) (*Rule, field.ErrorList) { return Compile(&ips.Spec) }

// Forget drops the rule of a deleted ImagePullSecret.
func (c *Cache) Forget(uid types.UID) {}

// Validate checks spec for admission: errors refuse it, warnings admit it with a message.
func Validate(spec *tcrv1.ImagePullSecretSpec) (errs field.ErrorList, warnings []string) {
	_, errs = Compile(spec)
	return errs, nil
}
