// Package storagetest is the conformance suite every storage.Store runs
// (Run), and the deterministic test data it and the benchmarks use.
package storagetest

import (
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Day0 is the UTC day the suite's data starts on.
var Day0 = model.TimestampOf(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC))

// Spec describes a small three-span trace: a root server span of
// RootService "GET /checkout", a child call to Backend "charge" covering half
// the trace, and a db "SELECT" span covering a quarter; all on the critical
// path. Zero fields get defaults.
type Spec struct {
	ID         model.TraceID
	Start      model.Timestamp
	Duration   time.Duration // multiple of 10µs; default 100ms
	Version    uint32        // default 1
	Backend    string        // default "payments"
	Shard      string        // root span tag "shard" (omitted when empty)
	Host       string        // db process tag "host" (omitted when empty)
	StatusCode int64         // root span tag http.status_code (default 200)
	Error      bool          // the db span failed
	ExtraSpans int           // extra internal spans of the backend, off the critical path
}

// Trace builds the assembled trace and an exact analysis for s.
func Trace(s Spec) model.AssembledTrace {
	if s.Duration == 0 {
		s.Duration = 100 * time.Millisecond
	}
	if s.Version == 0 {
		s.Version = 1
	}
	if s.Backend == "" {
		s.Backend = "payments"
	}
	if s.StatusCode == 0 {
		s.StatusCode = 200
	}
	d := s.Duration
	root := &model.Span{
		TraceID: s.ID, SpanID: 1, Operation: "GET /checkout", Start: s.Start, Duration: d,
		Tags:    model.KeyValues{model.String("span.kind", "server"), model.Int64("http.status_code", s.StatusCode)},
		Process: model.Process{ServiceName: "frontend", Tags: model.KeyValues{model.String("ip", "10.0.0.1")}},
		Kind:    model.KindServer,
	}
	if s.Shard != "" {
		root.Tags = append(root.Tags, model.String("shard", s.Shard))
	}
	call := &model.Span{
		TraceID: s.ID, SpanID: 2, Operation: "charge", Start: s.Start.Add(d / 10), Duration: d / 2,
		References: []model.Reference{{Type: model.ChildOf, TraceID: s.ID, SpanID: 1}},
		Tags:       model.KeyValues{model.String("span.kind", "server")},
		Process:    model.Process{ServiceName: s.Backend},
		Kind:       model.KindServer,
	}
	db := &model.Span{
		TraceID: s.ID, SpanID: 3, Operation: "SELECT", Start: s.Start.Add(d/10 + d/2), Duration: d / 4,
		References: []model.Reference{{Type: model.ChildOf, TraceID: s.ID, SpanID: 1}},
		Tags:       model.KeyValues{model.String("span.kind", "client")},
		Logs:       []model.Log{{Timestamp: s.Start.Add(d/10 + d/2), Fields: model.KeyValues{model.String("event", "query")}}},
		Process:    model.Process{ServiceName: "db"},
		Kind:       model.KindClient,
	}
	if s.Host != "" {
		db.Process.Tags = model.KeyValues{model.String("host", s.Host)}
	}
	if s.Error {
		db.Tags = append(db.Tags, model.Bool("error", true))
		db.Status = model.StatusError
	}
	spans := []*model.Span{root, call, db}
	stats := []model.SpanStats{
		{SpanID: 1, Self: d - d/2 - d/4, CriticalPath: d - d/2 - d/4},
		{SpanID: 2, Self: d / 2, CriticalPath: d / 2},
		{SpanID: 3, Self: d / 4, CriticalPath: d / 4},
	}
	for i := 0; i < s.ExtraSpans; i++ {
		spans = append(spans, &model.Span{
			TraceID: s.ID, SpanID: model.SpanID(100 + i), Operation: "validate",
			Start: call.Start, Duration: d / 100,
			References: []model.Reference{{Type: model.FollowsFrom, TraceID: s.ID, SpanID: 2}},
			Process:    model.Process{ServiceName: s.Backend},
		})
		stats = append(stats, model.SpanStats{SpanID: model.SpanID(100 + i), Self: d / 100})
	}
	a := model.Analysis{
		TraceID: s.ID, RootSpanID: 1, Start: s.Start, Duration: d, SpanCount: len(spans), Spans: stats,
		CriticalPath: []model.CriticalSection{
			{SpanID: 1, Start: s.Start, End: call.Start},
			{SpanID: 2, Start: call.Start, End: call.End()},
			{SpanID: 3, Start: db.Start, End: db.End()},
			{SpanID: 1, Start: db.End(), End: root.End()},
		},
	}
	if s.Error {
		a.ErrorCount = 1
		a.Warnings = []model.Warning{{Kind: model.WarnClockSkew, SpanID: 3, Message: "test warning"}}
	}
	a.Operations = Operations(spans, stats)
	return model.AssembledTrace{Trace: model.Trace{TraceID: s.ID, Spans: spans}, Analysis: a, Version: s.Version, Completion: model.CompletionIdle}
}

