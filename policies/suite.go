// Package policies loads and runs policy suites: YAML tables of ImagePullSecret specs, namespace
// and ServiceAccount facts and the verdicts expected of the rule engine, plus admission cases.
// The Go test of this package and the kubectl-ips plugin run the same code on the same files, so
// a suite that passes in CI passes on an operator's laptop.
package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// Suite is one YAML document: a spec and the cases run against it.
type Suite struct {
	Name      string                    `json:"name"`
	Spec      tcrv1.ImagePullSecretSpec `json:"spec"`
	Cases     []Case                    `json:"cases,omitempty"`
	Admission []AdmissionCase           `json:"admission,omitempty"`

	// File and Line locate the document, for messages.
	File string `json:"-"`
	Line int    `json:"-"`
}

// Object is what a case says of a namespace or a ServiceAccount.
type Object struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Case is one match case: a namespace, optionally a ServiceAccount in it, and the verdicts.
type Case struct {
	Name           string  `json:"name"`
	Namespace      Object  `json:"namespace"`
	ServiceAccount *Object `json:"serviceAccount,omitempty"`
	Expect         Expect  `json:"expect"`

	Line int `json:"-"`
}

// Expect holds the expected verdicts of a Case. ServiceAccount is set exactly when the case
// names a ServiceAccount. Error, when set, expects evaluation to fail with a message containing
// it (the verdicts are then false).
type Expect struct {
	Namespace      *bool  `json:"namespace,omitempty"`
	ServiceAccount *bool  `json:"serviceAccount,omitempty"`
	Error          string `json:"error,omitempty"`
}

// AdmissionCase is one admission verdict: a spec and whether the webhook admits it.
type AdmissionCase struct {
	Name   string                    `json:"name"`
	Spec   tcrv1.ImagePullSecretSpec `json:"spec"`
	Expect AdmissionExpect           `json:"expect"`

	Line int `json:"-"`
}

// AdmissionExpect is the expected admission verdict. Message must be a substring of the refusal
// (or, for an admitted spec, of the joined warnings); Warning must be a substring of one warning.
type AdmissionExpect struct {
	Allowed *bool  `json:"allowed,omitempty"`
	Message string `json:"message,omitempty"`
	Warning string `json:"warning,omitempty"`
}

// SuiteError is a file that is not a valid suite, located at a line.
type SuiteError struct {
	File string
	Line int
	Msg  string
}

func (e *SuiteError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Files expands paths into the suite files to load: a file is taken as is; a folder contributes
// its *.yaml and *.yml files, sorted, without descending into subfolders (so fixtures in
// testdata/ stay out of a run of the folder above).
func Files(paths ...string) ([]string, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("reading folder %s: %w", p, err)
		}
		var found []string
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				found = append(found, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// LoadFile reads every suite of a file. A file that is not a valid suite yields a *SuiteError.
func LoadFile(file string) ([]Suite, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &SuiteError{File: file, Msg: err.Error()}
	}
	return LoadSuites(file, data)
}

// LoadSuites parses the YAML documents of data, named file in messages. It is strict: unknown
// fields, missing names, missing expectations and wrong types are errors with a line number.
func LoadSuites(file string, data []byte) ([]Suite, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var suites []Suite
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &SuiteError{File: file, Line: yamlErrorLine(err), Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue // an empty document, e.g. after a trailing "---"
		}
		s, err := decodeSuite(file, doc.Content[0])
		if err != nil {
			return nil, err
		}
		suites = append(suites, s)
	}
	if len(suites) == 0 {
		return nil, &SuiteError{File: file, Line: 1, Msg: "no suite: expect documents with name, spec and cases"}
	}
	return suites, nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// yamlErrorLine extracts "line N" from a YAML syntax error.
func yamlErrorLine(err error) int {
	var line int
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		_, _ = fmt.Sscanf(msg[i:], "line %d", &line)
	}
	return line
}

// Allowed keys of each mapping, checked before decoding so that a typo is reported at its line.
var (
	suiteKeys           = []string{"name", "spec", "cases", "admission"}
	caseKeys            = []string{"name", "namespace", "serviceAccount", "expect"}
	objectKeys          = []string{"name", "labels", "annotations"}
	expectKeys          = []string{"namespace", "serviceAccount", "error"}
	admissionKeys       = []string{"name", "spec", "expect"}
	admissionExpectKeys = []string{"allowed", "message", "warning"}
)

func decodeSuite(file string, n *yaml.Node) (Suite, error) {
	fail := func(at *yaml.Node, format string, args ...any) (Suite, error) {
		return Suite{}, &SuiteError{File: file, Line: at.Line, Msg: fmt.Sprintf(format, args...)}
	}
	if err := checkKeys(file, n, "suite", suiteKeys); err != nil {
		return Suite{}, err
	}
	s := Suite{File: file, Line: n.Line}
	if err := decodeScalar(file, field(n, "name"), &s.Name); err != nil {
		return Suite{}, err
	}
	if s.Name == "" {
		return fail(n, "suite: name is required")
	}
	specNode := field(n, "spec")
	if specNode == nil {
		return fail(n, "suite %q: spec is required", s.Name)
	}
	if err := decodeStrict(file, fmt.Sprintf("suite %q: spec", s.Name), specNode, &s.Spec); err != nil {
		return Suite{}, err
	}
	cases, admission := field(n, "cases"), field(n, "admission")
	if cases == nil && admission == nil {
		return fail(n, "suite %q: cases or admission is required", s.Name)
	}
	for i, c := range items(cases) {
		tc, err := decodeCase(file, c, fmt.Sprintf("suite %q: cases[%d]", s.Name, i))
		if err != nil {
			return Suite{}, err
		}
		s.Cases = append(s.Cases, tc)
	}
	for i, c := range items(admission) {
		ac, err := decodeAdmission(file, c, fmt.Sprintf("suite %q: admission[%d]", s.Name, i))
		if err != nil {
			return Suite{}, err
		}
		s.Admission = append(s.Admission, ac)
	}
	if cases != nil && cases.Kind != yaml.SequenceNode {
		return fail(cases, "suite %q: cases must be a list", s.Name)
	}
	if admission != nil && admission.Kind != yaml.SequenceNode {
		return fail(admission, "suite %q: admission must be a list", s.Name)
	}
	return s, nil
}

