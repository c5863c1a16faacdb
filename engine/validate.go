package engine

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// Validate checks spec for admission: errors refuse it, warnings admit it with a message. Errors
// are those of Compile plus stricter checks the original never made (names must be valid object
// names, no patterns, no empty entries, a well-formed registry host, a non-blank credential).
// No message ever contains the password.
func Validate(spec *tcrv1.ImagePullSecretSpec) (errs field.ErrorList, warnings []string) {
	_, errs = Compile(spec)
	if spec == nil {
		return errs, nil
	}
	for _, l := range []struct {
		path  *field.Path
		value string
		kind  listKind
	}{
		{namespacesPath, spec.Namespaces, namespaceList},
		{serviceAccountsPath, spec.ServiceAccounts, serviceAccountList},
		{excludeNamespacesPath, spec.ExcludeNamespaces, exclusionList},
	} {
		if !validUTF8(l.value) {
			continue // Compile reported it.
		}
		e, w := validateList(l.path, l.value, l.kind)
		errs = append(errs, e...)
		warnings = append(warnings, w...)
	}
	warnings = append(warnings, excludedAndListed(spec)...)
	errs = append(errs, validateDocker(&spec.Docker)...)
	return errs, warnings
}

type listKind int

const (
	namespaceList listKind = iota
	serviceAccountList
	exclusionList
)

