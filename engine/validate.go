package engine

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// Validate checks spec for admission: errors refuse it, warnings admit it with a message. Errors
// are those of Compile plus stricter checks the original never made (names must be valid object
// names, no patterns, no empty entries, a well-formed registry host, a non-blank credential).
// No message ever contains the password.
//
// The work is bounded by the input: it grows linearly with the spec's size, each message names
// only its own entry, and no field gets more than MaxErrorsPerField errors or warnings (then one
// "and N more"), so a hostile spec cannot make the webhook allocate more than a small multiple of
// its own size.
func Validate(spec *tcrv1.ImagePullSecretSpec) (errs field.ErrorList, warnings []string) {
	return validateCompiled(spec, Compile)
}

// validateCompiled is Validate with the compile step given, so that a Cache can supply it. The
// step compiles the spec without its name lists: Compile only parses them (any comma list is a
// list of names), they are checked here, and leaving them out makes the compile cost, and a
// cache key, independent of their length.
func validateCompiled(spec *tcrv1.ImagePullSecretSpec, compile func(*tcrv1.ImagePullSecretSpec) (*Rule, field.ErrorList)) (errs field.ErrorList, warnings []string) {
	if spec == nil {
		_, errs = compile(nil)
		return errs, nil
	}
	selection := withoutLists(spec)
	_, compileErrs := compile(&selection)
	// Clipped, so that appending never writes into a cached list.
	errs = slices.Clip(capPerField(compileErrs))
	if strings.TrimSpace(spec.Namespaces) == "" {
		warnings = append(warnings, MsgEmptyNamespaces)
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
		if len(l.value) > tcrv1.MaxListLength {
			// As the CRD schema says it, for a review that did not come through the API server.
			errs = append(errs, field.TooLong(l.path, "", tcrv1.MaxListLength))
			continue
		}
		if !validUTF8(l.value) {
			errs = append(errs, notUTF8(l.path))
			continue
		}
		e, w := validateList(l.path, l.value, l.kind)
		errs = append(errs, e...)
		warnings = append(warnings, w...)
	}
	warnings = append(warnings, excludedAndListed(spec)...)
	errs = append(errs, validateDocker(&spec.Docker)...)
	switch spec.Delivery {
	case "", tcrv1.DeliverySecrets, tcrv1.DeliveryCredentialProvider, tcrv1.DeliveryBoth:
	default:
		errs = append(errs, field.NotSupported(field.NewPath("spec", "delivery"), shown(string(spec.Delivery)),
			[]string{string(tcrv1.DeliverySecrets), string(tcrv1.DeliveryCredentialProvider), string(tcrv1.DeliveryBoth)}))
	}
	switch spec.RotationPolicy {
	case "", tcrv1.RotationVerified, tcrv1.RotationImmediate:
	default:
		errs = append(errs, field.NotSupported(field.NewPath("spec", "rotationPolicy"), shown(string(spec.RotationPolicy)),
			[]string{string(tcrv1.RotationVerified), string(tcrv1.RotationImmediate)}))
	}
	return errs, warnings
}

// withoutLists is the part of spec that Compile can refuse: its selectors and expressions. The
// credential is left out too, so that nothing derived from it (a cache key) holds the password.
func withoutLists(spec *tcrv1.ImagePullSecretSpec) tcrv1.ImagePullSecretSpec {
	return tcrv1.ImagePullSecretSpec{
		NamespaceSelector:        spec.NamespaceSelector,
		NamespaceExpression:      spec.NamespaceExpression,
		ServiceAccountSelector:   spec.ServiceAccountSelector,
		ServiceAccountExpression: spec.ServiceAccountExpression,
	}
}

// MsgEmptyNamespaces is the warning for an empty or omitted spec.namespaces, which, as in the
// original product, selects every namespace.
const MsgEmptyNamespaces = `spec.namespaces is empty, which selects every namespace, kube-system included, as "*" does: write "*" to say so, or list the namespaces`

// capPerField keeps the first MaxErrorsPerField errors of each spec field (a field with its
// children, e.g. spec.namespaceSelector and everything under it) and replaces the rest with one
// "and N more" error per field.
func capPerField(errs field.ErrorList) field.ErrorList {
	if len(errs) <= MaxErrorsPerField {
		return errs
	}
	var out field.ErrorList
	kept := map[string]int{}
	more := map[string]int{}
	var order []string
	for _, e := range errs {
		f := topField(e.Field)
		if kept[f] < MaxErrorsPerField {
			kept[f]++
			out = append(out, e)
			continue
		}
		if more[f] == 0 {
			order = append(order, f)
		}
		more[f]++
	}
	for _, f := range order {
		out = append(out, moreErrors(f, more[f]))
	}
	return out
}

