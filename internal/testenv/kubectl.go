package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// KubectlPath finds kubectl: $KUBECTL, then the PATH, then bin/kubectl ('make bin/kubectl'
// builds it from the pinned control-plane module).
func (e *Env) KubectlPath() (string, error) {
	if p := os.Getenv("KUBECTL"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p, nil
	}
	p := filepath.Join(e.Root, "bin", "kubectl")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("kubectl is neither on the PATH nor in bin/: run 'make bin/kubectl': %w", err)
	}
	return p, nil
}

// Kubectl runs kubectl against the control plane as the administrator, with stdin as its
// standard input, and returns its standard output and standard error.
func (e *Env) Kubectl(stdin string, args ...string) (stdout, stderr string, err error) {
	path, err := e.KubectlPath()
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err = Command{
		Path: path, Args: append([]string{"--kubeconfig", e.Kubeconfig}, args...),
		Stdin: strings.NewReader(stdin), Output: &out, Stderr: &errOut, StopGrace: time.Second,
	}.Run(ctx)
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), err
}
