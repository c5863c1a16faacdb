// Command containerd is containerd and ctr of the pinned github.com/containerd/containerd/v2
// module, in one binary for the single-node test cluster (test/node): it runs the program named
// by the base name it was called by (bin/ctr is a link to bin/containerd). The runc shim is
// ./shim, a binary of its own.
//
// Build it as containerd's release does, without cgo and without the snapshotters that need it:
// CGO_ENABLED=0 go build -tags "no_btrfs no_devmapper no_zfs".
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
	"github.com/containerd/containerd/v2/cmd/containerd/command"
	ctr "github.com/containerd/containerd/v2/cmd/ctr/app"
)

func main() {
	ctx := context.Background()
	switch name := filepath.Base(os.Args[0]); name {
	case "containerd":
		if err := command.App().Run(ctx, os.Args); err != nil {
			fmt.Fprintln(os.Stderr, "containerd:", err)
			os.Exit(1)
		}
	case "ctr":
		if err := ctr.New().Run(ctx, os.Args); err != nil {
			fmt.Fprintln(os.Stderr, "ctr:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "%s: call it through a link named containerd or ctr\n", name)
		os.Exit(2)
	}
}
