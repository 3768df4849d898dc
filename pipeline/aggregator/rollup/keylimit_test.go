package rollup

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// distinctOpTraces makes n traces of 4 spans (a root in "front" calling
// three spans in "back"), every span with an operation name of its own, one
// trace per millisecond from base.
func distinctOpTraces(n int, base model.Timestamp) []Message {
	out := make([]Message, 0, n)
	for i := range n {
		id := model.TraceID{High: 7, Low: uint64(i + 1)}
		start := base.Add(time.Duration(i) * time.Millisecond)
		tr := model.Trace{TraceID: id}
		a := model.Analysis{TraceID: id, RootSpanID: 1, Start: start, Duration: 10 * time.Millisecond}
		for j := range 4 {
			sp := &model.Span{TraceID: id, SpanID: model.SpanID(j + 1), Operation: fmt.Sprintf("op-%d-%d", i, j),
				Start: start, Duration: time.Duration(10-j) * time.Millisecond, Kind: model.KindServer,
				Process: model.Process{ServiceName: "front"}}
			if j > 0 {
				sp.Process.ServiceName = "back"
				sp.References = []model.Reference{{Type: model.ChildOf, TraceID: id, SpanID: 1}}
			}
			tr.Spans = append(tr.Spans, sp)
			a.Spans = append(a.Spans, model.SpanStats{SpanID: sp.SpanID, Self: time.Millisecond, CriticalPath: time.Millisecond})
		}
		a.SpanCount = 4
		at := &model.AssembledTrace{Trace: tr, Analysis: a, Version: 1, Completion: model.CompletionIdle}
		out = append(out, Message{Offset: int64(i), Time: start, Trace: at})
	}
	return out
}

// TestKeyLimits feeds 20,000 traces whose 80,000 spans all have distinct
// operation names into one window: the window's keys stay within
// KeyLimit plus the overflow keys, every service keeps at most
// OperationLimit operations of its own, the totals are exact (the rest is
// counted under Overflow and in KeyOverflow), and a replay of the same log
// publishes the same partials.
func TestKeyLimits(t *testing.T) {
	const n = 20000
	base := model.TimestampOf(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	msgs := distinctOpTraces(n, base)
	cfg := Config{OperationLimit: 100, KeyLimit: 500} // 20,000 traces 1ms apart: one 1m window
	run := func() (*Partition, []Partial) {
		p, err := NewPartition(cfg, 0, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		maxKeys := 0
		for i, m := range msgs {
			if rw, err := p.Add(m); err != nil || rw != nil {
				t.Fatalf("add %d: %v %v", i, rw, err)
			}
			maxKeys = max(maxKeys, p.MaxWindowKeys())
		}
		// One key per span kind used (server) and the overflow edge.
		if maxKeys > cfg.KeyLimit+2 {
			t.Errorf("a window held %d keys, limit %d + 2 overflow keys", maxKeys, cfg.KeyLimit)
		}
		return p, p.Collect(FlushPolicy{All: true})
	}
	p, parts := run()

	var spans, calls int64
	ops := map[string]map[string]bool{}
	for _, pt := range parts {
		if pt.Key.Edge {
			calls += pt.Stats.Count
			continue
		}
		spans += pt.Stats.Count
		if pt.Stats.Count > 0 {
			if ops[pt.Key.Service] == nil {
				ops[pt.Key.Service] = map[string]bool{}
			}
			ops[pt.Key.Service][pt.Key.Operation] = true
		}
	}
	if spans != 4*n || calls != 3*n {
		t.Errorf("published %d spans and %d calls, want %d and %d", spans, calls, 4*n, 3*n)
	}
	for svc, set := range ops {
		if !set[Overflow] || len(set) > cfg.OperationLimit+1 {
			t.Errorf("service %s: %d operations published (overflow %v), want at most %d and the overflow", svc, len(set), set[Overflow], cfg.OperationLimit)
		}
	}
	var overflowSpans int64
	for _, pt := range parts {
		if !pt.Key.Edge && (pt.Key.Operation == Overflow || pt.Key.Service == Overflow) {
			overflowSpans += pt.Stats.Count
		}
	}
	c := p.Counters()
	if c.KeyOverflow < overflowSpans || overflowSpans == 0 {
		t.Errorf("KeyOverflow %d, spans under overflow keys %d", c.KeyOverflow, overflowSpans)
	}
	if len(ops["back"]) > cfg.OperationLimit+1 || len(ops["front"]) > cfg.OperationLimit+1 {
		t.Errorf("operations per service: %d, %d", len(ops["front"]), len(ops["back"]))
	}

	_, again := run()
	if len(again) != len(parts) {
		t.Fatalf("replay published %d partials, first run %d", len(again), len(parts))
	}
	for i := range parts {
		if a, b := parts[i].AppendBinary(nil, nil), again[i].AppendBinary(nil, nil); !bytes.Equal(a, b) {
			t.Fatalf("partial %d differs in the replay: %+v vs %+v", i, parts[i].Key, again[i].Key)
		}
	}
}

// TestKeyLimitsConfig: limits must be positive; the defaults keep the
// fingerprint of checkpoints written before the limits existed.
func TestKeyLimitsConfig(t *testing.T) {
	for _, c := range []Config{{OperationLimit: -1}, {KeyLimit: -1}} {
		if err := c.Normalized().Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	def := Config{}.Normalized()
	if def.OperationLimit != DefaultOperationLimit || def.KeyLimit != DefaultKeyLimit {
		t.Errorf("defaults %d %d", def.OperationLimit, def.KeyLimit)
	}
	other := def
	other.KeyLimit = 10
	if def.fingerprint() == other.fingerprint() {
		t.Error("another key limit has the same fingerprint")
	}
}
