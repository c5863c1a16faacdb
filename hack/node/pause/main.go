// Command pause is the sandbox ("pause") container of the single-node test cluster: it holds a
// Pod's namespaces and waits for SIGINT or SIGTERM. It is built here because no image can be
// pulled from outside; make node-up imports it into containerd and pins it as the sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
