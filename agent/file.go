package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
// reads, and writes only when the content changes: pwrite at offset 0, ftruncate, fsync.
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

	old, err := io.ReadAll(io.NewSectionReader(f, 0, MaxFileSize+1))
	if err != nil {
		return false, fmt.Errorf("reading hosts file %s: %w", path, err)
	}
	if len(old) > MaxFileSize {
		return false, fmt.Errorf("hosts file %s is larger than %d bytes", path, MaxFileSize)
	}
	content := update(old)
	if bytes.Equal(old, content) {
		return false, nil
	}
	if _, err := f.WriteAt(content, 0); err != nil {
		return false, fmt.Errorf("writing hosts file %s: %w", path, err)
	}
	if err := f.Truncate(int64(len(content))); err != nil {
		return false, fmt.Errorf("truncating hosts file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("syncing hosts file %s: %w", path, err)
	}
	return true, nil
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