// patternChars are characters of globs and regular expressions that no object name contains.
const patternChars = `*?[]{}()^$|+\`

func validateList(path *field.Path, list string, kind listKind) (field.ErrorList, []string) {
	trimmed := strings.TrimSpace(list)
	if trimmed == "" || (trimmed == All && kind != exclusionList) {
		return nil, nil
	}
	var errs field.ErrorList
	var warnings []string
	seen := map[string]bool{}
	emptyReported := false
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		switch {
		case entry == "":
			if !emptyReported {
				errs = append(errs, field.Invalid(path, list, "has an empty entry: remove the extra comma"))
				emptyReported = true
			}
		case entry == All && kind == exclusionList:
			errs = append(errs, field.Invalid(path, list, `"*" would exclude every namespace: list the exact names to exclude`))
		case entry == All:
			errs = append(errs, field.Invalid(path, list, fmt.Sprintf(`"*" selects every %s and cannot be combined with names: use "*" alone or list names only`, kind.noun())))
		case strings.ContainsAny(entry, patternChars):
			errs = append(errs, field.Invalid(path, list, fmt.Sprintf("%q is a pattern, and patterns are not supported: %s", entry, kind.patternHint())))
		default:
			var msgs []string
			if kind == serviceAccountList {
				msgs = validation.IsDNS1123Subdomain(entry)
			} else {
				msgs = validation.IsDNS1123Label(entry)
			}
			if len(msgs) > 0 {
				errs = append(errs, field.Invalid(path, list, fmt.Sprintf("%q is not a valid %s name: %s", entry, kind.noun(), strings.Join(msgs, "; "))))
				continue
			}
			if seen[entry] {
				warnings = append(warnings, fmt.Sprintf("%s: %q is listed more than once; the duplicate is ignored", path, entry))
			}
			seen[entry] = true
		}
	}
	return errs, warnings
}

func (k listKind) noun() string {
	if k == serviceAccountList {
		return "ServiceAccount"
	}
	return "namespace"
}

func (k listKind) patternHint() string {
	switch k {
	case serviceAccountList:
		return "list exact names, or use spec.serviceAccountSelector or spec.serviceAccountExpression"
	case exclusionList:
		return "list exact names, or use spec.namespaceSelector or spec.namespaceExpression"
	}
	return "list exact names, or use spec.namespaceSelector or spec.namespaceExpression"
}

// excludedAndListed warns about names that spec.namespaces lists and spec.excludeNamespaces
// removes again: legal, but probably not what the author meant.
func excludedAndListed(spec *tcrv1.ImagePullSecretSpec) []string {
	all, names := ParseList(spec.Namespaces)
	if all {
		return nil
	}
	excluded := newNameSet(parseExclusions(spec.ExcludeNamespaces))
	var warnings []string
	seen := map[string]bool{}
	for _, n := range names {
		if excluded.has(n) && !seen[n] {
			seen[n] = true
			warnings = append(warnings, fmt.Sprintf("%s: %q is also listed in %s, so it is excluded", namespacesPath, n, excludeNamespacesPath))
		}
	}
	return warnings
}

func validateDocker(d *tcrv1.DockerCredential) field.ErrorList {
	var errs field.ErrorList
	if err := validateServer(d.Server); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(d.Username) == "" {
		errs = append(errs, field.Required(dockerPath.Child("username"), "set the registry user name"))
	}
	passwordPath := dockerPath.Child("password")
	refPath := dockerPath.Child("passwordSecretRef")
	switch {
	case d.PasswordSecretRef != nil && d.Password != "":
		errs = append(errs, field.Forbidden(passwordPath, "set either spec.docker.password or spec.docker.passwordSecretRef, not both"))
	case d.PasswordSecretRef == nil && strings.TrimSpace(d.Password) == "":
		errs = append(errs, field.Required(passwordPath, "set the registry password or token, or spec.docker.passwordSecretRef to read it from a Secret in the controller's namespace"))
	}
	if ref := d.PasswordSecretRef; ref != nil {
		switch msgs := validation.IsDNS1123Subdomain(ref.Name); {
		case ref.Name == "":
			errs = append(errs, field.Required(refPath.Child("name"), "name the Secret, in the controller's namespace, that holds the password"))
		case len(msgs) > 0:
			errs = append(errs, field.Invalid(refPath.Child("name"), ref.Name, "is not a valid Secret name: "+strings.Join(msgs, "; ")))
		}
		switch msgs := validation.IsConfigMapKey(ref.Key); {
		case ref.Key == "":
			errs = append(errs, field.Required(refPath.Child("key"), "name the key of that Secret that holds the password"))
		case len(msgs) > 0:
			errs = append(errs, field.Invalid(refPath.Child("key"), ref.Key, "is not a valid Secret key: "+strings.Join(msgs, "; ")))
		}
	}
	return errs
}

// validateServer checks that server is "host" or "host:port": what docker login and the
// dockerconfigjson "auths" key expect.
func validateServer(server string) *field.Error {
	path := dockerPath.Child("server")
	const example = "e.g. registry.example.com or registry.example.com:5000"
	if strings.TrimSpace(server) == "" {
		return field.Required(path, "set the registry host name, "+example)
	}
	if i := strings.Index(server, "://"); i >= 0 {
		host, _, _ := strings.Cut(server[i+3:], "/")
		return field.Invalid(path, server, fmt.Sprintf("must be a host name without a scheme: write %q", host))
	}
	if strings.ContainsFunc(server, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		return field.Invalid(path, server, "must not contain spaces: write the host name only, "+example)
	}
	if host, _, found := strings.Cut(server, "/"); found {
		return field.Invalid(path, server, fmt.Sprintf("must be a host name without a path: write %q and put repository paths in image names", host))
	}
	host := server
	if strings.HasPrefix(server, "[") || strings.Count(server, ":") == 1 {
		h, port, err := net.SplitHostPort(server)
		if err != nil {
			return field.Invalid(path, server, "must be host or host:port, "+example)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return field.Invalid(path, server, fmt.Sprintf("has an invalid port %q: use a port from 1 to 65535", port))
		}
		host = h
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if msgs := validation.IsDNS1123Subdomain(strings.ToLower(host)); len(msgs) > 0 {
		return field.Invalid(path, server, fmt.Sprintf("%q is not a valid host name or IP address: use a DNS name, %s", host, example))
	}
	return nil
}
