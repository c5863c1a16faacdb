package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"syscall"
	"time"
)

// MaxFileSize bounds what the agent reads of a hosts file, so that a runaway writer cannot make
// a node agent with a 100Mi limit run out of memory. Real hosts files are a few kilobytes.
const MaxFileSize = 4 << 20

// lockPollMin and lockPollMax pace the wait for another writer's flock: flock(2) itself cannot
// be cancelled, so the agent polls a non-blocking flock until its context ends.
const (
	lockPollMin = 10 * time.Millisecond
	lockPollMax = 200 * time.Millisecond
)

// UpdateFile rewrites the file at path to update(content) in place, and reports whether it
// wrote. It never replaces the file by rename, because /etc/hosts is often a bind mount where
// rename fails with EBUSY (and a rename would break the bind mount anyway). It opens without
// following a symbolic link, takes an exclusive flock (waiting for other writers until ctx ends),
// first finishes or undoes a write that a crash interrupted (see writeContent), reads, and writes
// only when the content changes.
func UpdateFile(ctx context.Context, path string, update func([]byte) []byte) (changed bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return false, fmt.Errorf("hosts file %s is a symbolic link, which is not followed: %w", path, err)
		}
		return false, fmt.Errorf("opening hosts file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing hosts file %s: %w", path, cerr)
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("inspecting hosts file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("hosts file %s is not a regular file (mode %s)", path, fi.Mode())
	}
	if err := lock(ctx, f); err != nil {
		return false, fmt.Errorf("waiting for the lock on hosts file %s: %w", path, err)
	}
	// Closing the file releases the lock.

	// With a journal, the file may hold twice MaxFileSize and a header.
	const maxRaw = 2*MaxFileSize + journalHeaderMax
	raw, err := io.ReadAll(io.NewSectionReader(f, 0, int64(maxRaw)+1))
	if err != nil {
		return false, fmt.Errorf("reading hosts file %s: %w", path, err)
	}
	if len(raw) > maxRaw {
		return false, fmt.Errorf("hosts file %s is larger than %d bytes", path, MaxFileSize)
	}
	w := &fileWriter{f: f, crashAfter: crashAfter}
	old, interrupted := recoverContent(raw)
	if interrupted {
		// Roll the interrupted write forward (or back) before anything else, so that a new
		// journal never overwrites the only whole copy of the content.
		if err := w.finish(old); err != nil {
			return false, fmt.Errorf("repairing hosts file %s after an interrupted write: %w", path, err)
		}
		changed = true
	}
	if len(old) > MaxFileSize {
		return changed, fmt.Errorf("hosts file %s is larger than %d bytes", path, MaxFileSize)
	}
	content := update(old)
	if bytes.Equal(old, content) {
		return changed, nil
	}
	if err := w.writeContent(len(old), content); err != nil {
		return changed, fmt.Errorf("writing hosts file %s: %w", path, err)
	}
	return true, nil
}

// A write is crash-consistent through a redo journal kept in the file itself: the agent may
// write nothing but the hosts file (its directory is read-only, and a rename would break the bind
// mount), so there is no other place for a second copy. writeContent of content over a file of
// oldLen bytes:
//
//  1. appends at J = max(oldLen, len(content)) the record journalMagic, "oldLen len crc32\n",
//     content (the bytes between oldLen and J, when content is longer, are a hole of NULs), and
//     syncs: the first oldLen bytes, the old content, are untouched;
//  2. writes content at 0, below J, and syncs;
//  3. truncates the file to len(content), which drops the record, and syncs.
//
// A process stopped anywhere (or a node crash after one of the syncs) leaves either a file
// ending in NULs and part of a record, which holds the old content before the first NUL, or a
// whole record, which holds the new content: recoverContent tells them apart by the record's
// checksum, and the next UpdateFile finishes the write (steps 2 and 3 again) or truncates it back
// to the old content. No foreign line is ever lost or doubled, and no old byte is left behind as
// a line of its own. A NUL never occurs in a hosts file; to resolvers, which read a line up to a
// NUL, the record is an empty line followed for a moment by the lines of the new content.
const journalMagic = "\x00tcr-assistant hosts journal "

