package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// helperEnv tells this test binary, run again by a test below, to act as TestHelper's mode.
const helperEnv = "TCR_TESTENV_HELPER"

// TestHelper is the test process that the tests below start and end: it does what its mode
// says, and nothing in an ordinary run.
//
//   - fail, pass: starts a process that prints a marker, and fails or passes;
//   - orphans: starts the control plane and a sleep through the harness, says "ready" and the
//     control plane's directories, and waits; reading "panic" on its standard input, it panics in
//     a goroutine (no cleanup runs).
func TestHelper(t *testing.T) {
	mode := os.Getenv(helperEnv)
	switch mode {
	case "":
		return // an ordinary run: nothing to do, as os/exec's TestHelperProcess
	case "fail", "pass":
		p := StartProcess(t, Command{Path: "sh", Args: []string{"-c", "echo the child process wrote this"}})
		<-p.Done()
		if mode == "fail" {
			t.Error("failing on purpose")
		}
	case "orphans":
		env, err := Start()
		require.NoError(t, err)
		t.Cleanup(func() { _ = env.Stop() })
		StartProcess(t, Command{Path: "sleep", Args: []string{"600"}})
		fmt.Printf("ready %s %s %s\n", env.dir, env.certDir, env.env.ControlPlane.Etcd.DataDir)
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if strings.TrimSpace(line) == "panic" {
			go panic("panicking on purpose, outside the test's goroutine")
		}
		time.Sleep(10 * time.Minute)
	default:
		t.Fatalf("unknown %s=%s", helperEnv, mode)
	}
}

// helper runs this test binary again as TestHelper in mode.
func helper(mode string, stdin io.Reader, out io.Writer) Command {
	return Command{
		Path: os.Args[0], Args: []string{"-test.run=^TestHelper$", "-test.v", "-test.count=1"},
		Env: []string{helperEnv + "=" + mode}, Stdin: stdin, Output: out, StopGrace: 5 * time.Second,
	}
}

// TestOutputIsLoggedWhenTheTestFails: a child's output is in the log of a failed test only.
func TestOutputIsLoggedWhenTheTestFails(t *testing.T) {
	for mode, logged := range map[string]bool{"fail": true, "pass": false} {
		t.Run(mode, func(t *testing.T) {
			var out SyncBuffer
			err := helper(mode, nil, &out).Run(context.Background())
			assert.Equal(t, logged, err != nil, "the helper test failed: %v\n%s", err, out.String())
			if logged {
				assert.Regexp(t, `output of sh \(pid \d+\):\n\s*the child process wrote this`, out.String())
			} else {
				assert.NotContains(t, out.String(), "the child process wrote this")
			}
		})
	}
}

// TestStopEndsTheProcessGroup: what a child started in turn is stopped with it at the end of the
// test, and so is what a child that exited on its own left behind.
func TestStopEndsTheProcessGroup(t *testing.T) {
	var left []proc
	t.Run("stopped at the end of the test", func(t *testing.T) {
		p := StartProcess(t, Command{Path: "sh", Args: []string{"-c", "sleep 600 & echo $!; wait"}})
		left = append(left, procOf(t, p.Pid()), procOf(t, grandchild(t, p)))
	})
	t.Run("exited on its own", func(t *testing.T) {
		stdin, tell, err := os.Pipe()
		require.NoError(t, err)
		t.Cleanup(func() { _ = stdin.Close() })
		p := StartProcess(t, Command{Path: "sh", Args: []string{"-c", "sleep 600 & echo $!; read line"}, Stdin: stdin})
		left = append(left, procOf(t, grandchild(t, p)))
		require.NoError(t, tell.Close()) // sh reads the end of its input and exits
		select {
		case <-p.Done():
		case <-time.After(time.Minute):
			t.Fatal("sh did not exit at the end of its input")
		}
	})
	assertGone(t, left)
}

// TestRunStopsAtTheContextsEnd: Run stops a process that outlives its context.
func TestRunStopsAtTheContextsEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	started := time.Now()
	err := Command{Path: "sleep", Args: []string{"600"}}.Run(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(started), time.Minute)
}

// TestChildOutlivesTheThreadThatAskedForIt: a parent-death signal comes when the thread that
// forked the child exits. A goroutine that locks its thread and returns ends that thread; a
// child it started must live on.
func TestChildOutlivesTheThreadThatAskedForIt(t *testing.T) {
	started := make(chan *Process, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		p, err := Command{Path: "sleep", Args: []string{"600"}}.Start()
		if !assert.NoError(t, err) {
			close(started)
			return
		}
		started <- p
	}()
	p, ok := <-started
	require.True(t, ok)
	t.Cleanup(p.Stop)
	// The goroutine has returned, its thread is ending or gone; the child's signal would be
	// delivered at once.
	time.Sleep(500 * time.Millisecond)
	assert.False(t, p.Exited(), "the child died with the thread of the goroutine that started it: %v", p.Err())
}

