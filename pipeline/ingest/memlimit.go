package ingest

import (
	"context"
	"math"
	"runtime/debug"
	"time"
)

// MemoryGovernor keeps the Go runtime's soft memory limit near the data: at
// Factor × the span bytes buffered now plus Overhead, never above Ceiling.
// GOGC (TuneGC's) still decides when the collector runs while memory is
// plentiful; once the heap reaches the limit the collector runs earlier, so
// a burst takes about Factor × its buffered bytes plus a fixed overhead
// instead of GOGC's multiple of the live heap. Issue 16's goal: peak RSS
// at most 2 × buffered bytes + 150 MiB (BenchmarkBurstMemory in cmd/ingester
// measures it). The defaults put the limit at that goal less the resident
// memory outside the heap: at a burst's peak the live heap is 1.3-1.4 ×
// the buffered bytes (as the budget counts them) plus a fixed part, since
// due traces are emitted in portions under --max-output-bytes-in-flight, so
// Factor 2 leaves the collector 0.6-0.7 × the buffered bytes of room. Chosen by
// measurement (README, "ingester peak memory under a burst"): a lower
// limit costs CPU that grows with the burst: Factor 1.5 saved 65 MiB at
// 143 MiB buffered for about the same CPU, 130 MiB at 286 MiB buffered for
// 5-20% more; with an Overhead of 64 MiB as well, 180 MiB there for 40-50%
// more.
//
// Run is used by cmd/ingester when TuneGC tuned the collector (not when the
// operator set GOGC or GOMEMLIMIT).
type MemoryGovernor struct {
	// Buffered returns the span bytes buffered now (the in-flight budget's
	// bytes, which tracepipe_ingester_inflight_bytes reports as of the
	// partitions' last tick). Ingester.MemoryGovernor reads the budget.
	Buffered func() int64
	Factor   float64       // default 2
	Overhead int64         // default DefaultMemoryOverhead
	Ceiling  int64         // default: no ceiling
	Interval time.Duration // how often the limit follows (default 200ms)
	// Hold is how long the limit keeps following the highest buffered
	// bytes seen (default 30s): while a burst is emitted the buffered bytes
	// fall but its output is still being encoded and sent, and a limit that
	// fell with them would make the collector run without pause.
	Hold time.Duration
	// SetLimit sets the limit (default debug.SetMemoryLimit).
	SetLimit func(int64) int64
}

// DefaultMemoryOverhead is the governor's fixed allowance: issue 16's
// 150 MiB less 24 MiB for what the resident set holds outside the Go
// runtime's accounting (the binary's text and data).
const DefaultMemoryOverhead = 126 << 20

// Limit is the limit for b buffered bytes.
func (g *MemoryGovernor) Limit(b int64) int64 {
	f, o := g.Factor, g.Overhead
	if f <= 0 {
		f = 2
	}
	if o <= 0 {
		o = DefaultMemoryOverhead
	}
	l := int64(math.Min(f*float64(max(b, 0))+float64(o), math.MaxInt64/2))
	if g.Ceiling > 0 && l > g.Ceiling {
		l = g.Ceiling
	}
	return l
}

// Start runs the governor (Run) in a goroutine of its own until ctx ends or
// stop is called; stop returns once that goroutine has.
func (g *MemoryGovernor) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx) }()
	return func() { cancel(); <-done }
}

// Run updates the limit every Interval until ctx ends. The caller owns the
// goroutine that runs it (Start starts one).
func (g *MemoryGovernor) Run(ctx context.Context) {
	set := g.SetLimit
	if set == nil {
		set = debug.SetMemoryLimit
	}
	iv := g.Interval
	if iv <= 0 {
		iv = 200 * time.Millisecond
	}
	hold := g.Hold
	if hold <= 0 {
		hold = 30 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	last := int64(-1)
	var peaks peakWindow
	for {
		now := time.Now()
		if l := g.Limit(peaks.add(now, g.Buffered(), hold)); l != last {
			set(l)
			last = l
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// peakWindow is the maximum of the values added within the last hold: a
// deque of (time, value) with decreasing values.
type peakWindow struct {
	at []time.Time
	v  []int64
}

func (p *peakWindow) add(now time.Time, v int64, hold time.Duration) int64 {
	for len(p.v) > 0 && p.v[len(p.v)-1] <= v {
		p.at, p.v = p.at[:len(p.at)-1], p.v[:len(p.v)-1]
	}
	p.at, p.v = append(p.at, now), append(p.v, v)
	for now.Sub(p.at[0]) > hold {
		p.at, p.v = p.at[1:], p.v[1:]
	}
	return p.v[0]
}

// MemoryGovernor returns the governor cmd/ingester runs for this ingester
// when TuneGC tuned the collector: the limit follows the span bytes
// buffered in the ingester's budget, read from the budget itself at every
// tick, and never exceeds ceiling (TuneGC's limit; 0: none). It used to
// read the tracepipe_ingester_inflight_bytes gauge, which the partitions
// update only when they tick: at the start of a burst the governor saw
// nothing buffered while tens of megabytes were, kept the limit at the
// bare overhead and made the collector run back to back (13 collections
// instead of 5 on issue 16's workload, a sixth of the ingester's CPU).
func (in *Ingester) MemoryGovernor(ceiling int64) *MemoryGovernor {
	return &MemoryGovernor{Buffered: func() int64 {
		_, _, b := in.budget.InFlight()
		return b
	}, Ceiling: ceiling}
}
