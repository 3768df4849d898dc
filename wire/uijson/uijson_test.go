package uijson

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

var update = flag.Bool("update", false, "rewrite golden files and fuzz seeds under testdata")

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tracesDiff(got, want []model.Trace) string {
	if reflect.DeepEqual(got, want) {
		return ""
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d traces, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].TraceID != want[i].TraceID {
			return fmt.Sprintf("trace %d: id %s, want %s", i, got[i].TraceID, want[i].TraceID)
		}
		if len(got[i].Spans) != len(want[i].Spans) {
			return fmt.Sprintf("trace %d: %d spans, want %d", i, len(got[i].Spans), len(want[i].Spans))
		}
		for j := range got[i].Spans {
			if !reflect.DeepEqual(got[i].Spans[j], want[i].Spans[j]) {
				return fmt.Sprintf("trace %d span %d:\n got %+v\nwant %+v", i, j, *got[i].Spans[j], *want[i].Spans[j])
			}
		}
	}
	return "differ"
}

func us(v int64) model.Timestamp { return model.FromMicros(v) }

func TestReadFixtures(t *testing.T) {
	t1 := model.TraceID{High: 0x0af7651916cd43dd, Low: 0x8448eb211c80319c}
	frontend := model.Process{ServiceName: "frontend", Tags: model.KeyValues{model.String("hostname", "web-1"), model.String("ip", "10.0.0.7")}}
	one := model.TraceID{Low: 1}
	svc := model.Process{ServiceName: "svc", Tags: model.KeyValues{model.String("version", "1.2")}}
	abc := model.TraceID{Low: 0xabc}
	cases := []struct {
		file string
		want []model.Trace
	}{
		{"testdata/api-traces.json", []model.Trace{
			{TraceID: t1, Spans: []*model.Span{
				{
					TraceID: t1, SpanID: 0xb7ad6b7169203331, Flags: 1, Operation: "GET /checkout",
					Start: us(1715941800123456), Duration: 25 * time.Millisecond,
					Tags: model.KeyValues{
						model.String("span.kind", "server"), model.Int64("http.status_code", 502), model.Bool("error", true),
						model.String("otel.status_description", "upstream failed"), model.Float64("retry.ratio", 0.25),
						model.Binary("payload", []byte{0, 0, 0x30, 0x39}), model.String("internal.span.format", "otlp"),
					},
					Logs: []model.Log{{Timestamp: us(1715941800124456), Fields: model.KeyValues{
						model.String("event", "exception"), model.String("exception.message", "timeout")}}},
					Process: frontend,
					Kind:    model.KindServer, Status: model.StatusError, StatusMessage: "upstream failed",
				},
				{
					TraceID: t1, SpanID: 0x5fb397be34d26b51, Flags: 1, Operation: "SELECT orders",
					References: []model.Reference{{Type: model.ChildOf, TraceID: t1, SpanID: 0xb7ad6b7169203331}},
					Start:      us(1715941800125456), Duration: 800 * time.Microsecond,
					Tags:     model.KeyValues{model.String("span.kind", "client"), model.String("db.system", "postgresql")},
					Process:  model.Process{ServiceName: "orders-db"},
					Kind:     model.KindClient,
					Warnings: []string{"clock skew adjustment disabled"},
				},
			}},
			{TraceID: one, Spans: []*model.Span{{
				TraceID: one, SpanID: 2, Operation: "lonely", Start: us(1715941800000000), Duration: time.Microsecond,
				Process: model.Process{ServiceName: "batch"},
			}}},
		}},
		{"testdata/bare-trace.json", []model.Trace{{TraceID: one, Spans: []*model.Span{
			{
				TraceID: one, SpanID: 2, Operation: "some-operation", Start: us(1485467191639875), Duration: 5 * time.Microsecond,
				Tags: model.KeyValues{model.String("peer.service", "service-y"), model.Int64("peer.ipv4", 23456),
					model.Float64("temperature", 72.5), model.Binary("blob", []byte{0, 0, 0x30, 0x39})},
				Logs:    []model.Log{{Timestamp: us(1485467191639875), Fields: model.KeyValues{model.String("event", "some-event")}}},
				Process: model.Process{ServiceName: "service-x"},
			},
			{
				TraceID: one, SpanID: 4, Operation: "reference-test", Start: us(1485467191639875), Duration: 5 * time.Microsecond,
				References: []model.Reference{
					{Type: model.ChildOf, TraceID: model.TraceID{Low: 0xff}, SpanID: 0xff},
					{Type: model.FollowsFrom, TraceID: one, SpanID: 2},
				},
				Process:  model.Process{ServiceName: "service-y"},
				Warnings: []string{"some span warning"},
			},
		}}}},
		{"testdata/embedded-process.json", []model.Trace{{TraceID: abc, Spans: []*model.Span{
			{
				TraceID: abc, SpanID: 1, Operation: "root", Start: us(1000), Duration: 2 * time.Millisecond,
				Tags: model.KeyValues{model.Int64("n", 7), model.Float64("f", 1.5), model.Bool("ok", false), model.String("s", "x"),
					model.Int64("big", math.MaxInt64)},
				Process: svc,
			},
			{
				TraceID: abc, SpanID: 2, Operation: "child", Start: us(1500), Duration: 10 * time.Microsecond,
				References: []model.Reference{{Type: model.ChildOf, TraceID: abc, SpanID: 1}},
				Process:    svc,
			},
		}}}},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			got, err := Read(bytes.NewReader(read(t, c.file)))
			if err != nil {
				t.Fatal(err)
			}
			if d := tracesDiff(got, c.want); d != "" {
				t.Fatal(d)
			}
			// What Write produces reads back the same.
			var buf bytes.Buffer
			if err := Write(&buf, got); err != nil {
				t.Fatal(err)
			}
			again, err := Parse(buf.Bytes())
			if err != nil {
				t.Fatalf("%v\n%s", err, buf.Bytes())
			}
			if d := tracesDiff(again, c.want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func goldenTraces() []model.Trace {
	tid := model.TraceID{High: 0x4bf92f3577b34da6, Low: 0xa3ce929d0e0e4736}
	start := model.TimestampOf(time.Date(2024, 5, 17, 10, 30, 0, 123456789, time.UTC))
	web := model.Process{ServiceName: "web", Tags: model.KeyValues{model.String("hostname", "web-1")}}
	return []model.Trace{{TraceID: tid, Spans: []*model.Span{
		{
			TraceID: tid, SpanID: 1, Operation: "GET /", Start: start, Duration: 3*time.Millisecond + 999*time.Nanosecond,
			Tags:    model.KeyValues{model.String("http.url", "/?q=<script>&x=\"y\"")},
			Process: web, Kind: model.KindServer, Status: model.StatusError, StatusMessage: "boom",
		},
		{
			TraceID: tid, SpanID: 2, Operation: "SELECT", Start: start.Add(time.Millisecond), Duration: time.Millisecond,
			References: []model.Reference{{Type: model.ChildOf, TraceID: tid, SpanID: 1}},
			Tags: model.KeyValues{model.Float64("nan", math.NaN()), model.Float64("inf", math.Inf(-1)),
				model.Int64("min", math.MinInt64), model.Binary("b", []byte("hi")), model.Bool("t", true)},
			Logs:    []model.Log{{Timestamp: start.Add(1500 * time.Microsecond), Fields: model.KeyValues{model.String("event", "retry")}}},
			Process: model.Process{ServiceName: "db"},
			Flags:   3, Warnings: []string{"w"},
		},
		{
			TraceID: tid, SpanID: 3, Operation: "render", Start: start.Add(2 * time.Millisecond), Duration: time.Millisecond,
			References: []model.Reference{{Type: model.FollowsFrom, TraceID: tid, SpanID: 1}},
			Process:    web, Kind: model.KindInternal, Status: model.StatusOK,
		},
	}}}
}

func TestWriteGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, goldenTraces()); err != nil {
		t.Fatal(err)
	}
	path := "testdata/golden/write.json"
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := read(t, path); !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("Write differs from %s (rerun with -update if intended):\n%s", path, buf.Bytes())
	}
	// Reading it back gives the traces at microsecond precision, with the
	// convention tags Write added.
	got, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	s := got[0].Spans
	if len(s) != 3 || s[0].Duration != 3*time.Millisecond || s[0].Start.Micros() != goldenTraces()[0].Spans[0].Start.Micros() {
		t.Fatalf("times: %+v", *s[0])
	}
	if s[0].Kind != model.KindServer || s[0].Status != model.StatusError || s[0].StatusMessage != "boom" ||
		s[2].Kind != model.KindInternal || s[2].Status != model.StatusOK {
		t.Fatalf("kind/status not carried: %+v %+v", *s[0], *s[2])
	}
	if s[0].Process.ServiceName != "web" || s[2].Process.ServiceName != "web" || s[1].Process.ServiceName != "db" {
		t.Fatal("processes")
	}
	if !strings.Contains(buf.String(), `"processes":{"p1":{"serviceName":"web"`) || strings.Contains(buf.String(), `"p3"`) {
		t.Fatal("processes should be deduplicated as p1, p2")
	}
}

