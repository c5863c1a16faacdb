// Command kubectl-ips is a kubectl plugin. `kubectl ips test PATH...` runs ImagePullSecret policy
// suites through the same rule engine as the controller and the admission webhook, so a rule can
// be tried before it is applied (the logic lives in package policies). `kubectl ips verify -f
// FILE` logs in to the registry of each ImagePullSecret in FILE with its credential, through the
// same probe as the controller (package credcheck).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/tcr-assistant/tcr-assistant/policies"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "verify":
			return verify(args[1:], stdout, stderr)
		case "help", "-h", "--help":
			code := policies.Command(args, stdout, stderr)
			fmt.Fprint(stdout, "\n", verifyUsage, "  (see kubectl ips verify -h for its flags)\n")
			return code
		}
	}
	return policies.Command(args, stdout, stderr)
}
