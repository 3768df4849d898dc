package wire

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegertags"
)

var (
	testTraceID = model.TraceID{High: 0x4bf92f3577b34da6, Low: 0xa3ce929d0e0e4736}
	testStart   = model.TimestampOf(time.Date(2024, 5, 17, 10, 30, 0, 123456000, time.UTC))
)

// realisticSpan is the span the performance requirement talks about: ten
// tags, a process with three tags, one reference and one log.
func realisticSpan() *model.Span {
	return &model.Span{
		TraceID:   testTraceID,
		SpanID:    0x00f067aa0ba902b7,
		Operation: "HTTP GET /api/v1/orders/{id}",
		References: []model.Reference{
			{Type: model.ChildOf, TraceID: testTraceID, SpanID: 0x53995c3f42cd8ad8},
		},
		Flags:    1,
		Start:    testStart,
		Duration: 1234567 * time.Nanosecond,
		Tags: model.KeyValues{
			model.String("span.kind", "server"),
			model.String("http.method", "GET"),
			model.String("http.url", "https://shop.example.com/api/v1/orders/12345?expand=items"),
			model.Int64("http.status_code", 200),
			model.String("http.route", "/api/v1/orders/{id}"),
			model.String("component", "net/http"),
			model.String("peer.address", "10.12.4.33:51234"),
			model.Bool("sampler.param", true),
			model.String("sampler.type", "const"),
			model.Float64("db.rows_per_ms", 12.5),
		},
		Logs: []model.Log{{
			Timestamp: testStart.Add(500 * time.Microsecond),
			Fields: model.KeyValues{
				model.String("event", "cache miss"),
				model.String("key", "order:12345"),
			},
		}},
		Process: model.Process{
			ServiceName: "order-service",
			Tags: model.KeyValues{
				model.String("hostname", "order-7d9f8c6b5-x2x9k"),
				model.String("ip", "10.12.7.21"),
				model.String("jaeger.version", "Go-2.30.0"),
			},
		},
		Kind: model.KindServer,
	}
}

// richSpan has one of everything, including values that are easy to get
// wrong: negative numbers, -0.0, NaN bits, binary, unicode, escapes,
// a 64-bit trace ID, warnings, several logs and references.
func richSpan() *model.Span {
	tid := model.TraceID{Low: 0x1}
	return &model.Span{
		TraceID:   tid,
		SpanID:    0xffffffffffffffff,
		Operation: "grüße \"quoted\" \\ \n\t ✓",
		References: []model.Reference{
			{Type: model.FollowsFrom, TraceID: tid, SpanID: 2},
			{Type: model.ChildOf, TraceID: tid, SpanID: 3},
			{Type: model.ChildOf, TraceID: model.TraceID{High: 9, Low: 9}, SpanID: 4},
		},
		Flags:    0xffffffff,
		Start:    model.Timestamp(-1), // a nanosecond before the epoch
		Duration: -5 * time.Microsecond,
		Tags: model.KeyValues{
			model.Int64("neg", -42),
			model.Int64("max", math.MaxInt64),
			model.Int64("min", math.MinInt64),
			model.Float64("negzero", math.Copysign(0, -1)),
			model.Float64("tiny", 5e-324),
			model.Float64("inf", math.Inf(1)),
			model.Bool("f", false),
			model.Binary("blob", []byte{0, 1, 2, 0xff}),
			model.String("", ""),
			model.String("error", "true"),
			model.String("otel.status_description", "boom"),
		},
		Logs: []model.Log{
			{Timestamp: 0},
			{Timestamp: model.Timestamp(1e18), Fields: model.KeyValues{model.Int64("n", 1)}},
		},
		Process:       model.Process{ServiceName: "svc"},
		Status:        model.StatusError,
		StatusMessage: "boom",
		Warnings:      []string{"w1", ""},
	}
}

