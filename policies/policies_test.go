package policies

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// minCases is the floor on the number of cases the committed suites hold.
const minCases = 60

// TestSuites runs every suite in this folder, as `kubectl ips test policies/` does.
func TestSuites(t *testing.T) {
	files, err := Files(".")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var suites []Suite
	for _, f := range files {
		s, err := LoadFile(f)
		require.NoError(t, err)
		suites = append(suites, s...)
	}
	results := Run(suites)
	require.GreaterOrEqual(t, len(results), minCases)
	for _, r := range results {
		t.Run(r.Suite+"/"+r.Case, func(t *testing.T) {
			assert.True(t, r.Pass, "%s:%d: %s", r.File, r.Line, r.Reason)
		})
	}
}

func TestLoadInvalidSuites(t *testing.T) {
	tests := map[string]struct {
		file    string
		wantErr string
	}{
		"an unknown field is reported at its line, in any document": {
			file:    "testdata/unknown-field.yaml",
			wantErr: `testdata/unknown-field.yaml:13: suite "second document has a typo": cases[0]: unknown field "expected" (allowed: name, namespace, serviceAccount, expect)`,
		},
		"a misspelt spec field is reported at its line": {
			file:    "testdata/bad-spec.yaml",
			wantErr: `testdata/bad-spec.yaml:4: suite "a misspelt spec field": spec: unknown field "namespaceSelecter"`,
		},
		"a ServiceAccount case without its verdict is refused": {
			file:    "testdata/missing-expect.yaml",
			wantErr: `testdata/missing-expect.yaml:4: suite "a case without its verdict": cases[0]: "a ServiceAccount without its verdict": expect.serviceAccount is required when the case names a serviceAccount`,
		},
		"a YAML syntax error is reported with the parser's line": {
			file:    "testdata/bad-yaml.yaml",
			wantErr: `testdata/bad-yaml.yaml:1: not valid YAML: line 1: did not find expected ',' or '}'`,
		},
		"a value of the wrong type is reported at its case": {
			file:    "testdata/wrong-type.yaml",
			wantErr: `testdata/wrong-type.yaml:4: suite "a label that YAML reads as a bool": cases[0]: cannot unmarshal bool into Go struct field Object.namespace.labels of type string`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			suites, err := LoadFile(tt.file)
			assert.Nil(t, suites)
			require.EqualError(t, err, tt.wantErr)
			var se *SuiteError
			require.True(t, errors.As(err, &se))
		})
	}
}

func TestLoadSuitesRefusesIncompleteDocuments(t *testing.T) {
	tests := map[string]struct {
		yaml    string
		wantErr string
	}{
		"an empty file":             {yaml: "", wantErr: "x.yaml:1: no suite: expect documents with name, spec and cases"},
		"a suite without a name":    {yaml: "spec: {}\ncases: []\n", wantErr: "x.yaml:1: suite: name is required"},
		"a suite without a spec":    {yaml: "name: a\ncases: []\n", wantErr: `x.yaml:1: suite "a": spec is required`},
		"a suite without cases":     {yaml: "name: a\nspec: {}\n", wantErr: `x.yaml:1: suite "a": cases or admission is required`},
		"cases that are not a list": {yaml: "name: a\nspec: {}\ncases: {}\n", wantErr: `x.yaml:3: suite "a": cases must be a list`},
		"a document that is a list": {yaml: "- a\n", wantErr: "x.yaml:1: suite: must be a mapping"},
		"a case without a namespace": {yaml: "name: a\nspec: {}\ncases:\n- name: c\n  expect: {namespace: true}\n",
			wantErr: `x.yaml:4: suite "a": cases[0]: "c": namespace.name is required`},
		"a case without a verdict": {yaml: "name: a\nspec: {}\ncases:\n- name: c\n  namespace: {name: n}\n",
			wantErr: `x.yaml:4: suite "a": cases[0]: "c": expect.namespace is required`},
		"a ServiceAccount verdict without a ServiceAccount": {yaml: "name: a\nspec: {}\ncases:\n- name: c\n  namespace: {name: n}\n  expect: {namespace: true, serviceAccount: true}\n",
			wantErr: `x.yaml:4: suite "a": cases[0]: "c": expect.serviceAccount is set but the case names no serviceAccount`},
		"an unknown key in a namespace": {yaml: "name: a\nspec: {}\ncases:\n- name: c\n  namespace: {name: n, label: {}}\n  expect: {namespace: true}\n",
			wantErr: `x.yaml:5: suite "a": cases[0].namespace: unknown field "label" (allowed: name, labels, annotations)`},
		"an admission case without a verdict": {yaml: "name: a\nspec: {}\nadmission:\n- name: c\n  spec: {}\n  expect: {message: x}\n",
			wantErr: `x.yaml:4: suite "a": admission[0]: "c": expect.allowed is required`},
		"an unknown admission expectation": {yaml: "name: a\nspec: {}\nadmission:\n- name: c\n  spec: {}\n  expect: {allowed: true, msg: x}\n",
			wantErr: `x.yaml:6: suite "a": admission[0].expect: unknown field "msg" (allowed: allowed, message, warning)`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := LoadSuites("x.yaml", []byte(tt.yaml))
			require.EqualError(t, err, tt.wantErr)
		})
	}
}

