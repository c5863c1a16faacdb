// Command kubectl-ips is a kubectl plugin (kubectl ips test PATH...) that runs ImagePullSecret
// policy suites through the same rule engine as the controller and the admission webhook, so a
// rule can be tried before it is applied. The logic lives in package policies.
package main

import (
	"os"

	"github.com/tcr-assistant/tcr-assistant/policies"
)

func main() {
	os.Exit(policies.Command(os.Args[1:], os.Stdout, os.Stderr))
}
