// Command kubectl-ips is a kubectl plugin. `kubectl ips test PATH...` runs ImagePullSecret policy
// suites through the same rule engine as the controller and the admission webhook, so a rule can
// be tried before it is applied (the logic lives in package policies). `kubectl ips verify -f
// FILE` logs in to the registry of each ImagePullSecret in FILE with its credential, through the
// same probe as the controller (package credcheck). `kubectl ips preview -f FILE` (or NAME)
// shows, without writing anything, what the controller would do in the cluster for an
// ImagePullSecret, through the controller's own plan (controllers.PreviewTarget). `kubectl ips
// sync` applies the Helm chart's ImagePullSecrets from its hook Jobs (package rulesync); it lives
// here because this image holds no shell and no kubectl.
package main

import (
	"context"
	"fmt"
	"io"
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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "verify":
			return verify(args[1:], stdout, stderr)
		case "preview":
			return preview(args[1:], stdout, stderr)
		case "help", "-h", "--help":
			code := policies.Command(args, stdout, stderr)
			fmt.Fprint(stdout, "\n", verifyUsage, "  (see kubectl ips verify -h for its flags)\n")
			fmt.Fprint(stdout, "\n", previewUsage, "  (see kubectl ips preview -h for its flags)\n")
			return code
		}
	}
	return policies.Command(args, stdout, stderr)
}
