package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// errCrashed is what crashNow panics with in the tests that stop a write in-process: the panic
// unwinds UpdateFile as a process's death would end it, closing the file, which releases the
// lock, and running no other code.
var errCrashed = errors.New("crashed")

// updateCrashingAfter runs UpdateFile with the fault-injection point set to stop it after k
// bytes, and reports whether it stopped.
func updateCrashingAfter(t *testing.T, k int, path string, update func([]byte) []byte) (crashed bool) {
	t.Helper()
	crashAfter, crashNow = k, func() { panic(errCrashed) }
	defer func() {
		crashAfter, crashNow = -1, nil
		if r := recover(); r != nil {
			require.Equal(t, errCrashed, r)
			crashed = true
		}
	}()
	_, err := UpdateFile(context.Background(), path, update)
	require.NoError(t, err)
	return false
}

// crashCases are files before a write, and the entries the write applies.
var crashCases = map[string]struct {
	old     string
	entries []Entry
}{
	"a block added at the end": {
		old:     "127.0.0.1 localhost\n# cloud-init\n10.1.2.3\tnode-1\n",
		entries: demoEntries,
	},
	"a longer block between foreign lines": {
		old:     "127.0.0.1 localhost\n" + BeginMarker + "\n10.0.0.9 x.example\n" + EndMarker + "\n10.1.2.3\tnode-1\n::1 localhost",
		entries: []Entry{{Domain: "demo.tencentcloudcr.com", IP: "10.0.0.2"}, {Domain: "v6.tencentcloudcr.com", IP: "fd00::2"}},
	},
	"a block removed, the file getting shorter": {
		old:     "127.0.0.1 localhost\r\n" + BeginMarker + "\r\n10.0.0.1 a-very-long-name.example\r\n10.0.0.2 another-long-name.example\r\n" + EndMarker + "\r\n# after\r\n",
		entries: nil,
	},
}

// TestWriteIsCrashConsistent stops a write after every possible number of bytes, the repair of
// that write too, and checks that the next run leaves exactly the file an uninterrupted write
// would have, with every foreign line intact.
func TestWriteIsCrashConsistent(t *testing.T) {
	for name, tc := range crashCases {
		t.Run(name, func(t *testing.T) {
			update := func(old []byte) []byte { return Merge(old, tc.entries).Content }
			want := string(update([]byte(tc.old)))
			path := filepath.Join(memTempDir(t), "hosts")
			k := 0
			for ; ; k++ {
				require.NoError(t, os.WriteFile(path, []byte(tc.old), 0o644))
				if !updateCrashingAfter(t, k, path, update) {
					break
				}
				crashed := fileContent(t, path)
				if k > 0 && k < 2*len(want) {
					// A crash during the repair is repaired in turn.
					updateCrashingAfter(t, k/2, path, update)
				}
				changed, err := UpdateFile(context.Background(), path, update)
				require.NoError(t, err)
				got := fileContent(t, path)
				require.Equal(t, want, got, "after a crash at byte %d, which left %q", k, crashed)
				assert.Equal(t, crashed != want, changed, "after a crash at byte %d", k)
			}
			// Every byte of the write was a possible crash point.
			assert.Equal(t, len(journalRecord(len(tc.old), []byte(want)))+len(want)+1, k, "crash points")
		})
	}
}

// memTempDir returns a temporary directory in memory when there is one (/dev/shm), where the
// syncs of hundreds of writes cost nothing: these tests stop the process, not the machine.
func memTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "tcr-agent-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func fileContent(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

// crashChild marks the copy of the test binary that kills itself in the middle of a write.
const crashChild = "TCR_AGENT_TEST_CRASH_AFTER"

