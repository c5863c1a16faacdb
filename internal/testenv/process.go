package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultStopGrace is how long Stop waits, after SIGTERM, before it kills a process.
const DefaultStopGrace = 30 * time.Second

// Command is a child process to start: for a test with StartProcess, or with Start for a
// program that runs the add-on locally (hack/run, make bench).
//
// Every process it starts dies with the process that started it, however that one ends (a
// test's failure, a panic, a timeout, SIGKILL): it gets SIGKILL as its parent-death signal. It is
// also the leader of a process group of its own, which Stop signals, so that what it starts in
// turn is stopped with it; and when it exits, whatever it left running in its group is killed.
// A process that a child puts in another group, or that outlives a killed child, is out of
// reach: the parent-death signal is the child's alone.
type Command struct {
	// Path is the program; Args are its arguments, without the program's name.
	Path string
	Args []string
	// Env is added to this process's environment.
	Env []string
	// Dir is the working directory; empty, this process's.
	Dir string
	// Stdin is the standard input; nil, none. A reader that is not an *os.File is copied by a
	// goroutine, which the process's end (Done) waits for: one that blocks never ends.
	Stdin io.Reader
	// Output receives standard output and standard error. When nil they are kept, for Output,
	// and logged when the test of StartProcess fails.
	Output io.Writer
	// Stderr, when not nil, receives standard error instead of Output.
	Stderr io.Writer
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL; zero is DefaultStopGrace.
	StopGrace time.Duration
}

// Process is a running child process of Command.
type Process struct {
	name  string
	cmd   *exec.Cmd
	out   *SyncBuffer
	grace time.Duration
	done  chan struct{}

	mu     sync.Mutex
	exited bool  // under mu: its group may no longer be signalled
	err    error // what Wait returned, once done is closed
}

// StartProcess starts c for the test: it is stopped (Stop) when the test ends, and its output,
// unless c.Output takes it, is logged if the test failed.
func StartProcess(t testing.TB, c Command) *Process {
	t.Helper()
	p, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() && p.out != nil {
			t.Logf("output of %s (pid %d):\n%s", p.name, p.Pid(), p.Output())
		}
	})
	return p
}

// Start starts the process. The caller stops it (Stop) when done.
func (c Command) Start() (*Process, error) {
	cmd := exec.Command(c.Path, c.Args...)
	if c.Env != nil {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Dir = c.Dir
	p := &Process{name: filepath.Base(c.Path), cmd: cmd, grace: c.StopGrace, done: make(chan struct{})}
	if p.grace == 0 {
		p.grace = DefaultStopGrace
	}
	if c.Output == nil {
		p.out = &SyncBuffer{}
		c.Output = p.out
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Output, c.Output
	if c.Stderr != nil {
		cmd.Stderr = c.Stderr
	}
	cmd.SysProcAttr = sysProcAttr()
	// A grandchild that keeps the output pipe open must not keep Wait from returning.
	cmd.WaitDelay = 10 * time.Second
	var err error
	onSpawnerThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", c.Path, err)
	}
	go p.wait()
	return p, nil
}

// Run starts the process and waits for it to exit, stopping it (Stop) if ctx ends first. It
// returns what exec.Cmd's Wait returned, or ctx's error.
func (c Command) Run(ctx context.Context) error {
	p, err := c.Start()
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.Err()
	case <-ctx.Done():
		p.Stop()
		return fmt.Errorf("%s: %w", c.Path, ctx.Err())
	}
}

func (p *Process) wait() {
	pid := p.cmd.Process.Pid
	// Until it is reaped, the pid (and so its group's id) cannot be taken by another process.
	if waitExited(pid) {
		p.mu.Lock()
		p.exited = true
		_ = syscall.Kill(-pid, syscall.SIGKILL) // what it left in its group
		p.mu.Unlock()
	}
	err := p.cmd.Wait()
	p.mu.Lock()
	p.exited, p.err = true, err
	p.mu.Unlock()
	close(p.done)
}

// signal sends sig to the process's group while the process has not exited; to the process
// alone if it has left its group (setsid).
func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(p.cmd.Process.Pid, sig)
	}
}

// Stop sends SIGTERM to the process's group, SIGKILL if it has not exited within the grace
// period, and waits for it to exit. Stopping an exited process does nothing.
func (p *Process) Stop() {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(p.grace):
		p.Kill()
	}
}

// Kill sends SIGKILL to the process's group and waits for it to exit.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited tells whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is what exec.Cmd's Wait returned (nil for exit code 0), once the process has exited.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// ExitCode is the process's exit code once it has exited, -1 before or when a signal ended it.
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Output is what the process has written so far, when Command.Output was nil.
func (p *Process) Output() string {
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// spawner is the goroutine on whose thread every child process of this package is forked, and
// envtest's etcd and kube-apiserver too (Start). A parent-death signal is sent when the thread
// that forked the child exits, not the process: Go threads normally live as long as the process,
// but one whose goroutine called runtime.LockOSThread and exited without unlocking is ended, and
// any goroutine, the test's included, may have run on a thread that a locked goroutine later
// takes. The spawner locks its thread and never returns, so no other goroutine ever runs there
// and the thread ends with the process alone. Nothing run on it may call runtime.Goexit
// (t.FailNow): that would end the thread, and with it every child.
var spawner struct {
	once  sync.Once
	calls chan func()
}

// onSpawnerThread runs f on the spawner's thread and returns when f has.
func onSpawnerThread(f func()) {
	spawner.once.Do(func() {
		spawner.calls = make(chan func())
		go func() {
			runtime.LockOSThread() // for good: see spawner
			for call := range spawner.calls {
				call()
			}
		}()
	})
	done := make(chan any, 1)
	spawner.calls <- func() {
		defer func() { done <- recover() }()
		f()
	}
	if v := <-done; v != nil {
		panic(v)
	}
}
