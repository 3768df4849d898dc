// Package ratelog writes log lines about dropped or rejected input at most
// once per reason per interval, so a stream of bad input cannot flood the
// log while every kind of drop still shows up in it. Lines held back are
// counted and reported ("suppressed") with the next line of their reason.
// It is the one rate-limited logging helper of tracepipe: every stage that
// drops something logs it through here, beside the drop's metric.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is the interval used by the stages.
const DefaultEvery = 10 * time.Second

// maxReasons bounds the reasons tracked; further reasons share one entry.
const maxReasons = 256

// Logger rate-limits lines by reason. It is safe for concurrent use.
type Logger struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	reason map[string]*state
}

type state struct {
	last       time.Time
	suppressed int
}

// New returns a Logger writing to log (nil: discard) at most one line per
// reason every interval (≤0: DefaultEvery), reading the time from now (nil:
// time.Now).
func New(log *slog.Logger, every time.Duration, now func() time.Time) *Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if every <= 0 {
		every = DefaultEvery
	}
	if now == nil {
		now = time.Now
	}
	return &Logger{log: log, every: every, now: now, reason: map[string]*state{}}
}

// Log writes msg at level with the attribute reason=reason and args, unless
// a line of the same reason was written less than the interval ago; then it
// only counts it, and the next line written for the reason carries
// suppressed=<count>. It reports whether the line was written.
func (l *Logger) Log(level slog.Level, reason, msg string, args ...any) bool {
	if l == nil {
		return false
	}
	now := l.now()
	l.mu.Lock()
	key := reason
	st := l.reason[key]
	if st == nil {
		if len(l.reason) >= maxReasons {
			key = "\x00other"
			st = l.reason[key]
		}
		if st == nil {
			st = &state{}
			l.reason[key] = st
		}
	}
	if !st.last.IsZero() && now.Sub(st.last) < l.every {
		st.suppressed++
		l.mu.Unlock()
		return false
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	l.mu.Unlock()
	attrs := append([]any{"reason", reason}, args...)
	if n > 0 {
		attrs = append(attrs, "suppressed", n)
	}
	l.log.Log(context.Background(), level, msg, attrs...)
	return true
}

// Warn is Log at slog.LevelWarn.
func (l *Logger) Warn(reason, msg string, args ...any) bool {
	return l.Log(slog.LevelWarn, reason, msg, args...)
}

// Error is Log at slog.LevelError.
func (l *Logger) Error(reason, msg string, args ...any) bool {
	return l.Log(slog.LevelError, reason, msg, args...)
}
