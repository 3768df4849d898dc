package tracegen

import (
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
)

// Clock skew. With Config.ClockSkew set, every host (the "hostname" process
// tag) gets a clock offset drawn uniformly from [-ClockSkew, +ClockSkew],
// whole microseconds, from a generator seeded by Config.Seed and the host name
// only (so a host keeps its offset across traces and workloads of the same
// seed). Workload.Traces then carry the timestamps the hosts' clocks would
// have recorded: true time plus the offset of the span's host, on span starts
// and log timestamps; durations are untouched (they are measured on one
// clock). Workload.TrueTraces keep the true timestamps.

// hostTag is the process tag naming a generated span's host.
const hostTag = "hostname"

// hostOffset returns the clock offset of host for cfg.
func hostOffset(cfg Config, host string) time.Duration {
	if cfg.ClockSkew <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(host))
	rng := rand.New(rand.NewPCG(cfg.Seed, h.Sum64()))
	us := int64(cfg.ClockSkew / time.Microsecond)
	return time.Duration(rng.Int64N(2*us+1)-us) * time.Microsecond
}

// HostOf returns the generated span's host name ("" if it has none).
func HostOf(s *model.Span) string {
	for _, kv := range s.Process.Tags {
		if kv.Key == hostTag {
			return kv.AsString()
		}
	}
	return ""
}

// applySkew keeps the generated (true) traces in w.TrueTraces and replaces
// w.Traces by copies whose timestamps carry their hosts' clock offsets.
func (w *Workload) applySkew() {
	w.TrueTraces = w.Traces
	w.Traces = make([]*model.Trace, len(w.TrueTraces))
	w.Offsets = map[string]time.Duration{}
	for i, tr := range w.TrueTraces {
		cp := &model.Trace{TraceID: tr.TraceID, Spans: make([]*model.Span, len(tr.Spans))}
		for j, s := range tr.Spans {
			c := *s
			host := HostOf(s)
			off, ok := w.Offsets[host]
			if !ok {
				off = hostOffset(w.cfg, host)
				w.Offsets[host] = off
			}
			c.Start = s.Start.Add(off)
			if len(s.Logs) > 0 {
				c.Logs = make([]model.Log, len(s.Logs))
				for k, l := range s.Logs {
					l.Timestamp = l.Timestamp.Add(off)
					c.Logs[k] = l
				}
			}
			cp.Spans[j] = &c
		}
		w.Traces[i] = cp
	}
}

// TraceTruth is the analysis of one trace on true timestamps.
type TraceTruth struct {
	TraceID string `json:"traceID"`
	// CriticalPath lists the span IDs of the critical path's sections,
	// earliest first.
	CriticalPath []string `json:"criticalPath"`
	// Spans maps span IDs to their self and critical-path time (ns).
	Spans map[string]SpanTruth `json:"spans"`
}

// SpanTruth is one span's true self and critical-path time, in nanoseconds.
type SpanTruth struct {
	SelfNanos         int64 `json:"selfNanos"`
	CriticalPathNanos int64 `json:"criticalPathNanos"`
}

// TrueAnalyses analyses the true-time traces (w.TrueTraces, or w.Traces when
// the workload has no clock skew) without clock-skew repair.
func (w *Workload) TrueAnalyses() []TraceTruth {
	src := w.TrueTraces
	if src == nil {
		src = w.Traces
	}
	out := make([]TraceTruth, len(src))
	for i, tr := range src {
		a := analyse(tr, dag.Options{MaxClockSkewAdjust: -1})
		tt := TraceTruth{TraceID: tr.TraceID.String(), Spans: make(map[string]SpanTruth, len(a.Spans))}
		for _, c := range a.CriticalPath {
			tt.CriticalPath = append(tt.CriticalPath, c.SpanID.String())
		}
		for _, s := range a.Spans {
			tt.Spans[s.SpanID.String()] = SpanTruth{SelfNanos: int64(s.Self), CriticalPathNanos: int64(s.CriticalPath)}
		}
		out[i] = tt
	}
	return out
}

