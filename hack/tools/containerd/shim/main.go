// Command containerd-shim-runc-v2 is containerd's runc shim of the pinned module. It is a binary of
// its own, not a name of the multi-call bin/containerd: the shim and the daemon register their
// plugins in one global registry, and each would load the other's.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
	"github.com/containerd/containerd/v2/pkg/shim"
)

func main() {
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
}