// TestKilledProcessIsRepairedByTheNextRun runs a write in a child process that the
// fault-injection point kills (SIGKILL, as the OOM killer would) in the middle of the journal,
// in the middle of the content, and between the write and the truncate, and checks that the next
// run restores a correct file with every foreign line intact.
func TestKilledProcessIsRepairedByTheNextRun(t *testing.T) {
	tc := crashCases["a block removed, the file getting shorter"]
	update := func(old []byte) []byte { return Merge(old, tc.entries).Content }
	if k := os.Getenv(crashChild); k != "" {
		crashAfter, _ = strconv.Atoi(k)
		crashNow = func() {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		_, err := UpdateFile(context.Background(), os.Getenv(crashChild+"_FILE"), update)
		require.NoError(t, err)
		t.Fatal("the fault-injection point did not stop the process")
	}

	want := string(update([]byte(tc.old)))
	record := len(journalRecord(len(tc.old), []byte(want)))
	for name, k := range map[string]int{
		"in the middle of the journal":            record / 2,
		"in the middle of the content":            record + len(want)/2,
		"between the write and the truncate":      record + len(want),
		"after the journal, before the content":   record,
		"in the middle of the journal's magic":    len(journalMagic) / 2,
		"after the journal's header, before more": strings.Index(string(journalRecord(len(tc.old), []byte(want))), "\n") + 1,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hosts")
			require.NoError(t, os.WriteFile(path, []byte(tc.old), 0o644))
			cmd := exec.Command(os.Args[0], "-test.run=^TestKilledProcessIsRepairedByTheNextRun$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashChild+"="+strconv.Itoa(k), crashChild+"_FILE="+path)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "output:\n%s", out)
			ws := exit.Sys().(syscall.WaitStatus)
			require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "the child was not killed: %v\n%s", err, out)
			crashed := fileContent(t, path)
			require.NotEqual(t, tc.old, crashed, "the child wrote nothing")
			require.NotEqual(t, want, crashed, "the child was not stopped in the middle of the write")

			changed, err := UpdateFile(context.Background(), path, update)
			require.NoError(t, err)
			assert.True(t, changed)
			got := fileContent(t, path)
			assert.Equal(t, want, got, "left by the crash: %q", crashed)
			for _, l := range []string{"127.0.0.1 localhost\r\n", "# after\r\n"} {
				assert.Equal(t, 1, strings.Count(got, l), "foreign line %q", l)
			}
		})
	}
}

// FuzzRecoverContent stops, for any old and new content, a write after any number of bytes, and
// checks that the next run finds exactly the old content (the journal was not whole) or the new
// one (it was); and that recoverContent takes any file.
func FuzzRecoverContent(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n"), []byte("127.0.0.1 localhost\n"+demoBlock), uint16(30))
	f.Add([]byte("a\r\n"+demoBlock+"b"), []byte("a\r\nb"), uint16(70))
	f.Fuzz(func(t *testing.T, old, content []byte, at uint16) {
		recoverContent(old)
		if bytes.IndexByte(old, 0) >= 0 || bytes.IndexByte(content, 0) >= 0 || bytes.Equal(old, content) {
			return // a hosts file holds no NUL; an equal content is not written
		}
		path := filepath.Join(memTempDir(t), "hosts")
		require.NoError(t, os.WriteFile(path, old, 0o644))
		record := len(journalRecord(len(old), content))
		k := int(at) % (record + len(content) + 1)
		require.True(t, updateCrashingAfter(t, k, path, func([]byte) []byte { return content }))
		_, err := UpdateFile(context.Background(), path, func(b []byte) []byte { return b })
		require.NoError(t, err)
		want := content
		if k < record {
			want = old
		}
		require.Equal(t, string(want), fileContent(t, path), "crash at byte %d of %d", k, record+len(content))
	})
}

// TestATornJournalRecordIsNeverTaken: a journal record of the right length whose body is not
// what its checksum says (one byte flipped, or zero-filled as a torn write on some filesystems
// leaves it) is never taken as the new content. The next run truncates the file back to the
// content it held before the interrupted write; the whole record, for contrast, is rolled
// forward.
func TestATornJournalRecordIsNeverTaken(t *testing.T) {
	for name, tc := range crashCases {
		content := Merge([]byte(tc.old), tc.entries).Content
		require.NotEqual(t, tc.old, string(content), name)
		at := max(len(tc.old), len(content))
		// The file as step 1 of writeContent leaves it: the old content, a hole of NULs up to
		// the record, the record.
		file := func(record []byte) []byte {
			raw := append([]byte(tc.old), make([]byte, at-len(tc.old))...)
			return append(raw, record...)
		}
		whole := journalRecord(len(tc.old), content)
		body := len(whole) - len(content)
		flipped := bytes.Clone(whole)
		flipped[body+len(content)/2] ^= 0x20
		zeroed := bytes.Clone(whole)
		clear(zeroed[body:])
		for what, tt := range map[string]struct {
			record []byte
			want   string
		}{
			"whole":             {whole, string(content)},
			"one byte flipped":  {flipped, tc.old},
			"zero-filled body":  {zeroed, tc.old},
			"flipped, last one": {append(bytes.Clone(whole[:len(whole)-1]), whole[len(whole)-1]^1), tc.old},
		} {
			t.Run(name+"/"+what, func(t *testing.T) {
				require.Len(t, tt.record, len(whole), "a record of the right length")
				got, interrupted := recoverContent(file(tt.record))
				assert.True(t, interrupted)
				assert.Equal(t, tt.want, string(got))

				path := filepath.Join(t.TempDir(), "hosts")
				require.NoError(t, os.WriteFile(path, file(tt.record), 0o644))
				changed, err := UpdateFile(context.Background(), path, func(b []byte) []byte { return b })
				require.NoError(t, err)
				assert.True(t, changed, "the interrupted write is repaired")
				assert.Equal(t, tt.want, fileContent(t, path))
			})
		}
	}
}