func TestReadErrors(t *testing.T) {
	span := func(extra string) string {
		return `{"data":[{"traceID":"1","spans":[{"traceID":"1","spanID":"2","processID":"p1"` + extra + `}],"processes":{"p1":{"serviceName":"s"}}}]}`
	}
	cases := []struct {
		name, doc, want string
	}{
		{"not json", `nope`, "at byte 0: unexpected 'n', want object"},
		{"truncated", `{"data":[{"traceID":"1","spans":[`, "unexpected end of input"},
		{"bad span id", `{"data":[{"traceID":"1","spans":[{"traceID":"1","spanID":"xyz"}]}]}`,
			`data[0].spans[0].spanID at byte 57: malformed id: span id "xyz" is not hex`},
		{"missing span id", `{"data":[{"traceID":"1","spans":[{"traceID":"1"}]}]}`, "data[0].spans[0].spanID at byte 33: missing span id"},
		{"zero trace id", span(`,"references":[],"traceID":"0"`), "trace id is zero"},
		{"unknown process", `{"data":[{"traceID":"1","spans":[{"traceID":"1","spanID":"2","processID":"p9"}],"processes":{}}]}`,
			`data[0].spans[0].processID at byte 33: process "p9" is not in processes`},
		{"bad tag type", span(`,"tags":[{"key":"a","type":"text","value":"x"}]`), `data[0].spans[0].tags[0].type at byte 104: unknown type "text"`},
		{"value does not match type", span(`,"tags":[{"key":"a","type":"int64","value":"x"}]`), `data[0].spans[0].tags[0].value at byte 120: int64 value: invalid integer "x"`},
		{"bad ref type", span(`,"references":[{"refType":"PARENT","traceID":"1","spanID":"1"}]`), `data[0].spans[0].references[0].refType at byte 103: unknown reference type "PARENT"`},
		{"start out of range", span(`,"startTime":99999999999999999`), "data[0].spans[0].startTime at byte 90: 99999999999999999 microseconds out of range"},
		{"no trace id anywhere", `{"spans":[]}`, "traceID at byte 0: missing trace id and no spans"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("does not wrap ErrMalformed: %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
	// Reader errors come through as they are.
	_, err := Read(iotest.ErrReader(errors.New("disk on fire")))
	if err == nil || errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatal(err)
	}
}

func TestReadForms(t *testing.T) {
	tr := `{"traceID":"1","spans":[{"traceID":"1","spanID":"2","processID":"p1"}],"processes":{"p1":{"serviceName":"s"}}}`
	for name, doc := range map[string]string{
		"envelope":         `{"data":[` + tr + `],"total":1}`,
		"data is one":      `{"errors":null,"data":` + tr + `}`,
		"bare trace":       tr,
		"bare array":       `[` + tr + `]`,
		"with whitespace":  "\n\t " + `{"data":[` + tr + `]}` + "\n",
		"byte order mark":  "\xef\xbb\xbf" + `{"data":[` + tr + `]}`,
		"members reversed": `{"processes":{"p1":{"serviceName":"s"}},"spans":[{"processID":"p1","spanID":"2","traceID":"1"}],"traceID":"1"}`,
	} {
		got, err := Parse([]byte(doc))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(got) != 1 || len(got[0].Spans) != 1 || got[0].Spans[0].SpanID != 2 || got[0].Spans[0].Process.ServiceName != "s" {
			t.Errorf("%s: %+v", name, got)
		}
	}
	got, err := Parse([]byte(`{"data":[],"total":0}`))
	if err != nil || len(got) != 0 {
		t.Fatal(got, err)
	}
}

func TestWriteRejects(t *testing.T) {
	bad := []model.Trace{{TraceID: model.TraceID{Low: 1}, Spans: []*model.Span{{TraceID: model.TraceID{Low: 1}, SpanID: 1,
		Tags: model.KeyValues{{Key: "x", Type: 7}}}}}}
	var buf bytes.Buffer
	if err := Write(&buf, bad); err == nil || buf.Len() != 0 {
		t.Fatal(err, buf.Len())
	}
}

func fuzzSeeds(t testing.TB) [][]byte {
	var b bytes.Buffer
	if err := Write(&b, goldenTraces()); err != nil {
		t.Fatal(err)
	}
	seeds := [][]byte{b.Bytes(), read(t, "testdata/api-traces.json"), read(t, "testdata/bare-trace.json"), read(t, "testdata/embedded-process.json")}
	if *update {
		dir := filepath.Join("testdata", "fuzz", "FuzzUIJSON")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return seeds
}

// FuzzUIJSON: Parse never panics, wraps ErrMalformed, and what it reads
// Write writes so that it reads back the same.
func FuzzUIJSON(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("does not wrap ErrMalformed: %v", err)
			}
			return
		}
		out, err := Append(nil, got)
		if err != nil {
			t.Fatalf("write what was read: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("read own output: %v\n%s", err, out)
		}
		if d := tracesDiff(again, got); d != "" {
			t.Fatalf("round trip: %s\n%s", d, out)
		}
	})
}

func benchDoc(b *testing.B) ([]byte, int) {
	var traces []model.Trace
	spans := 0
	for i := 0; i < 10; i++ {
		g := goldenTraces()[0]
		g.TraceID.Low += uint64(i)
		for j := 0; j < 10; j++ {
			g.Spans = append(g.Spans, g.Spans[0])
		}
		spans += len(g.Spans)
		traces = append(traces, g)
	}
	doc, err := Append(nil, traces)
	if err != nil {
		b.Fatal(err)
	}
	return doc, spans
}

func BenchmarkRead(b *testing.B) {
	doc, spans := benchDoc(b)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(doc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(spans)/b.Elapsed().Seconds(), "spans/s")
}

func BenchmarkWrite(b *testing.B) {
	doc, spans := benchDoc(b)
	traces, err := Parse(doc)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		if buf, err = Append(buf[:0], traces); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(spans)/b.Elapsed().Seconds(), "spans/s")
}
