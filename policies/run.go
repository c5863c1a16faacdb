package policies

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tcr-assistant/tcr-assistant/engine"
)

// Result is the outcome of one case.
type Result struct {
	File  string
	Line  int
	Suite string
	Case  string
	Pass  bool
	// Reason says why a case failed; empty when it passed.
	Reason string
}

// Run runs every case of suites through the rule engine: match cases through engine.Compile and
// the compiled rule (checking that the compiled plan and the reference CEL program agree),
// admission cases through engine.Validate, as the webhook does.
func Run(suites []Suite) []Result {
	var results []Result
	for _, s := range suites {
		rule, errs := engine.Compile(&s.Spec)
		for _, c := range s.Cases {
			r := Result{File: s.File, Line: c.Line, Suite: s.Name, Case: c.Name}
			if len(errs) > 0 {
				r.Reason = "the suite's spec does not compile: " + errs.ToAggregate().Error()
			} else {
				r.Reason = runCase(rule, c)
			}
			r.Pass = r.Reason == ""
			results = append(results, r)
		}
		for _, c := range s.Admission {
			r := Result{File: s.File, Line: c.Line, Suite: s.Name, Case: c.Name}
			r.Reason = runAdmission(c)
			r.Pass = r.Reason == ""
			results = append(results, r)
		}
	}
	return results
}

func runCase(rule *engine.Rule, c Case) string {
	ns := engine.Namespace{Name: c.Namespace.Name, Labels: c.Namespace.Labels, Annotations: c.Namespace.Annotations}
	got, err := rule.MatchNamespace(ns)
	ref, refErr := rule.MatchNamespaceCEL(ns)
	if reason := verdict("namespace", got, err, ref, refErr, c.Expect.Namespace, c.Expect.Error); reason != "" {
		return reason
	}
	if c.ServiceAccount == nil {
		return ""
	}
	sa := engine.ServiceAccount{Name: c.ServiceAccount.Name, Namespace: ns.Name, Labels: c.ServiceAccount.Labels, Annotations: c.ServiceAccount.Annotations}
	got, err = rule.MatchServiceAccount(ns, sa)
	ref, refErr = rule.MatchServiceAccountCEL(ns, sa)
	return verdict("serviceAccount", got, err, ref, refErr, c.Expect.ServiceAccount, c.Expect.Error)
}

// verdict compares one verdict with its expectation; it returns the reason of a failure.
func verdict(what string, got bool, err error, ref bool, refErr error, want *bool, wantErr string) string {
	switch {
	case wantErr != "" && err == nil && want == nil:
		return fmt.Sprintf("%s: got %v, want an error containing %q", what, got, wantErr)
	case wantErr != "" && err != nil && !strings.Contains(err.Error(), wantErr):
		return fmt.Sprintf("%s: got error %q, want an error containing %q", what, err, wantErr)
	case wantErr == "" && err != nil:
		return fmt.Sprintf("%s: evaluation failed: %v", what, err)
	case err == nil && (refErr != nil || ref != got):
		return fmt.Sprintf("%s: the compiled plan says %v but the CEL program says %v (error: %v)", what, got, ref, refErr)
	case err == nil && want != nil && got != *want:
		return fmt.Sprintf("%s: got %v, want %v", what, got, *want)
	}
	return ""
}

func runAdmission(c AdmissionCase) string {
	errs, warnings := engine.Validate(&c.Spec)
	allowed := len(errs) == 0
	message := strings.Join(warnings, "; ")
	if !allowed {
		message = errs.ToAggregate().Error()
	}
	switch {
	case allowed != *c.Expect.Allowed && allowed:
		return "admission: allowed, want refused"
	case allowed != *c.Expect.Allowed:
		return fmt.Sprintf("admission: refused (%s), want allowed", message)
	case !strings.Contains(message, c.Expect.Message):
		return fmt.Sprintf("admission: message %q does not contain %q", message, c.Expect.Message)
	case c.Expect.Warning != "" && !strings.Contains(strings.Join(warnings, "\n"), c.Expect.Warning):
		return fmt.Sprintf("admission: warnings %q do not contain %q", warnings, c.Expect.Warning)
	}
	return ""
}

// Exit codes of Command.
const (
	ExitPass    = 0 // every case passed
	ExitFail    = 1 // a case failed
	ExitInvalid = 2 // a file is not a valid suite, or the command line is wrong
)

const usage = `Usage: kubectl ips test PATH...

Runs the policy suites in the given YAML files and folders (a folder means its *.yaml and *.yml
files) through the tcr-assistant rule engine. Prints one line per case and a summary; exits 0
when every case passes, 1 when one fails, 2 when a file is not a valid suite.
`

// Command is the kubectl-ips plugin: it runs `test PATH...` and returns the exit code.
func Command(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, usage)
			return ExitPass
		}
		fmt.Fprint(stderr, usage)
		return ExitInvalid
	}
	flags := flag.NewFlagSet("test", flag.ContinueOnError)
	flags.SetOutput(stderr)
	quiet := flags.Bool("quiet", false, "print only failing cases and the summary")
	flags.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := flags.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitPass
		}
		return ExitInvalid
	}
	if flags.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return ExitInvalid
	}
	files, err := Files(flags.Args()...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitInvalid
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "no *.yaml or *.yml files in", strings.Join(flags.Args(), " "))
		return ExitInvalid
	}
	var suites []Suite
	invalid := false
	for _, f := range files {
		s, err := LoadFile(f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			invalid = true
			continue
		}
		suites = append(suites, s...)
	}
	passed, failed := 0, 0
	for _, r := range Run(suites) {
		if r.Pass {
			passed++
			if !*quiet {
				fmt.Fprintf(stdout, "PASS %s / %s\n", r.Suite, r.Case)
			}
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL %s / %s (%s:%d): %s\n", r.Suite, r.Case, r.File, r.Line, r.Reason)
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	switch {
	case invalid:
		return ExitInvalid
	case failed > 0:
		return ExitFail
	}
	return ExitPass
}
