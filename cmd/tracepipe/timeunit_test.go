package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/ingest/assemble"
	"github.com/tracepipe/tracepipe/query"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// nanoTrace is a HotROD-like trace as an OTel SDK records it: nanosecond
// timestamps and durations, three hosts whose clocks disagree, span events.
func nanoTrace() []*model.Span {
	id := model.TraceID{High: 0x4bf92f3577b34da6, Low: 0xa3ce929d0e0e4736}
	t0 := model.TimestampOf(time.Date(2025, 11, 27, 0, 0, 0, 0, time.UTC)).Add(123456789)
	proc := func(svc, host string) model.Process {
		return model.Process{ServiceName: svc, Tags: model.KeyValues{model.String("host.name", host)}}
	}
	mk := func(sid, parent uint64, op string, kind model.SpanKind, p model.Process, start, dur int64) *model.Span {
		s := &model.Span{TraceID: id, SpanID: model.SpanID(sid), Operation: op, Kind: kind, Process: p,
			Start: t0.Add(time.Duration(start)), Duration: time.Duration(dur), Flags: 1}
		if parent != 0 {
			s.References = []model.Reference{{Type: model.ChildOf, TraceID: id, SpanID: model.SpanID(parent)}}
		}
		return s
	}
	fe, cust, db := proc("frontend", "fe-1"), proc("customer", "cust-2"), proc("mysql", "db-3")
	const custSkew, dbSkew = 2345678, -1234567 // the hosts' clocks, ns ahead of frontend's
	spans := []*model.Span{
		mk(1, 0, "HTTP GET /dispatch", model.KindServer, fe, 0, 4753829877),
		mk(2, 1, "HTTP GET /customer", model.KindClient, fe, 1000501, 3000000777),
		mk(3, 2, "HTTP GET /customer", model.KindServer, cust, 1200999+custSkew, 2999000123),
		mk(4, 3, "SQL SELECT", model.KindClient, cust, 1300457+custSkew, 2998000999),
		mk(5, 4, "SQL SELECT", model.KindServer, db, 1500333+dbSkew, 2997000001),
		mk(6, 1, "HTTP GET /route", model.KindClient, fe, 3001500999, 1750000333),
		mk(7, 6, "HTTP GET /route", model.KindServer, cust, 3001700001+custSkew, 1749000555),
	}
	spans[4].Logs = []model.Log{{Timestamp: spans[4].Start.Add(999), Fields: model.KeyValues{
		model.String("event", "Waiting for lock behind 9 transactions"), model.Int64("blockers", 9)}}}
	spans[0].Logs = []model.Log{{Timestamp: spans[0].Start.Add(4753829000), Fields: model.KeyValues{model.String("event", "done")}}}
	return spans
}