func TestLoadSuitesReadsEveryDocument(t *testing.T) {
	suites, err := LoadSuites("x.yaml", []byte("name: a\nspec: {namespaces: dev}\ncases:\n- name: c\n  namespace: {name: dev}\n  expect: {namespace: true}\n---\n---\nname: b\nspec: {}\nadmission:\n- name: d\n  spec: {}\n  expect: {allowed: false}\n"))
	require.NoError(t, err)
	require.Len(t, suites, 2)
	assert.Equal(t, "a", suites[0].Name)
	assert.Equal(t, "dev", suites[0].Spec.Namespaces)
	assert.Equal(t, 4, suites[0].Cases[0].Line)
	assert.Equal(t, "b", suites[1].Name)
	assert.Equal(t, 9, suites[1].Line)
	assert.Equal(t, 12, suites[1].Admission[0].Line)
}

func TestCommand(t *testing.T) {
	tests := map[string]struct {
		args       []string
		wantCode   int
		wantStdout []string // lines, in order, that stdout must contain
		wantStderr string   // substring
	}{
		"passing suites exit 0 with a summary": {
			args: []string{"test", "original.yaml"}, wantCode: ExitPass,
			wantStdout: []string{"PASS the documentation's sample matches everything / kube-public gets the Secret", "24 passed, 0 failed"},
		},
		"a failing case exits 1 with the reason and location": {
			args: []string{"test", "testdata/failing.yaml"}, wantCode: ExitFail,
			wantStdout: []string{
				"PASS a suite with a wrong expectation / dev matches",
				"FAIL a suite with a wrong expectation / prod is wrongly expected to match (testdata/failing.yaml:9): namespace: got false, want true",
				`FAIL a suite with a wrong expectation / a glob is wrongly expected to be admitted (testdata/failing.yaml:13): admission: refused (spec.namespaces: Invalid value: "dev-*": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression), want allowed`,
				"1 passed, 2 failed",
			},
		},
		"quiet prints only failures": {
			args: []string{"test", "--quiet", "testdata/failing.yaml"}, wantCode: ExitFail,
			wantStdout: []string{"FAIL a suite with a wrong expectation / prod is wrongly expected to match (testdata/failing.yaml:9): namespace: got false, want true"},
		},
		"an invalid suite exits 2 with file and line, and valid files still run": {
			args: []string{"test", "testdata/unknown-field.yaml", "testdata/failing.yaml"}, wantCode: ExitInvalid,
			wantStdout: []string{"1 passed, 2 failed"},
			wantStderr: `testdata/unknown-field.yaml:13: suite "second document has a typo": cases[0]: unknown field "expected"`,
		},
		"a missing path exits 2":            {args: []string{"test", "nope.yaml"}, wantCode: ExitInvalid, wantStderr: "reading nope.yaml: stat nope.yaml: no such file or directory"},
		"no path exits 2 with the usage":    {args: []string{"test"}, wantCode: ExitInvalid, wantStderr: "Usage: kubectl ips test PATH..."},
		"an unknown command exits 2":        {args: []string{"apply"}, wantCode: ExitInvalid, wantStderr: "Usage: kubectl ips test PATH..."},
		"help exits 0":                      {args: []string{"help"}, wantCode: ExitPass, wantStdout: []string{"Usage: kubectl ips test PATH..."}},
		"a folder without suites exits 2":   {args: []string{"test", "../cmd"}, wantCode: ExitInvalid, wantStderr: "no *.yaml or *.yml files in ../cmd"},
		"a folder runs its suites in order": {args: []string{"test", "."}, wantCode: ExitPass, wantStdout: []string{"PASS admission / the documentation's sample is admitted", "PASS everything but the system namespaces / an ordinary namespace matches"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Command(tt.args, &stdout, &stderr)
			assert.Equal(t, tt.wantCode, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			out := stdout.String()
			for _, line := range tt.wantStdout {
				i := strings.Index(out, line+"\n")
				require.GreaterOrEqual(t, i, 0, "stdout lacks %q:\n%s", line, stdout.String())
				out = out[i+len(line):]
			}
			if tt.wantStderr != "" {
				assert.Contains(t, stderr.String(), tt.wantStderr)
			} else {
				assert.Empty(t, stderr.String())
			}
		})
	}
}

func TestCommandQuietHidesPasses(t *testing.T) {
	var stdout bytes.Buffer
	Command([]string{"test", "--quiet", "testdata/failing.yaml"}, &stdout, &bytes.Buffer{})
	assert.NotContains(t, stdout.String(), "PASS")
}

// TestBinary builds bin/kubectl-ips from cmd/kubectl-ips and checks its exit codes and output
// as kubectl would see them.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kubectl-ips")
	build := exec.Command("go", "build", "-o", bin, "../cmd/kubectl-ips")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	tests := map[string]struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		"all cases pass":     {args: []string{"test", "."}, wantCode: 0, wantStdout: " passed, 0 failed\n"},
		"a case fails":       {args: []string{"test", "testdata/failing.yaml"}, wantCode: 1, wantStdout: "1 passed, 2 failed\n"},
		"a suite is invalid": {args: []string{"test", "testdata/bad-spec.yaml"}, wantCode: 2, wantStdout: "0 passed, 0 failed\n", wantStderr: `testdata/bad-spec.yaml:4: suite "a misspelt spec field": spec: unknown field "namespaceSelecter"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tt.wantCode, code)
			assert.Contains(t, stdout.String(), tt.wantStdout)
			// Standard error is empty unless the case names what it must say.
			if tt.wantStderr == "" {
				assert.Empty(t, stderr.String())
			} else {
				assert.Contains(t, stderr.String(), tt.wantStderr)
			}
		})
	}
	_ = os.Remove(bin)
}
