package testenv

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Build compiles the commands of the named packages (import paths) into a
// new temporary directory and returns it; a binary is named after its
// package's last path element.
func Build(t testing.TB, pkgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
	return dir
}

// Process is a command a test started (see StartProcess).
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  SyncBuffer
	done chan struct{} // closed when the process exited; err is then set
	err  error
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a process's
// output, a logger shared by goroutines).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *SyncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *SyncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartProcess starts bin with args (env, if any, is added to the test's
// environment), capturing its combined output. When the test ends the
// process is killed if it still runs, and if the test failed the last
// 4 KiB of its output are logged.
func StartProcess(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", name, filepath.Base(bin), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if p.Wait(15*time.Second) == ErrStillRunning {
			t.Errorf("%s: still running 15s after SIGKILL", name)
		}
		if t.Failed() {
			out := p.Output()
			if len(out) > 4096 {
				out = out[len(out)-4096:]
			}
			t.Logf("--- %s output (last 4 KiB):\n%s", name, out)
		}
	})
	return p
}

// Output is everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// ErrStillRunning is Wait's answer for a process that did not exit in time.
var ErrStillRunning = errors.New("still running")

// Wait waits up to within for the process to exit and returns its exit
// error (nil: status 0), or ErrStillRunning.
func (p *Process) Wait(within time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		return ErrStillRunning
	}
}