func decodeCase(file string, n *yaml.Node, where string) (Case, error) {
	fail := func(at *yaml.Node, format string, args ...any) (Case, error) {
		return Case{}, &SuiteError{File: file, Line: at.Line, Msg: where + ": " + fmt.Sprintf(format, args...)}
	}
	if err := checkKeys(file, n, where, caseKeys); err != nil {
		return Case{}, err
	}
	for _, k := range []string{"namespace", "serviceAccount"} {
		if f := field(n, k); f != nil {
			if err := checkKeys(file, f, where+"."+k, objectKeys); err != nil {
				return Case{}, err
			}
		}
	}
	if f := field(n, "expect"); f != nil {
		if err := checkKeys(file, f, where+".expect", expectKeys); err != nil {
			return Case{}, err
		}
	}
	var c Case
	if err := decodeStrict(file, where, n, &c); err != nil {
		return Case{}, err
	}
	c.Line = n.Line
	switch {
	case c.Name == "":
		return fail(n, "name is required")
	case field(n, "namespace") == nil || c.Namespace.Name == "":
		return fail(n, "%q: namespace.name is required", c.Name)
	case c.Expect.Namespace == nil && c.Expect.Error == "":
		return fail(n, "%q: expect.namespace is required", c.Name)
	case c.ServiceAccount != nil && c.ServiceAccount.Name == "":
		return fail(n, "%q: serviceAccount.name is required", c.Name)
	case c.ServiceAccount != nil && c.Expect.ServiceAccount == nil && c.Expect.Error == "":
		return fail(n, "%q: expect.serviceAccount is required when the case names a serviceAccount", c.Name)
	case c.ServiceAccount == nil && c.Expect.ServiceAccount != nil:
		return fail(n, "%q: expect.serviceAccount is set but the case names no serviceAccount", c.Name)
	}
	return c, nil
}

func decodeAdmission(file string, n *yaml.Node, where string) (AdmissionCase, error) {
	fail := func(format string, args ...any) (AdmissionCase, error) {
		return AdmissionCase{}, &SuiteError{File: file, Line: n.Line, Msg: where + ": " + fmt.Sprintf(format, args...)}
	}
	if err := checkKeys(file, n, where, admissionKeys); err != nil {
		return AdmissionCase{}, err
	}
	if f := field(n, "expect"); f != nil {
		if err := checkKeys(file, f, where+".expect", admissionExpectKeys); err != nil {
			return AdmissionCase{}, err
		}
	}
	var c AdmissionCase
	if err := decodeStrict(file, where, n, &c); err != nil {
		return AdmissionCase{}, err
	}
	c.Line = n.Line
	switch {
	case c.Name == "":
		return fail("name is required")
	case field(n, "spec") == nil:
		return fail("%q: spec is required", c.Name)
	case c.Expect.Allowed == nil:
		return fail("%q: expect.allowed is required", c.Name)
	}
	return c, nil
}

// checkKeys reports a mapping key outside allowed at its line.
func checkKeys(file string, n *yaml.Node, where string, allowed []string) error {
	if n.Kind != yaml.MappingNode {
		return &SuiteError{File: file, Line: n.Line, Msg: where + ": must be a mapping"}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(allowed, k.Value) {
			return &SuiteError{File: file, Line: k.Line, Msg: fmt.Sprintf("%s: unknown field %q (allowed: %s)", where, k.Value, strings.Join(allowed, ", "))}
		}
	}
	return nil
}

func field(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func items(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

func decodeScalar(file string, n *yaml.Node, out *string) error {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return &SuiteError{File: file, Line: n.Line, Msg: "expected a string"}
	}
	*out = n.Value
	return nil
}

// decodeStrict decodes n into out through JSON, as the API server would read it, refusing
// unknown fields (e.g. a misspelt spec field) and wrong types, located at n's line.
func decodeStrict(file, where string, n *yaml.Node, out any) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return &SuiteError{File: file, Line: n.Line, Msg: where + ": " + err.Error()}
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return &SuiteError{File: file, Line: n.Line, Msg: where + ": cannot be read as JSON: " + err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		line := n.Line
		var key string
		if _, err := fmt.Sscanf(msg, "unknown field %q", &key); err == nil {
			if k := findKey(n, key); k != nil {
				line = k.Line
			}
		}
		return &SuiteError{File: file, Line: line, Msg: where + ": " + msg}
	}
	return nil
}

// findKey returns the first mapping key named key in the tree under n.
func findKey(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i]
			}
		}
	}
	for _, c := range n.Content {
		if k := findKey(c, key); k != nil {
			return k
		}
	}
	return nil
}