// analyse analyses a shallow copy of tr (dag.Analyze may shift span
// timestamps; the copies keep tr's spans as they are).
func analyse(tr *model.Trace, opts dag.Options) model.Analysis {
	cp := &model.Trace{TraceID: tr.TraceID, Spans: make([]*model.Span, len(tr.Spans))}
	for i, s := range tr.Spans {
		c := *s
		c.Logs = append([]model.Log(nil), s.Logs...)
		c.Warnings = nil
		cp.Spans[i] = &c
	}
	return dag.Analyze(cp, opts)
}

// SkewScore compares the analyses of a skewed workload's traces with the
// analyses of its true-time traces.
type SkewScore struct {
	Traces int
	Spans  int
	// Exact counts the traces whose critical path is the truth's span
	// sequence.
	Exact int
	// CriticalPathAbsErr and SelfAbsErr sum, over all spans, the absolute
	// difference between the analysed and the true critical-path and self
	// time.
	CriticalPathAbsErr, SelfAbsErr time.Duration
	// Misattributed sums, over the traces, half the sum over operations of
	// the absolute difference between analysed and true critical-path time
	// of the operation: the critical-path time given to the wrong
	// operation. CriticalPath sums the true critical-path time.
	Misattributed, CriticalPath time.Duration
}

// ExactShare is the fraction of traces whose critical path is exactly right.
func (s SkewScore) ExactShare() float64 { return ratio(float64(s.Exact), float64(s.Traces)) }

// MisattributedShare is the share of critical-path time given to the wrong
// operation.
func (s SkewScore) MisattributedShare() float64 {
	return ratio(float64(s.Misattributed), float64(s.CriticalPath))
}

// MeanCriticalPathErr is the mean absolute error of per-span critical-path time.
func (s SkewScore) MeanCriticalPathErr() time.Duration {
	return time.Duration(ratio(float64(s.CriticalPathAbsErr), float64(s.Spans)))
}

// MeanSelfErr is the mean absolute error of per-span self time.
func (s SkewScore) MeanSelfErr() time.Duration {
	return time.Duration(ratio(float64(s.SelfAbsErr), float64(s.Spans)))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// ScoreSkewRepair analyses every trace of w (on copies) with opts and scores
// the result against the analyses of the true-time traces. Without clock skew
// in w the truth is w.Traces itself.
func (w *Workload) ScoreSkewRepair(opts dag.Options) SkewScore {
	truth := w.TrueTraces
	if truth == nil {
		truth = w.Traces
	}
	var sc SkewScore
	type opTimes struct{ truth, got time.Duration }
	ops := map[model.OperationKey]*opTimes{}
	for i, tr := range w.Traces {
		want := analyse(truth[i], dag.Options{MaxClockSkewAdjust: -1})
		got := analyse(tr, opts)
		sc.Traces++
		if sameSequence(want.CriticalPath, got.CriticalPath) {
			sc.Exact++
		}
		clear(ops)
		for j, s := range tr.Spans {
			ws, gs := want.Spans[j], got.Spans[j]
			sc.Spans++
			sc.CriticalPathAbsErr += absDur(ws.CriticalPath - gs.CriticalPath)
			sc.SelfAbsErr += absDur(ws.Self - gs.Self)
			k := model.OperationKey{Service: s.Process.ServiceName, Operation: s.Operation}
			o := ops[k]
			if o == nil {
				o = &opTimes{}
				ops[k] = o
			}
			o.truth += ws.CriticalPath
			o.got += gs.CriticalPath
			sc.CriticalPath += ws.CriticalPath
		}
		var diff time.Duration
		for _, o := range ops {
			diff += absDur(o.truth - o.got)
		}
		sc.Misattributed += diff / 2
	}
	return sc
}

func sameSequence(a, b []model.CriticalSection) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].SpanID != b[i].SpanID {
			return false
		}
	}
	return true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// Hosts lists the workload's host names with their clock offsets, sorted by
// name (empty without clock skew).
func (w *Workload) Hosts() []HostOffset {
	out := make([]HostOffset, 0, len(w.Offsets))
	for h, o := range w.Offsets {
		out = append(out, HostOffset{Host: h, OffsetNanos: int64(o)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// HostOffset is one host's generated clock offset.
type HostOffset struct {
	Host        string `json:"host"`
	OffsetNanos int64  `json:"offsetNanos"`
}
