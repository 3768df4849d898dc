package assembledpb

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
)

func sampleTrace() *model.AssembledTrace {
	tid := model.TraceID{High: 0x0102030405060708, Low: 0x1112131415161718}
	root := &model.Span{
		TraceID: tid, SpanID: 1, Operation: "GET /checkout", Flags: 1,
		Start: model.Timestamp(1_700_000_000_000_000_000), Duration: 120 * time.Millisecond,
		Tags: model.KeyValues{
			model.String("http.method", "GET"), model.Bool("error", true), model.Bool("cached", false),
			model.Int64("shard", -7), model.Float64("ratio", 0.25), model.Float64("zero", 0),
			model.Binary("blob", []byte{0, 1, 2}), model.String("empty", ""),
		},
		Logs:    []model.Log{{Timestamp: 1_700_000_000_000_001_000, Fields: model.KeyValues{model.String("event", "x")}}, {}},
		Process: model.Process{ServiceName: "frontend", Tags: model.KeyValues{model.String("hostname", "h1")}},
		Kind:    model.KindServer, Status: model.StatusError, StatusMessage: "boom",
		Warnings: []string{"clock skew adjusted"},
	}
	long := make([]byte, 300) // forces multi-byte nested lengths
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	child := &model.Span{
		TraceID: tid, SpanID: 2, Operation: string(long),
		References: []model.Reference{{Type: model.ChildOf, TraceID: tid, SpanID: 1}, {Type: model.FollowsFrom, TraceID: model.TraceID{Low: 9}, SpanID: 0}},
		Start:      root.Start + 1000, Duration: -5,
		Process: model.Process{ServiceName: "cart"},
	}
	return &model.AssembledTrace{
		Trace:        model.Trace{TraceID: tid, Spans: []*model.Span{root, child}},
		Version:      2,
		Completion:   model.CompletionLate,
		Truncated:    true,
		DroppedSpans: 3,
		FirstSeen:    time.Unix(1_700_000_001, 5).UTC(),
		EmittedAt:    time.Unix(1_700_000_006, 7).UTC(),
		Analysis: model.Analysis{
			TraceID: tid, RootSpanID: 1, Start: root.Start, Duration: root.Duration, SpanCount: 2, ErrorCount: 1,
			CriticalPath: []model.CriticalSection{{SpanID: 1, Start: root.Start, End: root.Start + 1000}, {SpanID: 2, Start: root.Start + 1000, End: root.End()}},
			Spans:        []model.SpanStats{{SpanID: 1, Self: time.Millisecond, CriticalPath: 2 * time.Millisecond}, {SpanID: 2}},
			Operations:   []model.OperationSummary{{OperationKey: model.OperationKey{Service: "frontend", Operation: "GET /checkout"}, Count: 1, Errors: 1, Duration: 3, Self: 2, CriticalPath: 1}},
			Warnings:     []model.Warning{{Kind: model.WarnOrphan, SpanID: 2, Message: "parent missing"}, {Kind: model.WarnTruncated, Message: "3 spans dropped"}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	in := sampleTrace()
	b := Encode(nil, in)
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	// Decode yields typed zero values where Encode omitted them.
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip differs:\n in=%+v\nout=%+v", in, out)
	}
}

// TestMatchesGenerated checks the hand-written codec against the generated
// reference types both ways.
// TestSharedProcesses: spans that share a Process value (as decoders give
// the spans of one process) encode to the bytes of spans with their own
// copies, whatever the order, the number of processes and their sizes.
func TestSharedProcesses(t *testing.T) {
	tid := model.TraceID{Low: 7}
	process := func(i, tagBytes int) model.Process {
		big := make([]byte, tagBytes)
		for j := range big {
			big[j] = 'a' + byte((i+j)%26)
		}
		return model.Process{ServiceName: fmt.Sprintf("svc-%d", i), Tags: model.KeyValues{
			model.String("hostname", fmt.Sprintf("host-%d", i)), model.String("ip", "10.0.0.1"), model.String("big", string(big))}}
	}
	cases := []struct {
		name      string
		processes int
		tagBytes  int // of one tag (the copies of shared processes are kept in 1 KiB)
		spans     int
	}{
		{"one process", 1, 10, 5},
		{"eight processes", 8, 10, 40},
		{"more processes than remembered", 20, 10, 100},
		{"processes that fill the buffer", 12, 200, 60},
		{"large processes", 3, 400, 12},
		{"long spans", 4, 10, 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			procs := make([]model.Process, c.processes)
			for i := range procs {
				procs[i] = process(i, c.tagBytes)
			}
			shared := &model.AssembledTrace{Trace: model.Trace{TraceID: tid}}
			own := &model.AssembledTrace{Trace: model.Trace{TraceID: tid}}
			for i := range c.spans {
				p := procs[(i*7+i/3)%c.processes]
				op := "op"
				if c.name == "long spans" {
					op = strings.Repeat("x", 200*i) // lengths of one, two and three bytes
				}
				s := &model.Span{TraceID: tid, SpanID: model.SpanID(i + 1), Operation: op, Start: 1, Duration: 1, Process: p}
				shared.Trace.Spans = append(shared.Trace.Spans, s)
				c := *s
				c.Process.Tags = slices.Clone(p.Tags)
				own.Trace.Spans = append(own.Trace.Spans, &c)
			}
			got, want := Encode(nil, shared), Encode(nil, own)
			if !bytes.Equal(got, want) {
				t.Fatalf("shared processes encode to %d bytes, own copies to %d bytes, different", len(got), len(want))
			}
			if _, err := Decode(got); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMatchesGenerated(t *testing.T) {
	in := sampleTrace()
	b := Encode(nil, in)
	var ref AssembledTrace
	if err := proto.Unmarshal(b, &ref); err != nil {
		t.Fatalf("generated code rejects our bytes: %v", err)
	}
	if got := ref.GetSpans()[0].GetProcess().GetServiceName(); got != "frontend" {
		t.Errorf("service = %q", got)
	}
	if got := ref.GetSpans()[0].GetTags()[4].GetVFloat64(); got != 0.25 {
		t.Errorf("float tag = %v", got)
	}
	if got := ref.GetSpans()[0].GetTags()[3].GetVInt64(); got != -7 {
		t.Errorf("int tag = %v", got)
	}
	if got := ref.GetAnalysis().GetWarnings()[0].GetKind(); got != "missing-parent" {
		t.Errorf("warning kind = %q", got)
	}
	if ref.GetCompletion() != Completion_COMPLETION_LATE || ref.GetVersion() != 2 || !ref.GetTruncated() {
		t.Errorf("envelope = %v %v %v", ref.GetCompletion(), ref.GetVersion(), ref.GetTruncated())
	}
	// Canonical: the generated (deterministic) marshaller writes the same bytes.
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(&ref)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(b) {
		t.Errorf("generated marshal differs from ours (%d vs %d bytes)", len(again), len(b))
	}
	out, err := Decode(again)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("decode of generated bytes: err=%v equal=%v", err, reflect.DeepEqual(in, out))
	}
}

func TestDecodeErrors(t *testing.T) {
	good := Encode(nil, sampleTrace())
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)/2]},
		{"bad trace id length", []byte{0x0a, 0x03, 1, 2, 3}},
		{"version as bytes", append(Encode(nil, &model.AssembledTrace{Trace: model.Trace{TraceID: model.TraceID{Low: 1}}}), 0x12, 0x00)},
		{"group wire type", []byte{0x0b}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Decode(c.b); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, sampleTrace()))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x08, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes and decodes to the same value.
		tr2, err := Decode(Encode(nil, tr))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(tr), normalize(tr2)) {
			t.Fatalf("unstable round trip")
		}
	})
}

// normalize maps NaN float tags to a fixed bit pattern-free form for comparison.
func normalize(t *model.AssembledTrace) *model.AssembledTrace {
	for _, s := range t.Trace.Spans {
		for i := range s.Tags {
			if s.Tags[i].Type == model.Float64Type && math.IsNaN(s.Tags[i].Float64Value()) {
				s.Tags[i].Num = 0
			}
		}
	}
	return t
}

func BenchmarkEncode(b *testing.B) {
	in := sampleTrace()
	buf := Encode(nil, in)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for i := 0; i < b.N; i++ {
		buf = Encode(buf[:0], in)
	}
}

func BenchmarkDecode(b *testing.B) {
	buf := Encode(nil, sampleTrace())
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for i := 0; i < b.N; i++ {
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}
