package wire

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegerpb"
)

var update = flag.Bool("update", false, "rewrite the golden files and fuzz seed corpora under testdata")

var goldenFiles = map[Encoding]string{
	JaegerProto: "testdata/golden/span.jaeger.pb",
	JaegerJSON:  "testdata/golden/span.jaeger.json",
	OTLPProto:   "testdata/golden/span.otlp.pb",
	OTLPJSON:    "testdata/golden/span.otlp.json",
}

// TestGolden pins the bytes each encoder writes for one span, and checks
// each decoder reads them back.
func TestGolden(t *testing.T) {
	for _, enc := range Encodings() {
		t.Run(string(enc), func(t *testing.T) {
			span := realisticSpan()
			msgs, err := Encode(enc, []*model.Span{span})
			if err != nil {
				t.Fatal(err)
			}
			got := msgs[0]
			path := goldenFiles[enc]
			if enc == JaegerJSON || enc == OTLPJSON {
				// protojson varies its whitespace between builds on purpose;
				// the golden file holds the indented form.
				var buf bytes.Buffer
				if err := json.Indent(&buf, got, "", "  "); err != nil {
					t.Fatal(err)
				}
				got = append(buf.Bytes(), '\n')
			}
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./wire -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding differs from %s (rerun with -update if intended):\n%s\nwant:\n%s", path, got, want)
			}
			spans, err := Decode(Auto, want, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := spansDiff(spans, []*model.Span{span}); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestJaegerProtoMatchesGenerated: the hand-written encoder writes exactly
// what proto.Marshal of the generated type writes, and what the generated
// code writes from a message built field by field (not through our
// conversion) decodes to the expected span.
func TestJaegerProtoMatchesGenerated(t *testing.T) {
	for name, s := range map[string]*model.Span{"realistic": realisticSpan(), "rich": richSpan(), "minimal": minimalSpan()} {
		p, err := spanToPB(s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeJaegerProto(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: hand encoder differs from proto.Marshal\n got %x\nwant %x", name, got, want)
		}
	}
	tid := make16(0x11)
	msg, err := proto.Marshal(&jaegerpb.Span{
		TraceId:       tid,
		SpanId:        []byte{0, 0, 0, 0, 0, 0, 0, 3},
		OperationName: "example-operation-1",
		Process:       &jaegerpb.Process{ServiceName: "example-service-1"},
		Tags: []*jaegerpb.KeyValue{
			{Key: "span.kind", VStr: "client"},
			{Key: "error", VType: jaegerpb.ValueType_BOOL, VBool: true},
		},
		Logs: []*jaegerpb.Log{{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeJaegerProto(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := &model.Span{
		TraceID: model.TraceID{Low: 0x11}, SpanID: 3, Operation: "example-operation-1",
		Tags:    model.KeyValues{model.String("span.kind", "client"), model.Bool("error", true)},
		Logs:    []model.Log{{}},
		Process: model.Process{ServiceName: "example-service-1"},
		Kind:    model.KindClient, Status: model.StatusError,
	}
	if d := spanDiff(got, want); d != "" {
		t.Fatal(d)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJaegerJSONFixtures reads spans in the shapes Jaeger writes to Kafka
// with the json encoding: the current gogo-jsonpb form (base64 IDs,
// "0.001234s" durations, 64-bit integers as strings, vType omitted for
// strings) and the older form (hex IDs, Go durations, numbers).
func TestJaegerJSONFixtures(t *testing.T) {
	tid := model.TraceID{High: 0x4bf92f3577b34da6, Low: 0xa3ce929d0e0e4736}
	start := model.TimestampOf(time.Date(2024, 5, 17, 10, 30, 0, 123456000, time.UTC))
	cases := []struct {
		file string
		want *model.Span
	}{
		{"testdata/jaeger/kafka-json-span.json", &model.Span{
			TraceID: tid, SpanID: 0x00f067aa0ba902b7, Operation: "HTTP GET /api/v1/orders/{id}",
			References: []model.Reference{{Type: model.ChildOf, TraceID: tid, SpanID: 0x53995c3f42cd8ad8}},
			Flags:      1, Start: start, Duration: 1234 * time.Microsecond,
			Tags: model.KeyValues{
				model.String("span.kind", "server"), model.Int64("http.status_code", 503), model.Bool("error", true),
				model.Float64("retry.ratio", 0.5), model.Binary("payload", []byte{0, 0, 0x30, 0x39}),
			},
			Logs: []model.Log{{Timestamp: model.TimestampOf(time.Date(2024, 5, 17, 10, 30, 0, 124000000, time.UTC)),
				Fields: model.KeyValues{model.String("event", "retry"), model.Int64("attempt", 2)}}},
			Process: model.Process{ServiceName: "order-service", Tags: model.KeyValues{
				model.String("hostname", "order-1"), model.String("ip", "10.0.0.7"), model.String("jaeger.version", "Go-2.30.0")}},
			Kind: model.KindServer, Status: model.StatusError,
		}},
		{"testdata/jaeger/kafka-json-legacy.json", &model.Span{
			TraceID: model.TraceID{Low: 1}, SpanID: 3, Operation: "some-operation",
			References: []model.Reference{
				{Type: model.ChildOf, TraceID: model.TraceID{Low: 1}, SpanID: 2},
				{Type: model.FollowsFrom, TraceID: model.TraceID{Low: 0xff}, SpanID: 0xff},
			},
			Start:    model.TimestampOf(time.Date(2017, 1, 26, 21, 46, 31, 639875139, time.UTC)),
			Duration: 5 * time.Microsecond,
			Tags: model.KeyValues{model.String("peer.service", "service-y"), model.Int64("peer.ipv4", 23456),
				model.Float64("temperature", 72.5)},
			Process:  model.Process{ServiceName: "service-x"},
			Warnings: []string{"some span warning"},
		}},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			b := mustRead(t, c.file)
			if got := Detect(b); got != JaegerJSON {
				t.Fatalf("Detect = %s", got)
			}
			got, err := DecodeJaegerJSON(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := spanDiff(got, c.want); d != "" {
				t.Fatal(d)
			}
		})
	}
	// The current form is valid protobuf JSON: the generated code reads it
	// to the same span.
	var p jaegerpb.Span
	if err := protojson.Unmarshal(mustRead(t, cases[0].file), &p); err != nil {
		t.Fatal(err)
	}
	ref, err := spanFromPB(&p)
	if err != nil {
		t.Fatal(err)
	}
	if d := spanDiff(ref, cases[0].want); d != "" {
		t.Fatal(d)
	}
}

// TestOTLPJSONFixtures reads requests in the shape of the OTLP
// specification's example (uppercase hex IDs, times as numbers) and of
// pre-1.0 exporters (instrumentationLibrarySpans, base64 IDs, enum names).
func TestOTLPJSONFixtures(t *testing.T) {
	tid := model.TraceID{High: 0x5B8EFFF798038103, Low: 0xD269B633813FC60C}
	start := model.Timestamp(1544712660000000000)
	old := model.TraceID{Low: 0x60ba2abb44f13eae}
	cases := []struct {
		file string
		want []*model.Span
	}{
		{"testdata/otlp/spec-shaped.json", []*model.Span{{
			TraceID: tid, SpanID: 0xEEE19B7EC3C1B174, Operation: "POST /cart",
			References: []model.Reference{
				{Type: model.ChildOf, TraceID: tid, SpanID: 0xEEE19B7EC3C1B173},
				{Type: model.FollowsFrom, TraceID: model.TraceID{High: 0x0af7651916cd43dd, Low: 0x8448eb211c80319c}, SpanID: 0xb7ad6b7169203331},
			},
			Start: start, Duration: time.Second,
			Tags: model.KeyValues{
				model.Int64("http.status_code", 201), model.Bool("retry", false),
				model.String("items", `["a",2]`), model.String("limits", `{"max":1.5}`),
				model.String("otel.scope.name", "io.opentelemetry.okhttp"), model.String("otel.scope.version", "1.2.0"),
			},
			Logs: []model.Log{{Timestamp: start.Add(500 * time.Millisecond),
				Fields: model.KeyValues{model.String("event", "cache.miss"), model.String("key", "cart:1")}}},
			Process: model.Process{ServiceName: "checkout", Tags: model.KeyValues{model.String("host.name", "web-3")}},
			Kind:    model.KindServer, Status: model.StatusError, StatusMessage: "payment declined",
		}}},
		{"testdata/otlp/pre-1.0-base64-ids.json", []*model.Span{{
			TraceID: old, SpanID: 0x726b5e30102fc0d0, Operation: "HTTP GET - root",
			References: []model.Reference{{Type: model.ChildOf, TraceID: old, SpanID: 0x398f0f21a3db99ae}},
			Start:      1627471657255809000, Duration: 459 * time.Microsecond,
			Tags:    model.KeyValues{model.Int64("http.status_code", 200)},
			Process: model.Process{ServiceName: "db"},
			Kind:    model.KindServer, Status: model.StatusOK,
		}}},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			b := mustRead(t, c.file)
			if got := Detect(b); got != OTLPJSON {
				t.Fatalf("Detect = %s", got)
			}
			got, err := DecodeOTLPJSON(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := spansDiff(got, c.want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// fuzzSeeds are the seed inputs of each fuzz test; with -update they are
// also written to testdata/fuzz/<FuzzName>/ in the go fuzz corpus format.
func fuzzSeeds(t testing.TB, name string) [][]byte {
	var seeds [][]byte
	add := func(enc Encoding, spans ...*model.Span) {
		msgs, err := Encode(enc, spans)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, msgs...)
	}
	switch name {
	case "FuzzJaegerProto":
		add(JaegerProto, realisticSpan(), richSpan(), minimalSpan())
		add(JaegerProto, otlpStyleSpans()...)
	case "FuzzJaegerJSON":
		add(JaegerJSON, realisticSpan(), richSpan(), minimalSpan())
		seeds = append(seeds, mustRead(t, "testdata/jaeger/kafka-json-span.json"), mustRead(t, "testdata/jaeger/kafka-json-legacy.json"))
	case "FuzzOTLPProto":
		seeds = append(seeds, richOTLPRequest())
		add(OTLPProto, realisticSpan())
		add(OTLPProto, otlpStyleSpans()...)
		add(OTLPProto, minimalSpan())
		for _, f := range []string{"testdata/otlp/spec-shaped.json", "testdata/otlp/pre-1.0-base64-ids.json"} {
			spans, err := DecodeOTLPJSON(mustRead(t, f), nil)
			if err != nil {
				t.Fatal(err)
			}
			add(OTLPProto, spans...)
		}
	case "FuzzOTLPJSON":
		add(OTLPJSON, realisticSpan())
		add(OTLPJSON, otlpStyleSpans()...)
		seeds = append(seeds, mustRead(t, "testdata/otlp/spec-shaped.json"), mustRead(t, "testdata/otlp/pre-1.0-base64-ids.json"))
	}
	if *update {
		dir := filepath.Join("testdata", "fuzz", name)
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
