package aggregator

import (
	"runtime/debug"
	"testing"
)

// keepGC restores the collector's settings (GOGC and the memory limit)
// when tb ends.
func keepGC(tb testing.TB) {
	gcPercent, memLimit := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1)
	debug.SetGCPercent(gcPercent)
	tb.Cleanup(func() {
		debug.SetGCPercent(gcPercent)
		debug.SetMemoryLimit(memLimit)
	})
}

func TestTuneGC(t *testing.T) {
	keepGC(t)
	none := func(string) (string, bool) { return "", false }
	noLimit := func() (int64, bool) { return 0, false }
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		lookup := func(k string) (string, bool) { return "50", k == env }
		if _, _, ok := TuneGC(lookup, noLimit); ok {
			t.Errorf("with %s set, TuneGC changed the collector", env)
		}
	}
	tests := []struct {
		name      string
		memMax    func() (int64, bool)
		wantLimit int64
	}{
		{"no container limit", noLimit, 0},
		{"container limit of 3 GiB", func() (int64, bool) { return 3 << 30, true }, 3 << 30 / 4 * 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(1 << 40)
			gogc, limit, ok := TuneGC(none, tt.memMax)
			if !ok || gogc != GCPercent || limit != tt.wantLimit {
				t.Fatalf("TuneGC = %d, %d, %v; want %d, %d, true", gogc, limit, ok, GCPercent, tt.wantLimit)
			}
			if got := debug.SetGCPercent(GCPercent); got != GCPercent {
				t.Errorf("GOGC is %d, want %d", got, GCPercent)
			}
			want := tt.wantLimit
			if want == 0 {
				want = 1 << 40 // left alone
			}
			if got := debug.SetMemoryLimit(-1); got != want {
				t.Errorf("memory limit is %d, want %d", got, want)
			}
		})
	}
}

func TestParseMemoryMax(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"max\n", 0, false},
		{"3221225472\n", 3221225472, true},
		{"", 0, false},
		{"0\n", 0, false},
	}
	for _, tt := range tests {
		if got, ok := parseMemoryMax(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("parseMemoryMax(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