// topField is the spec field a path is in: "spec.namespaceSelector" for
// "spec.namespaceSelector.matchExpressions[0].values[1]".
func topField(path string) string {
	end := len(path)
	if i := strings.IndexAny(path, ".["); i >= 0 {
		if j := strings.IndexAny(path[i+1:], ".["); j >= 0 {
			end = i + 1 + j
		}
	}
	return path[:end]
}

type listKind int

const (
	namespaceList listKind = iota
	serviceAccountList
	exclusionList
)

// patternChars are characters of globs and regular expressions that no object name contains.
const patternChars = `*?[]{}()^$|+\`

// MaxErrorsPerField is how many errors, and how many warnings, Validate reports for one field;
// the rest are summed up in one "and N more". A list of 64,000 bad names then costs 20 messages,
// not 64,000 (issue 13: each message used to repeat the whole list, and one CR could make the
// manager allocate gigabytes).
const MaxErrorsPerField = 20

// maxShownEntry is how many bytes of one list entry a message quotes; a longer entry is cut and
// marked with "...".
const maxShownEntry = 64

// listReport collects one field's errors and warnings, keeping the first MaxErrorsPerField of
// each and counting the rest, so that its size is bounded whatever the input.
type listReport struct {
	path                   *field.Path
	errs                   field.ErrorList
	warnings               []string
	moreErrs, moreWarnings int
}

// wantErr reports whether another error will be kept; when false the caller counts it instead of
// building its message.
func (r *listReport) wantErr() bool {
	if len(r.errs) < MaxErrorsPerField {
		return true
	}
	r.moreErrs++
	return false
}

func (r *listReport) wantWarning() bool {
	if len(r.warnings) < MaxErrorsPerField {
		return true
	}
	r.moreWarnings++
	return false
}

func (r *listReport) done() (field.ErrorList, []string) {
	if r.moreErrs > 0 {
		r.errs = append(r.errs, moreErrors(r.path.String(), r.moreErrs))
	}
	if r.moreWarnings > 0 {
		r.warnings = append(r.warnings, fmt.Sprintf("%s: and %d more warnings", r.path, r.moreWarnings))
	}
	return r.errs, r.warnings
}

// moreErrors is the error that stands for n errors of path left out.
func moreErrors(path string, n int) *field.Error {
	return &field.Error{Type: field.ErrorTypeInvalid, Field: path, BadValue: field.OmitValueType{}, Detail: fmt.Sprintf("and %d more errors", n)}
}

// shown is entry as a message quotes it: whole up to maxShownEntry bytes, else cut at a rune
// boundary and marked.
func shown(entry string) string {
	if len(entry) <= maxShownEntry {
		return entry
	}
	cut := maxShownEntry
	for cut > 0 && !utf8.RuneStart(entry[cut]) {
		cut--
	}
	return entry[:cut] + "..."
}

// validateList checks one comma list. Each error names only its own entry, never the list, and
// only the first MaxErrorsPerField errors are built: past them an entry is only counted, with
// checks that allocate nothing, so time and memory grow linearly with the list.
func validateList(path *field.Path, list string, kind listKind) (field.ErrorList, []string) {
	trimmed := strings.TrimSpace(list)
	if trimmed == "" || (trimmed == All && kind != exclusionList) {
		return nil, nil
	}
	r := listReport{path: path}
	seen := map[string]bool{}
	emptyReported := false
	i := 0
	for entry := range strings.SplitSeq(list, ",") {
		i++
		entry = strings.TrimSpace(entry)
		switch {
		case entry == "":
			if !emptyReported && r.wantErr() {
				r.errs = append(r.errs, field.Invalid(path, entry, fmt.Sprintf("entry %d is empty: remove the extra comma", i)))
			}
			emptyReported = true
		case entry == All && kind == exclusionList:
			if r.wantErr() {
				r.errs = append(r.errs, field.Invalid(path, entry, `would exclude every namespace: list the exact names to exclude`))
			}
		case entry == All:
			if r.wantErr() {
				r.errs = append(r.errs, field.Invalid(path, entry, fmt.Sprintf(`selects every %s and cannot be combined with names: use "*" alone or list names only`, kind.noun())))
			}
		case strings.ContainsAny(entry, patternChars):
			if r.wantErr() {
				r.errs = append(r.errs, field.Invalid(path, shown(entry), "is a pattern, and patterns are not supported: "+kind.patternHint()))
			}
		case !kind.validName(entry):
			if r.wantErr() {
				r.errs = append(r.errs, field.Invalid(path, shown(entry), fmt.Sprintf("is not a valid %s name: %s", kind.noun(), strings.Join(kind.nameErrors(entry), "; "))))
			}
		case seen[entry]:
			if r.wantWarning() {
				r.warnings = append(r.warnings, fmt.Sprintf("%s: %q is listed more than once; the duplicate is ignored", path, shown(entry)))
			}
		default:
			seen[entry] = true
		}
	}
	return r.done()
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
	if strings.TrimSpace(spec.ExcludeNamespaces) == "" {
		return nil
	}
	all, names := ParseList(spec.Namespaces)
	if all {
		return nil
	}
	excluded := newNameSet(parseExclusions(spec.ExcludeNamespaces))
	r := listReport{path: namespacesPath}
	seen := map[string]bool{}
	for _, n := range names {
		if excluded.has(n) && !seen[n] {
			seen[n] = true
			if r.wantWarning() {
				r.warnings = append(r.warnings, fmt.Sprintf("%s: %q is also listed in %s, so it is excluded", namespacesPath, shown(n), excludeNamespacesPath))
			}
		}
	}
	_, warnings := r.done()
	return warnings
}

func validateDocker(d *tcrv1.DockerCredential) field.ErrorList {
	var errs field.ErrorList
	if err := validateServer(d.Server); err != nil {
		errs = append(errs, err)
	}
	if d.InstanceToken != nil {
		return append(errs, validateInstanceToken(d)...)
	}
	switch {
	case strings.TrimSpace(d.Username) == "":
		errs = append(errs, field.Required(dockerPath.Child("username"), "set the registry user name"))
	case strings.Contains(d.Username, ":"):
		// The Secret's auth is base64("username:password"), which registries split at the first
		// ":": the rest of the user name would be read as the start of the password.
		errs = append(errs, field.Invalid(dockerPath.Child("username"), shown(d.Username), `must not contain ":": the Secret's auth field is username:password, and a ":" in the user name would make it ambiguous`))
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

