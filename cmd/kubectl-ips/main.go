// Command kubectl-ips is a kubectl plugin (kubectl ips test PATH...) that runs ImagePullSecret
// policy suites through the same rule engine as the controller and the admission webhook, so a
// rule can be tried before it is applied. The logic lives in package policies. 'kubectl ips
// sync' applies the Helm chart's ImagePullSecrets from its hook Jobs (package rulesync); it lives
// here because this image holds no shell and no kubectl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tcr-assistant/tcr-assistant/internal/rulesync"
	"github.com/tcr-assistant/tcr-assistant/policies"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sync" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := rulesync.Command(ctx, os.Args[2:], os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(policies.Command(os.Args[1:], os.Stdout, os.Stderr))
}
