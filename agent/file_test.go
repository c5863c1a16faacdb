package agent

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var demoEntries = []Entry{{Domain: "demo.tencentcloudcr.com", IP: "10.0.0.2"}}

func mergeDemo(old []byte) []byte { return Merge(old, demoEntries).Content }

const demoBlock = BeginMarker + "\n10.0.0.2 demo.tencentcloudcr.com\n" + EndMarker + "\n"

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestUpdateFile(t *testing.T) {
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := map[string]struct {
		// setup creates what is at path in dir.
		setup       func(t *testing.T, dir, path string)
		wantChanged bool
		wantContent string
		wantErr     string // with PATH standing for the path
	}{
		"a file is rewritten in place, keeping its inode and mode": {
			setup: func(t *testing.T, _, path string) {
				require.NoError(t, os.WriteFile(path, []byte("127.0.0.1 localhost\n"), 0o644))
			},
			wantChanged: true,
			wantContent: "127.0.0.1 localhost\n" + demoBlock,
		},
		"a shorter content truncates the file": {
			setup: func(t *testing.T, _, path string) {
				long := "127.0.0.1 localhost\n" + BeginMarker + "\n10.0.0.1 a-very-long-name.example\n10.0.0.2 another-long-name.example\n" + EndMarker + "\n"
				require.NoError(t, os.WriteFile(path, []byte(long), 0o644))
			},
			wantChanged: true,
			wantContent: "127.0.0.1 localhost\n" + demoBlock,
		},
		"a file already as configured is not written": {
			setup: func(t *testing.T, _, path string) {
				require.NoError(t, os.WriteFile(path, []byte("127.0.0.1 localhost\n"+demoBlock), 0o644))
				require.NoError(t, os.Chtimes(path, past, past))
			},
			wantChanged: false,
			wantContent: "127.0.0.1 localhost\n" + demoBlock,
		},
		"a symbolic link is not followed": {
			setup: func(t *testing.T, dir, path string) {
				target := filepath.Join(dir, "elsewhere")
				require.NoError(t, os.WriteFile(target, []byte("x\n"), 0o644))
				require.NoError(t, os.Symlink(target, path))
			},
			wantErr: "hosts file PATH is a symbolic link, which is not followed: open PATH: too many levels of symbolic links",
		},
		"a directory is refused": {
			setup: func(t *testing.T, _, path string) {
				require.NoError(t, os.Mkdir(path, 0o755))
			},
			wantErr: "opening hosts file: open PATH: is a directory",
		},
		"a FIFO is refused": {
			setup: func(t *testing.T, _, path string) {
				require.NoError(t, syscall.Mkfifo(path, 0o644))
				// Opening a FIFO read-write does not block; the agent must still refuse it.
			},
			wantErr: "hosts file PATH is not a regular file (mode prw-r--r--)",
		},
		"a missing file is an error, not created": {
			setup:   func(*testing.T, string, string) {},
			wantErr: "opening hosts file: open PATH: no such file or directory",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "hosts")
			tc.setup(t, dir, path)
			var before os.FileInfo
			if tc.wantErr == "" {
				var err error
				before, err = os.Stat(path)
				require.NoError(t, err)
			}
			ino := uint64(0)
			if tc.wantErr == "" {
				ino = inode(t, path)
			}

			changed, err := UpdateFile(context.Background(), path, mergeDemo)
			if tc.wantErr != "" {
				require.EqualError(t, err, replacePath(tc.wantErr, path))
				assert.False(t, changed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantChanged, changed)
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tc.wantContent, string(got))
			after, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, ino, inode(t, path), "the file was replaced, not written in place")
			assert.Equal(t, before.Mode(), after.Mode())
			if !tc.wantChanged {
				assert.Equal(t, past, after.ModTime().UTC(), "a file that needed no change was written")
			}
		})
	}
}

func replacePath(s, path string) string { return strings.ReplaceAll(s, "PATH", path) }

// holdLock starts flock(1) holding an exclusive lock on path until release is called.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command("flock", "--exclusive", path, "sh", "-c", "echo locked; read line")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		_ = stdin.Close()
		_ = cmd.Wait()
	}
	t.Cleanup(release)
	return release
}

func TestUpdateFileWaitsForAnotherWritersLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	require.NoError(t, os.WriteFile(path, []byte("127.0.0.1 localhost\n"), 0o644))
	release := holdLock(t, path)

	type result struct {
		changed bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		changed, err := UpdateFile(ctx, path, mergeDemo)
		done <- result{changed, err}
	}()

	// While the other process holds the lock, the agent neither returns nor writes.
	require.Never(t, func() bool { return len(done) > 0 }, time.Second, 50*time.Millisecond)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1 localhost\n", string(got))

	release()
	var res result
	select {
	case res = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the agent did not apply after the lock was released")
	}
	require.NoError(t, res.err)
	assert.True(t, res.changed)
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1 localhost\n"+demoBlock, string(got))
}

func TestUpdateFileGivesUpWhenItsContextEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	require.NoError(t, os.WriteFile(path, []byte("127.0.0.1 localhost\n"), 0o644))
	holdLock(t, path)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	changed, err := UpdateFile(ctx, path, mergeDemo)
	require.EqualError(t, err, "waiting for the lock on hosts file "+path+": context deadline exceeded")
	assert.False(t, changed)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1 localhost\n", string(got))
}

// inMountNamespace marks the copy of the test binary that runs in a private mount namespace.
const inMountNamespace = "TCR_AGENT_TEST_IN_MOUNT_NAMESPACE"

// TestBindMountedHostsFile shows why the agent writes in place: in a private mount namespace
// (unshare -m), where the hosts file is a bind mount as in a container or a node's pod, a
// rename over it fails with EBUSY, and the agent's write succeeds and reaches the mounted file.
func TestBindMountedHostsFile(t *testing.T) {
	if os.Getenv(inMountNamespace) != "1" {
		cmd := exec.Command("unshare", "--mount", "--propagation", "private",
			os.Args[0], "-test.run=^TestBindMountedHostsFile$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), inMountNamespace+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "the test in the mount namespace failed:\n%s", out)
		require.Contains(t, string(out), "--- PASS: TestBindMountedHostsFile", "output:\n%s", out)
		t.Logf("in the private mount namespace:\n%s", out)
		return
	}

	dir := t.TempDir()
	node := filepath.Join(dir, "node-hosts") // the node's file
	mounted := filepath.Join(dir, "hosts")   // what the container sees
	require.NoError(t, os.WriteFile(node, []byte("127.0.0.1 localhost\n"), 0o644))
	require.NoError(t, os.WriteFile(mounted, nil, 0o644))
	require.NoError(t, syscall.Mount(node, mounted, "", syscall.MS_BIND, ""))
	t.Cleanup(func() { _ = syscall.Unmount(mounted, 0) })

	replacement := filepath.Join(dir, "hosts.new")
	require.NoError(t, os.WriteFile(replacement, []byte("127.0.0.1 localhost\n"+demoBlock), 0o644))
	err := os.Rename(replacement, mounted)
	require.ErrorIs(t, err, syscall.EBUSY, "rename over a bind-mounted file")
	t.Logf("Rename over the bind mount failed as expected: %v", err)

	changed, err := UpdateFile(context.Background(), mounted, mergeDemo)
	require.NoError(t, err)
	assert.True(t, changed)
	for _, p := range []string{mounted, node} {
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1 localhost\n"+demoBlock, string(got), p)
	}
}
