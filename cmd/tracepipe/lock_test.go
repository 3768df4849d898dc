package main

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/internal/dirlock"
)

// TestRunRefusesLockedDataDir: `tracepipe run` on a data directory another
// process holds stops at once with an error naming the holder (before: both
// ran and corrupted the embedded broker's log).
func TestRunRefusesLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	l, err := dirlock.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	err = runRun(context.Background(), []string{"--data-dir", dir, "--broker-listen", "127.0.0.1:0", "--listen", "", "--metrics-addr", ""}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("run on a locked data dir: %v", err)
	}
}