// otlpStyleSpans is a batch as an OTel SDK sends it: two services, two
// traces, kind and status as fields (no Jaeger tags), scope tags last,
// events whose first field is the event name, links.
func otlpStyleSpans() []*model.Span {
	t1 := model.TraceID{High: 0x0af7651916cd43dd, Low: 0x8448eb211c80319c}
	t2 := model.TraceID{High: 0x1, Low: 0x2}
	front := model.Process{ServiceName: "frontend", Tags: model.KeyValues{
		model.String("host.name", "web-1"), model.String("telemetry.sdk.language", "go"),
	}}
	db := model.Process{ServiceName: "db", Tags: model.KeyValues{model.Int64("process.pid", 4242)}}
	scope := func(tags ...model.KeyValue) model.KeyValues {
		return append(tags, model.String("otel.scope.name", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"),
			model.String("otel.scope.version", "0.49.0"))
	}
	return []*model.Span{
		{
			TraceID: t1, SpanID: 0xb7ad6b7169203331, Operation: "GET /checkout",
			Start: testStart, Duration: 25 * time.Millisecond, Flags: 1,
			Tags:    scope(model.String("http.method", "GET"), model.Int64("http.status_code", 500), model.String("tags", `["a","b"]`)),
			Process: front, Kind: model.KindServer, Status: model.StatusError, StatusMessage: "upstream failed",
			Logs: []model.Log{
				{Timestamp: testStart.Add(time.Millisecond), Fields: model.KeyValues{model.String("event", "exception"), model.String("exception.message", "timeout")}},
				{Timestamp: testStart.Add(2 * time.Millisecond)},
			},
		},
		{
			TraceID: t1, SpanID: 0x5fb397be34d26b51, Operation: "checkout.validate",
			References: []model.Reference{
				{Type: model.ChildOf, TraceID: t1, SpanID: 0xb7ad6b7169203331},
				{Type: model.FollowsFrom, TraceID: t2, SpanID: 0x7},
			},
			Start: testStart.Add(time.Millisecond), Duration: 3 * time.Millisecond,
			Tags: scope(), Process: front, Kind: model.KindInternal, Status: model.StatusOK,
		},
		{
			TraceID: t2, SpanID: 0x7, Operation: "SELECT orders",
			Start: testStart, Duration: 800 * time.Microsecond,
			Tags:    model.KeyValues{model.String("db.system", "postgresql"), model.Binary("db.blob", []byte{1, 2, 3}), model.Float64("ratio", 0.25), model.Bool("cached", false)},
			Process: db, Kind: model.KindClient,
		},
	}
}

// minimalSpan has only what every format requires.
func minimalSpan() *model.Span {
	return &model.Span{TraceID: model.TraceID{Low: 1}, SpanID: 2}
}

// withJaegerTags is what a Jaeger decoder returns for s: its tags plus the
// convention tags its Kind and Status need.
func withJaegerTags(s *model.Span) *model.Span {
	c := *s
	if extra := jaegertags.Extra(s); len(extra) > 0 {
		c.Tags = append(append(model.KeyValues(nil), s.Tags...), extra...)
	}
	return &c
}

// spanDiff explains how two spans differ, or returns "".
func spanDiff(got, want *model.Span) string {
	if reflect.DeepEqual(got, want) {
		return ""
	}
	return fmt.Sprintf("\n got %+v\nwant %+v", *got, *want)
}

func spansDiff(got, want []*model.Span) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d spans, want %d", len(got), len(want))
	}
	for i := range got {
		if d := spanDiff(got[i], want[i]); d != "" {
			return fmt.Sprintf("span %d:%s", i, d)
		}
	}
	return ""
}

// sortedSpans orders spans by trace and span ID (then by their Jaeger
// bytes), for comparing batches whose grouping may have changed the order.
func sortedSpans(spans []*model.Span) []*model.Span {
	out := append([]*model.Span(nil), spans...)
	key := func(s *model.Span) string {
		b, _ := EncodeJaegerProto(s)
		return string(b)
	}
	sort.SliceStable(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}
