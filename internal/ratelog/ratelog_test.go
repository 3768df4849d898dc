package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneLinePerReasonPerInterval(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Second, func() time.Time { return now })
	steps := []struct {
		desc    string
		advance time.Duration
		reason  string
		written bool
	}{
		{"first line of a reason", 0, "empty", true},
		{"same reason within the interval", time.Second, "empty", false},
		{"again within the interval", time.Second, "empty", false},
		{"another reason is independent", 0, "late", true},
		{"after the interval", 10 * time.Second, "empty", true},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if got := l.Warn(s.reason, "dropped", "n", 1); got != s.written {
			t.Errorf("%s: written = %v, want %v", s.desc, got, s.written)
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines = %q", lines)
	}
	if !strings.Contains(lines[2], "reason=empty") || !strings.Contains(lines[2], "suppressed=2") {
		t.Errorf("third line %q lacks reason=empty suppressed=2", lines[2])
	}
	if strings.Contains(lines[0], "suppressed") {
		t.Errorf("first line %q reports suppressed lines", lines[0])
	}
}

func TestReasonsAreBounded(t *testing.T) {
	l := New(nil, time.Minute, nil)
	for i := 0; i < 10*maxReasons; i++ {
		l.Warn(strings.Repeat("x", i%700), "m")
	}
	if n := len(l.reason); n > maxReasons+1 {
		t.Errorf("tracked reasons = %d, want ≤ %d", n, maxReasons+1)
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	if l.Warn("r", "m") {
		t.Error("nil logger wrote")
	}
}