// journalHeaderMax bounds the header after journalMagic: two lengths, a checksum, a newline.
const journalHeaderMax = len(journalMagic) + 2*20 + 2 + 8 + 1

func journalRecord(oldLen int, content []byte) []byte {
	header := fmt.Sprintf("%s%d %d %08x\n", journalMagic, oldLen, len(content), crc32.ChecksumIEEE(content))
	return append([]byte(header), content...)
}

// recoverContent returns the content a file stands for, and whether a write was interrupted:
// the content of a whole journal record, or the bytes before an unfinished one.
func recoverContent(raw []byte) (content []byte, interrupted bool) {
	if i := bytes.LastIndex(raw, []byte(journalMagic)); i >= 0 {
		if body, ok := parseJournal(raw, i); ok {
			return body, true
		}
		return bytes.TrimRight(raw[:i], "\x00"), true
	}
	// The process stopped within journalMagic itself.
	for n := min(len(journalMagic)-1, len(raw)); n > 0; n-- {
		if bytes.HasSuffix(raw, []byte(journalMagic[:n])) {
			return bytes.TrimRight(raw[:len(raw)-n], "\x00"), true
		}
	}
	return raw, false
}

// parseJournal returns the content of the record at raw[i:] when the record is whole: its header
// parses, it starts where writeContent puts it, and its content is all there, ending the file,
// with the right checksum.
func parseJournal(raw []byte, i int) ([]byte, bool) {
	rest := raw[i+len(journalMagic):]
	nl := bytes.IndexByte(rest[:min(len(rest), journalHeaderMax)], '\n')
	if nl < 0 {
		return nil, false
	}
	var oldLen, n int
	var sum uint32
	if k, err := fmt.Sscanf(string(rest[:nl]), "%d %d %08x", &oldLen, &n, &sum); k != 3 || err != nil {
		return nil, false
	}
	body := rest[nl+1:]
	if i != max(oldLen, n) || len(body) != n || crc32.ChecksumIEEE(body) != sum {
		return nil, false
	}
	return body, true
}

// fileWriter writes the hosts file, through the fault-injection point crashAfter.
type fileWriter struct {
	f          *os.File
	crashAfter int // bytes to write before stopping; -1 never
	written    int
}

// crashAfter and crashNow are a fault-injection point for tests: when crashAfter is not -1,
// UpdateFile calls crashNow, which does not return, once it has written crashAfter bytes in
// all, in the middle of a write when the count falls inside one.
var (
	crashAfter = -1
	crashNow   func()
)

func (w *fileWriter) writeAt(p []byte, off int64) error {
	if w.crashAfter >= 0 && w.written+len(p) > w.crashAfter {
		_, _ = w.f.WriteAt(p[:w.crashAfter-w.written], off)
		crashNow()
	}
	w.written += len(p)
	_, err := w.f.WriteAt(p, off)
	return err
}

// sync makes what was written durable before the next step; a crash stops before it once every
// byte of the step was written, between the write and the truncate in particular.
func (w *fileWriter) sync() error {
	if w.crashAfter >= 0 && w.written >= w.crashAfter {
		crashNow()
	}
	return w.f.Sync()
}

func (w *fileWriter) writeContent(oldLen int, content []byte) error {
	if err := w.writeAt(journalRecord(oldLen, content), int64(max(oldLen, len(content)))); err != nil {
		return err
	}
	if err := w.sync(); err != nil {
		return err
	}
	return w.finish(content)
}

// finish writes content at 0 and truncates the file to it: steps 2 and 3 of writeContent, and
// the repair of a file whose write was interrupted.
func (w *fileWriter) finish(content []byte) error {
	if err := w.writeAt(content, 0); err != nil {
		return err
	}
	if err := w.sync(); err != nil {
		return err
	}
	if err := w.f.Truncate(int64(len(content))); err != nil {
		return err
	}
	return w.f.Sync()
}

// lock takes an exclusive flock on f, waiting with a growing poll interval until ctx ends.
func lock(ctx context.Context, f *os.File) error {
	wait := lockPollMin
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, lockPollMax)
	}
}
