// Command imagetar writes a Docker image tarball, as 'ctr images import' reads it, of one static
// program at /NAME with entrypoint /NAME (internal/image.Program): imagetar REF BINARY OUT.tar NAME.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/tcr-assistant/tcr-assistant/internal/image"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: imagetar REF BINARY OUT.tar NAME")
		os.Exit(2)
	}
	if err := write(os.Args[1], os.Args[2], os.Args[3], os.Args[4]); err != nil {
		fmt.Fprintln(os.Stderr, "imagetar:", err)
		os.Exit(1)
	}
}

func write(ref, binary, out, entry string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	img, err := image.Program(binary, entry, runtime.GOARCH)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, img)
}