// instanceIDPattern is what a TCR instance ID and a region look like: "tcr-xxxxxxxx",
// "ap-guangzhou".
var instanceIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// validateInstanceToken checks docker.instanceToken, which replaces username and password.
func validateInstanceToken(d *tcrv1.DockerCredential) field.ErrorList {
	var errs field.ErrorList
	path := dockerPath.Child("instanceToken")
	if d.Username != "" || d.Password != "" || d.PasswordSecretRef != nil {
		errs = append(errs, field.Forbidden(path, "set either spec.docker.instanceToken or spec.docker.username with spec.docker.password or spec.docker.passwordSecretRef, not both"))
	}
	it := d.InstanceToken
	for _, f := range []struct{ name, value, example string }{
		{"registryId", it.RegistryID, "tcr-xxxxxxxx"},
		{"region", it.Region, "ap-guangzhou"},
	} {
		switch {
		case f.value == "":
			errs = append(errs, field.Required(path.Child(f.name), "set it, e.g. "+f.example))
		case !instanceIDPattern.MatchString(f.value):
			errs = append(errs, field.Invalid(path.Child(f.name), shown(f.value), "must be lower-case letters, digits and '-', at most 64, e.g. "+f.example))
		}
	}
	switch it.Type {
	case "", tcrv1.InstanceTokenTemporary, tcrv1.InstanceTokenLongTerm:
	default:
		errs = append(errs, field.NotSupported(path.Child("type"), shown(string(it.Type)), []string{string(tcrv1.InstanceTokenTemporary), string(tcrv1.InstanceTokenLongTerm)}))
	}
	if ref := it.APIKeySecretRef; ref != nil {
		switch msgs := validation.IsDNS1123Subdomain(ref.Name); {
		case ref.Name == "":
			errs = append(errs, field.Required(path.Child("apiKeySecretRef", "name"), "name the Secret, in the controller's namespace, that holds SecretId and SecretKey"))
		case len(msgs) > 0:
			errs = append(errs, field.Invalid(path.Child("apiKeySecretRef", "name"), ref.Name, "is not a valid Secret name: "+strings.Join(msgs, "; ")))
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

// validName reports whether entry is a valid name of the kind's objects, exactly as nameErrors
// finds no error, but without allocating: it runs on every entry of a list, however long.
func (k listKind) validName(entry string) bool {
	if k == serviceAccountList {
		return isDNS1123Subdomain(entry)
	}
	return isDNS1123Label(entry)
}

// nameErrors says why entry is not a valid name of the kind's objects.
func (k listKind) nameErrors(entry string) []string {
	if k == serviceAccountList {
		return validation.IsDNS1123Subdomain(entry)
	}
	return validation.IsDNS1123Label(entry)
}

// isDNS1123Label is validation.IsDNS1123Label(s) == nil: at most 63 characters of [a-z0-9-],
// starting and ending with [a-z0-9].
func isDNS1123Label(s string) bool {
	return len(s) <= validation.DNS1123LabelMaxLength && isLabelChars(s)
}

// isDNS1123Subdomain is validation.IsDNS1123Subdomain(s) == nil: at most 253 characters of
// dot-separated labels, each of [a-z0-9-] starting and ending with [a-z0-9] (of any length).
func isDNS1123Subdomain(s string) bool {
	if len(s) > validation.DNS1123SubdomainMaxLength {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isLabelChars(label) {
			return false
		}
	}
	return true
}

func isLabelChars(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool { return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') }
