package pdeathsig

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

const supported = true

func init() {
	dir, name := filepath.Split(os.Args[0])
	parent, err := os.ReadFile(filepath.Join(dir, parentFile))
	if err != nil {
		return // an ordinary start of this program
	}
	// The signal is the calling thread's, and kept by the thread that calls execve: both on the
	// same thread.
	runtime.LockOSThread()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "%s: setting the parent-death signal: %v\n", name, errno)
		os.Exit(126)
	}
	// The parent may have died before the signal was set, and the signal would then never come.
	if strconv.Itoa(os.Getppid()) != strings.TrimSpace(string(parent)) {
		os.Exit(1)
	}
	target := filepath.Join(dir, "real", name)
	err = syscall.Exec(target, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "%s: executing %s: %v\n", name, target, err)
	os.Exit(127)
}
