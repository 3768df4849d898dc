// Package dirlock guards a data directory with an exclusive advisory lock
// (flock on DIR/LOCK), so that two processes never write one directory's
// broker log or store at once. The lock file records its holder (pid,
// command, start time); a process that finds the directory locked gets an
// error naming that holder. The lock is released by Unlock or when the
// process exits, however it exits.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrLocked is wrapped by Lock's error when another process holds the lock.
var ErrLocked = errors.New("data directory is in use")

// FileName is the lock file inside the directory.
const FileName = "LOCK"

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// Acquire locks dir (which must exist) without waiting, and records this
// process as the holder.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			holder, _ := os.ReadFile(path)
			h := strings.TrimSpace(string(holder))
			if h == "" {
				h = "unknown process"
			}
			return nil, fmt.Errorf("%w: %s is locked by %s (%s); stop that process or use another directory", ErrLocked, dir, h, path)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	host, _ := os.Hostname()
	info := fmt.Sprintf("pid %d on %s (%s), since %s\n", os.Getpid(), host, strings.Join(os.Args, " "), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(info), 0)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. The file stays (removing it would race with a
// process opening it).
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.f.Truncate(0)
	err := unlockFile(l.f)
	return errors.Join(err, l.f.Close())
}