// Operations summarises spans by operation in model.Analysis order.
func Operations(spans []*model.Span, stats []model.SpanStats) []model.OperationSummary {
	idx := map[model.OperationKey]int{}
	var ops []model.OperationSummary
	for i, sp := range spans {
		k := model.OperationKey{Service: sp.Process.ServiceName, Operation: sp.Operation}
		j, ok := idx[k]
		if !ok {
			j = len(ops)
			idx[k] = j
			ops = append(ops, model.OperationSummary{OperationKey: k})
		}
		o := &ops[j]
		o.Count++
		if sp.IsError() {
			o.Errors++
		}
		o.Duration += sp.Duration
		o.Self += stats[i].Self
		o.CriticalPath += stats[i].CriticalPath
	}
	sort.Slice(ops, func(i, j int) bool {
		a, b := ops[i], ops[j]
		if a.CriticalPath != b.CriticalPath {
			return a.CriticalPath > b.CriticalPath
		}
		if a.Self != b.Self {
			return a.Self > b.Self
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Operation < b.Operation
	})
	return ops
}

// Synthetic builds trace number i of a benchmark dataset: spans spans in a
// fan-out tree over 10 services and 50 operations, starting within one hour
// of base, with durations spread over three orders of magnitude and the
// default promoted tags set. It is deterministic in (i, spans, base).
func Synthetic(i, spans int, base model.Timestamp) model.AssembledTrace {
	rnd := uint64(i)*0x9E3779B97F4A7C15 + 1
	next := func() uint64 {
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return rnd
	}
	id := model.TraceID{High: next(), Low: uint64(i) + 1}
	start := base.Add(time.Duration(next()%3600_000_000) * time.Microsecond)
	dur := time.Duration(1000+next()%999_000) * time.Microsecond
	t := model.Trace{TraceID: id, Spans: make([]*model.Span, spans)}
	stats := make([]model.SpanStats, spans)
	for j := 0; j < spans; j++ {
		svc := int(next() % 10)
		op := svc*5 + int(next()%5)
		sp := &model.Span{
			TraceID: id, SpanID: model.SpanID(j + 1), Operation: opNames[op],
			Start: start, Duration: dur,
			Tags: model.KeyValues{
				model.String("span.kind", "server"),
				model.String("shard", shardNames[next()%64]),
				model.String("client", clientNames[next()%16]),
				model.Int64("http.status_code", []int64{200, 200, 200, 404, 500}[next()%5]),
			},
			Process: model.Process{ServiceName: serviceNames[svc], Tags: model.KeyValues{model.String("host", hostNames[next()%32])}},
			Kind:    model.KindServer,
		}
		if j > 0 {
			parent := t.Spans[int(next()%uint64(j))]
			sp.References = []model.Reference{{Type: model.ChildOf, TraceID: id, SpanID: parent.SpanID}}
			sp.Duration = parent.Duration / 2
			sp.Start = parent.Start.Add(parent.Duration / 4)
		}
		t.Spans[j] = sp
		stats[j] = model.SpanStats{SpanID: sp.SpanID, Self: sp.Duration / 3, CriticalPath: sp.Duration / 4}
	}
	a := model.Analysis{
		TraceID: id, RootSpanID: 1, Start: start, Duration: dur, SpanCount: spans, Spans: stats,
		CriticalPath: []model.CriticalSection{{SpanID: 1, Start: start, End: start.Add(dur)}},
		Operations:   Operations(t.Spans, stats),
	}
	return model.AssembledTrace{Trace: t, Analysis: a, Version: 1, Completion: model.CompletionIdle}
}

var serviceNames, opNames, shardNames, clientNames, hostNames = func() (s, o, sh, c, h []string) {
	for i := 0; i < 10; i++ {
		s = append(s, "service-"+itoa(i))
		for j := 0; j < 5; j++ {
			o = append(o, "op-"+itoa(i*5+j))
		}
	}
	for i := 0; i < 64; i++ {
		sh = append(sh, itoa(i))
	}
	for i := 0; i < 16; i++ {
		c = append(c, "client-"+itoa(i))
	}
	for i := 0; i < 32; i++ {
		h = append(h, "host-"+itoa(i))
	}
	return
}()

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
