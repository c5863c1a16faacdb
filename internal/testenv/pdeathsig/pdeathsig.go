// Package pdeathsig makes the processes that envtest starts, etcd and kube-apiserver, die with
// the process that started them, as every other child of internal/testenv does.
//
// envtest starts them without a parent-death signal and lets no caller set one. So testenv gives
// envtest, as the path of each binary, a link named like it (Wrap) to this process's own
// executable. The link's target is a program that imports this package (a test binary, hack/run),
// and this package's init, which runs before the packages of Kubernetes are initialized, sees the
// name: it asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG, which
// survives execve) and then executes the real binary in its place, as the same process with the
// same arguments and environment. envtest sees no difference: the process it started, its pid
// and its process group, is etcd or kube-apiserver.
package pdeathsig

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// parentFile, in the directory of the links, holds the pid of the process that made them: the
// only parent a wrapped binary may have.
const parentFile = ".pdeathsig-parent"

// Wrap returns a path that runs target with SIGKILL as its parent-death signal: a link in dir
// named like target. dir is created if needed and belongs to this process (the caller removes
// it); the process that runs the returned path must be a child of this one, started from a
// thread that lives as long as this process (see testenv's Command).
func Wrap(dir, target string) (string, error) {
	if !supported {
		return target, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding this executable: %w", err)
	}
	name := filepath.Base(target)
	if err := os.MkdirAll(filepath.Join(dir, "real"), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, parentFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	if err := os.Symlink(abs, filepath.Join(dir, "real", name)); err != nil {
		return "", err
	}
	link := filepath.Join(dir, name)
	if err := os.Symlink(self, link); err != nil {
		return "", err
	}
	return link, nil
}