// TestNanosecondOTLPOneTimeUnit sends a nanosecond OTLP trace through the
// ingest path (OTLP decode, assembly and analysis, the traces-topic codec,
// the embedded store) and checks that `query trace` shows one time unit in
// every view: self and critical-path time within the duration, offsets not
// negative, the critical path's sections inside their spans as the spans
// table shows them, and the same figures in JSON and text.
func TestNanosecondOTLPOneTimeUnit(t *testing.T) {
	t.Setenv("TRACEPIPE_ES_URL", "")
	msgs, err := wire.Encode(wire.OTLPProto, nanoTrace())
	if err != nil {
		t.Fatal(err)
	}
	a := assemble.New(assemble.Config{}, fixedClock{time.Unix(1e9, 0)}, nil)
	for i, m := range msgs {
		spans, err := wire.Decode(wire.OTLPProto, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		a.Add(int64(i), spans)
	}
	outs := a.Flush(nil)
	if len(outs) != 1 {
		t.Fatalf("%d traces assembled", len(outs))
	}
	at, err := assembledpb.Decode(assembledpb.Encode(nil, outs[0].Trace))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tracepipe.db")
	s, err := embedded.Open(context.Background(), embedded.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteTraces(context.Background(), []model.AssembledTrace{*at}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	id := at.Trace.TraceID.String()
	out, err := runQ(t, "trace", "--store", path, "--format", "json", id)
	if err != nil {
		t.Fatalf("query trace: %v\n%s", err, out)
	}
	var tr query.Trace
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(tr.Spans) != 7 || len(tr.CriticalPath) == 0 {
		t.Fatalf("%d spans, %d sections", len(tr.Spans), len(tr.CriticalPath))
	}
	byID := map[string]query.Span{}
	var rootDur int64
	for _, sp := range tr.Spans {
		byID[sp.SpanID] = sp
		if sp.OffsetNanos < 0 || sp.SelfNanos < 0 || sp.SelfNanos > sp.DurationNanos || sp.CriticalPathNanos > sp.DurationNanos {
			t.Errorf("span %s: offset %d, self %d, critical %d, duration %d", sp.SpanID, sp.OffsetNanos, sp.SelfNanos, sp.CriticalPathNanos, sp.DurationNanos)
		}
		for _, v := range []int64{sp.OffsetNanos, sp.DurationNanos, sp.SelfNanos, sp.CriticalPathNanos} {
			if v%1000 != 0 {
				t.Errorf("span %s: %d ns is not a whole microsecond (the stored unit)", sp.SpanID, v)
			}
		}
		if sp.Depth == 0 {
			rootDur = sp.DurationNanos
			if sp.OffsetNanos != 0 {
				t.Errorf("root offset %d", sp.OffsetNanos)
			}
		}
	}
	if rootDur != tr.Summary.DurationNanos {
		t.Errorf("root span lasts %d ns, the trace %d ns", rootDur, tr.Summary.DurationNanos)
	}
	var sum int64
	perSpan := map[string]int64{}
	for _, c := range tr.CriticalPath {
		sp := byID[c.SpanID]
		if c.OffsetNanos < sp.OffsetNanos || c.OffsetNanos+c.DurationNanos > sp.OffsetNanos+sp.DurationNanos {
			t.Errorf("section of %s at +%d for %d lies outside the span (+%d for %d) in the spans table",
				c.SpanID, c.OffsetNanos, c.DurationNanos, sp.OffsetNanos, sp.DurationNanos)
		}
		sum += c.DurationNanos
		perSpan[c.SpanID] += c.DurationNanos
	}
	if sum != tr.Summary.DurationNanos {
		t.Errorf("critical path sums to %d ns, the trace lasts %d", sum, tr.Summary.DurationNanos)
	}
	for _, sp := range tr.Spans {
		if perSpan[sp.SpanID] != sp.CriticalPathNanos {
			t.Errorf("span %s: critical %d in the spans table, %d in the critical path", sp.SpanID, sp.CriticalPathNanos, perSpan[sp.SpanID])
		}
	}
	for _, o := range tr.Summary.Operations {
		var self, cp int64
		for _, sp := range tr.Spans {
			if sp.Service == o.Service && sp.Operation == o.Operation {
				self += sp.SelfNanos
				cp += sp.CriticalPathNanos
			}
		}
		if self != o.SelfNanos || cp != o.CriticalPathNanos {
			t.Errorf("operation %s %s: self %d critical %d in the summary, %d %d over its spans", o.Service, o.Operation, o.SelfNanos, o.CriticalPathNanos, self, cp)
		}
	}

	// Span logs (OTel span events), inside their spans, in both views.
	logs := 0
	for _, sp := range tr.Spans {
		for _, l := range sp.Logs {
			logs++
			if l.OffsetNanos < sp.OffsetNanos || l.OffsetNanos > sp.OffsetNanos+sp.DurationNanos || l.OffsetNanos%1000 != 0 {
				t.Errorf("span %s: log at +%d outside the span (+%d for %d) or not in whole µs", sp.SpanID, l.OffsetNanos, sp.OffsetNanos, sp.DurationNanos)
			}
		}
	}
	if db := byID["0000000000000005"]; logs != 2 || len(db.Logs) != 1 || db.Logs[0].Event != "Waiting for lock behind 9 transactions" || db.Logs[0].Fields["blockers"] != "9" {
		t.Errorf("%d logs; the database span's: %+v", logs, db.Logs)
	}

	text, err := runQ(t, "trace", "--store", path, id)
	if err != nil {
		t.Fatalf("query trace: %v\n%s", err, text)
	}
	if strings.Contains(text, "+-") {
		t.Errorf("negative offset in the text:\n%s", text)
	}
	if !strings.Contains(text, "logs (span events):") || !strings.Contains(text, "Waiting for lock behind 9 transactions  blockers=9") {
		t.Errorf("text lacks the span events:\n%s", text)
	}
	for _, c := range tr.CriticalPath {
		row := "+" + query.HumanDuration(c.OffsetNanos) + " "
		if !strings.Contains(text, row) {
			t.Errorf("text lacks the section at %q:\n%s", row, text)
		}
	}
}