// TestChildrenDieWithTheTestProcess runs a test process (TestHelper) that starts the control
// plane and a process through the harness, ends it without letting it clean up, by SIGKILL or
// by a panic outside its test's goroutine, and expects etcd, kube-apiserver and the process to
// be gone within seconds.
func TestChildrenDieWithTheTestProcess(t *testing.T) {
	root, err := RepoRoot()
	require.NoError(t, err)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	for _, how := range []string{"SIGKILL", "panic"} {
		t.Run(how, func(t *testing.T) {
			var out SyncBuffer
			// A file, not an io.Pipe: the child reads it itself, and no goroutine copying it
			// keeps Done from closing.
			stdin, tell, err := os.Pipe()
			require.NoError(t, err)
			t.Cleanup(func() { _ = stdin.Close(); _ = tell.Close() })
			test := StartProcess(t, helper("orphans", stdin, &out))
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				require.False(c, test.Exited(), "the helper test ended early")
				assert.Contains(c, out.String(), "ready ")
			}, 3*time.Minute, 50*time.Millisecond, "the helper test never started its children:\n%s", &out)

			children := childrenOf(t, test.Pid())
			byName := map[string]proc{}
			for _, c := range children {
				byName[c.name] = c
			}
			require.Len(t, byName, 3, "%v", children)
			for _, name := range []string{"etcd", "kube-apiserver"} {
				// The link was executed, in place, by the real binary.
				want, err := filepath.EvalSymlinks(filepath.Join(assets, name))
				require.NoError(t, err)
				got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", byName[name].pid))
				require.NoError(t, err)
				assert.Equal(t, want, got, name)
			}
			require.Contains(t, byName, "sleep")

			if how == "SIGKILL" {
				require.NoError(t, syscall.Kill(test.Pid(), syscall.SIGKILL))
			} else {
				_, err := io.WriteString(tell, "panic\n")
				require.NoError(t, err)
			}
			select {
			case <-test.Done():
			case <-time.After(time.Minute):
				t.Fatal("the helper test did not end")
			}
			if how == "panic" {
				require.Contains(t, out.String(), "panicking on purpose")
			}
			assertGone(t, children)
			// What the helper's Stop would have removed.
			_, dirs, _ := strings.Cut(out.String(), "ready ")
			dirs, _, _ = strings.Cut(dirs, "\n")
			for _, d := range strings.Fields(dirs) {
				assert.NoError(t, os.RemoveAll(d))
			}
		})
	}
}

// proc is a process, told from a later one of the same pid by its start time.
type proc struct {
	pid   int
	name  string
	start string
}

func (p proc) String() string { return fmt.Sprintf("%s (pid %d)", p.name, p.pid) }

// stat reads /proc/<pid>/stat: the command's name and the fields after it (state first).
func stat(pid int) (name string, fields []string, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", nil, err
	}
	s := string(data)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", nil, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return s[open+1 : end], strings.Fields(s[end+1:]), nil
}

func procOf(t *testing.T, pid int) proc {
	t.Helper()
	name, fields, err := stat(pid)
	require.NoError(t, err)
	return proc{pid: pid, name: name, start: fields[19]}
}

// running tells whether p still runs: it exists, as the same process, and is no zombie.
func (p proc) running() bool {
	_, fields, err := stat(p.pid)
	return err == nil && fields[19] == p.start && fields[0] != "Z" && fields[0] != "X"
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var children []proc
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, fields, err := stat(n)
		if err != nil || fields[1] != strconv.Itoa(pid) {
			continue
		}
		children = append(children, proc{pid: n, name: name, start: fields[19]})
	}
	return children
}

// grandchild reads the pid that p's first line of output names.
func grandchild(t *testing.T, p *Process) int {
	t.Helper()
	var pid int
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		line, _, found := strings.Cut(p.Output(), "\n")
		require.True(c, found, "no line yet")
		var err error
		pid, err = strconv.Atoi(line)
		require.NoError(c, err)
	}, 10*time.Second, 10*time.Millisecond)
	return pid
}

// assertGone waits a few seconds for every process of ps to be gone.
func assertGone(t *testing.T, ps []proc) {
	t.Helper()
	assert.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, p := range ps {
			assert.False(c, p.running(), "%s is still running", p)
		}
	}, 5*time.Second, 20*time.Millisecond)
}
