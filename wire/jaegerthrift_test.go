package wire

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uber/jaeger-client-go/thrift"
	"github.com/uber/jaeger-client-go/thrift-gen/agent"
	"github.com/uber/jaeger-client-go/thrift-gen/jaeger"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegertags"
)

// The reference for the hand-written Thrift decoder: jaeger-client-go's
// generated types and Thrift runtime, and a plain conversion as Jaeger's
// thrift-to-domain converter does it.

// boundedProto rejects list, set and map sizes larger than the bytes left,
// which the runtime would otherwise allocate for up front.
type boundedProto struct {
	thrift.TProtocol
	buf *thrift.TMemoryBuffer
}

func (p boundedProto) ReadListBegin(ctx context.Context) (thrift.TType, int, error) {
	t, n, err := p.TProtocol.ReadListBegin(ctx)
	if err == nil && n > p.buf.Len() {
		return t, 0, errors.New("list larger than the input")
	}
	return t, n, err
}

func (p boundedProto) ReadSetBegin(ctx context.Context) (thrift.TType, int, error) {
	t, n, err := p.TProtocol.ReadSetBegin(ctx)
	if err == nil && n > p.buf.Len() {
		return t, 0, errors.New("set larger than the input")
	}
	return t, n, err
}

func (p boundedProto) ReadMapBegin(ctx context.Context) (thrift.TType, thrift.TType, int, error) {
	k, v, n, err := p.TProtocol.ReadMapBegin(ctx)
	if err == nil && n > p.buf.Len() {
		return k, v, 0, errors.New("map larger than the input")
	}
	return k, v, n, err
}

// Skip skips a value as the runtime's SkipDefaultDepth does, except that
// an error reading a field header inside a skipped struct is an error (the
// runtime takes it for the end of the struct).
func (p boundedProto) Skip(ctx context.Context, t thrift.TType) error { return refSkip(ctx, p, t, 0) }

func refSkip(ctx context.Context, p boundedProto, t thrift.TType, depth int) error {
	if depth > thriftMaxDepth {
		return errors.New("too deep")
	}
	switch t {
	case thrift.STRUCT:
		if _, err := p.ReadStructBegin(ctx); err != nil {
			return err
		}
		for {
			_, ft, _, err := p.ReadFieldBegin(ctx)
			if err != nil {
				return err
			}
			if ft == thrift.STOP {
				break
			}
			if err := refSkip(ctx, p, ft, depth+1); err != nil {
				return err
			}
			if err := p.ReadFieldEnd(ctx); err != nil {
				return err
			}
		}
		return p.ReadStructEnd(ctx)
	case thrift.LIST, thrift.SET:
		et, n, err := p.ReadListBegin(ctx)
		if err != nil {
			return err
		}
		for range n {
			if err := refSkip(ctx, p, et, depth+1); err != nil {
				return err
			}
		}
		return p.ReadListEnd(ctx)
	case thrift.MAP:
		kt, vt, n, err := p.ReadMapBegin(ctx)
		if err != nil {
			return err
		}
		for range n {
			if err := refSkip(ctx, p, kt, depth+1); err != nil {
				return err
			}
			if err := refSkip(ctx, p, vt, depth+1); err != nil {
				return err
			}
		}
		return p.ReadMapEnd(ctx)
	}
	return p.TProtocol.Skip(ctx, t)
}

func refProtocol(b []byte, p ThriftProtocol) boundedProto {
	buf := thrift.NewTMemoryBufferLen(len(b))
	buf.Write(b)
	conf := &thrift.TConfiguration{MaxMessageSize: int32(len(b) + 1)}
	var proto thrift.TProtocol
	if p == ThriftCompact {
		proto = thrift.NewTCompactProtocolConf(buf, conf)
	} else {
		proto = thrift.NewTBinaryProtocolConf(buf, conf)
	}
	return boundedProto{TProtocol: proto, buf: buf}
}

// refDecodeBatch decodes a bare Batch with the generated code.
func refDecodeBatch(b []byte, p ThriftProtocol) (*jaeger.Batch, error) {
	var batch jaeger.Batch
	if err := batch.Read(context.Background(), refProtocol(b, p)); err != nil {
		return nil, err
	}
	return &batch, nil
}

// refDecodeEmitBatch decodes an emitBatch message with the generated code.
func refDecodeEmitBatch(b []byte, p ThriftProtocol) (*jaeger.Batch, error) {
	proto := refProtocol(b, p)
	ctx := context.Background()
	name, typ, _, err := proto.ReadMessageBegin(ctx)
	if err != nil {
		return nil, err
	}
	if name != "emitBatch" || (typ != thrift.CALL && typ != thrift.ONEWAY) {
		return nil, errors.New("not an emitBatch call")
	}
	var args agent.AgentEmitBatchArgs
	if err := args.Read(ctx, proto); err != nil {
		return nil, err
	}
	if args.Batch == nil {
		return nil, errors.New("no batch")
	}
	return args.Batch, nil
}

func refTags(tags []*jaeger.Tag) model.KeyValues {
	var kvs model.KeyValues
	for _, t := range tags {
		key := strings.ToValidUTF8(t.Key, "\uFFFD")
		var kv model.KeyValue
		switch t.VType {
		case jaeger.TagType_STRING:
			kv = model.String(key, strings.ToValidUTF8(t.GetVStr(), "\uFFFD"))
		case jaeger.TagType_DOUBLE:
			kv = model.Float64(key, t.GetVDouble())
		case jaeger.TagType_BOOL:
			kv = model.Bool(key, t.GetVBool())
		case jaeger.TagType_LONG:
			kv = model.Int64(key, t.GetVLong())
		case jaeger.TagType_BINARY:
			kv = model.Binary(key, t.VBinary)
		default:
			kv = model.String(key, "unknown tag type "+strconv.FormatInt(int64(t.VType), 10))
		}
		kvs = append(kvs, kv)
	}
	return kvs
}

// refSpans converts a Batch as Jaeger's converter does; ok is false when a
// span breaks the package's rules (zero IDs, times out of range, unknown
// reference types).
func refSpans(b *jaeger.Batch) ([]*model.Span, bool) {
	if b.Process == nil {
		return nil, false
	}
	proc := model.Process{ServiceName: strings.ToValidUTF8(b.Process.ServiceName, "\uFFFD"), Tags: refTags(b.Process.Tags)}
	var out []*model.Span
	for _, s := range b.Spans {
		if s == nil {
			return nil, false
		}
		sp := &model.Span{
			TraceID:   model.TraceID{High: uint64(s.TraceIdHigh), Low: uint64(s.TraceIdLow)},
			SpanID:    model.SpanID(s.SpanId),
			Operation: strings.ToValidUTF8(s.OperationName, "\uFFFD"),
			Flags:     uint32(s.Flags),
			Tags:      refTags(s.Tags),
			Process:   proc,
		}
		if sp.TraceID.IsZero() || sp.SpanID == 0 {
			return nil, false
		}
		if s.StartTime > math.MaxInt64/1000 || s.StartTime < math.MinInt64/1000 || s.Duration > math.MaxInt64/1000 || s.Duration < math.MinInt64/1000 {
			return nil, false
		}
		sp.Start = model.Timestamp(s.StartTime * 1000)
		sp.Duration = time.Duration(s.Duration * 1000)
		for _, r := range s.References {
			if r.RefType != jaeger.SpanRefType_CHILD_OF && r.RefType != jaeger.SpanRefType_FOLLOWS_FROM {
				return nil, false
			}
			sp.References = append(sp.References, model.Reference{Type: model.RefType(r.RefType),
				TraceID: model.TraceID{High: uint64(r.TraceIdHigh), Low: uint64(r.TraceIdLow)}, SpanID: model.SpanID(r.SpanId)})
		}
		if s.ParentSpanId != 0 {
			found := false
			for _, r := range sp.References {
				if r.SpanID == model.SpanID(s.ParentSpanId) && r.TraceID == sp.TraceID {
					found = true
				}
			}
			if !found {
				sp.References = append([]model.Reference{{Type: model.ChildOf, TraceID: sp.TraceID, SpanID: model.SpanID(s.ParentSpanId)}}, sp.References...)
			}
		}
		for _, l := range s.Logs {
			if l.Timestamp > math.MaxInt64/1000 || l.Timestamp < math.MinInt64/1000 {
				return nil, false
			}
			sp.Logs = append(sp.Logs, model.Log{Timestamp: model.Timestamp(l.Timestamp * 1000), Fields: refTags(l.Fields)})
		}
		jaegertags.Apply(sp)
		normalizeSpan(sp)
		out = append(out, sp)
	}
	return out, true
}

// sampleBatch is a Batch with every kind of field.
func sampleBatch() *jaeger.Batch {
	str := func(s string) *string { return &s }
	f := func(v float64) *float64 { return &v }
	bo := func(v bool) *bool { return &v }
	i := func(v int64) *int64 { return &v }
	return &jaeger.Batch{
		Process: &jaeger.Process{ServiceName: "feed", Tags: []*jaeger.Tag{
			{Key: "hostname", VType: jaeger.TagType_STRING, VStr: str("host-a")},
			{Key: "jaeger.version", VType: jaeger.TagType_STRING, VStr: str("Go-2.30.0")},
		}},
		Spans: []*jaeger.Span{
			{TraceIdLow: 0x1234, TraceIdHigh: 0x99, SpanId: 1, OperationName: "GET /feed", Flags: 1, StartTime: 1_700_000_000_000_000, Duration: 1500,
				Tags: []*jaeger.Tag{
					{Key: "span.kind", VType: jaeger.TagType_STRING, VStr: str("server")},
					{Key: "http.status_code", VType: jaeger.TagType_LONG, VLong: i(200)},
					{Key: "ratio", VType: jaeger.TagType_DOUBLE, VDouble: f(0.25)},
					{Key: "cached", VType: jaeger.TagType_BOOL, VBool: bo(true)},
					{Key: "blob", VType: jaeger.TagType_BINARY, VBinary: []byte{0, 1, 0xff}},
				}},
			{TraceIdLow: 0x1234, TraceIdHigh: 0x99, SpanId: 2, ParentSpanId: 1, OperationName: "db.query", Flags: 1, StartTime: 1_700_000_000_000_100, Duration: 700,
				Tags: []*jaeger.Tag{{Key: "error", VType: jaeger.TagType_BOOL, VBool: bo(true)}},
				Logs: []*jaeger.Log{{Timestamp: 1_700_000_000_000_200, Fields: []*jaeger.Tag{
					{Key: "event", VType: jaeger.TagType_STRING, VStr: str("error")},
					{Key: "message", VType: jaeger.TagType_STRING, VStr: str("timeout")},
				}}},
				References: []*jaeger.SpanRef{{RefType: jaeger.SpanRefType_FOLLOWS_FROM, TraceIdLow: 7, SpanId: 9}},
			},
			{TraceIdLow: 0x1234, TraceIdHigh: 0x99, SpanId: 3, ParentSpanId: 1, OperationName: "cache.get", StartTime: 1_700_000_000_000_100, Duration: 5,
				References: []*jaeger.SpanRef{{RefType: jaeger.SpanRefType_CHILD_OF, TraceIdLow: 0x1234, TraceIdHigh: 0x99, SpanId: 1}}},
		},
	}
}

// encodeBatch serializes b as a bare struct or as an emitBatch message.
func encodeBatch(tb testing.TB, b *jaeger.Batch, p ThriftProtocol, envelope bool) []byte {
	tb.Helper()
	buf := thrift.NewTMemoryBuffer()
	var proto thrift.TProtocol
	if p == ThriftCompact {
		proto = thrift.NewTCompactProtocolConf(buf, &thrift.TConfiguration{})
	} else {
		proto = thrift.NewTBinaryProtocolConf(buf, &thrift.TConfiguration{})
	}
	ctx := context.Background()
	var err error
	if envelope {
		if err = proto.WriteMessageBegin(ctx, "emitBatch", thrift.ONEWAY, 1); err == nil {
			args := agent.AgentEmitBatchArgs{Batch: b}
			if err = args.Write(ctx, proto); err == nil {
				err = proto.WriteMessageEnd(ctx)
			}
		}
	} else {
		err = b.Write(ctx, proto)
	}
	if err == nil {
		err = proto.Flush(ctx)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func decodeThrift(b []byte, p ThriftProtocol, envelope bool) ([]*model.Span, error) {
	if envelope {
		return DecodeAgentEmitBatch(b, p, nil)
	}
	return DecodeJaegerThrift(b, p, nil)
}

// checkThriftAgainstReference compares the decoder with the reference on b.
func checkThriftAgainstReference(t *testing.T, b []byte, p ThriftProtocol, envelope bool) {
	got, err := decodeThrift(b, p, envelope)
	var batch *jaeger.Batch
	var refErr error
	if envelope {
		batch, refErr = refDecodeEmitBatch(b, p)
	} else {
		batch, refErr = refDecodeBatch(b, p)
	}
	var want []*model.Span
	refOK := refErr == nil
	if refOK {
		want, refOK = refSpans(batch)
	}
	switch {
	case err == nil && refErr != nil:
		t.Fatalf("decoder accepted what the reference rejects (%v): %d spans", refErr, len(got))
	case err == nil && !refOK:
		t.Fatalf("decoder accepted a batch breaking the rules")
	case err != nil && refOK:
		t.Fatalf("decoder rejected what the reference accepts: %v", err)
	case err != nil:
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded spans differ from the reference:\n got %+v\nwant %+v", got, want)
	}
}

func TestJaegerThriftMatchesReference(t *testing.T) {
	for _, p := range []ThriftProtocol{ThriftCompact, ThriftBinary} {
		for _, env := range []bool{false, true} {
			t.Run(p.String()+map[bool]string{true: "/emitBatch", false: "/batch"}[env], func(t *testing.T) {
				b := encodeBatch(t, sampleBatch(), p, env)
				checkThriftAgainstReference(t, b, p, env)
				spans, err := decodeThrift(b, p, env)
				if err != nil || len(spans) != 3 {
					t.Fatalf("decode: %d spans, %v", len(spans), err)
				}
				if spans[0].Kind != model.KindServer || spans[1].Status != model.StatusError {
					t.Errorf("kind %v, status %v: not derived from the tags", spans[0].Kind, spans[1].Status)
				}
				if p, _, ok := spans[1].ParentSpanID(); !ok || p != 1 || len(spans[1].References) != 2 {
					t.Errorf("parentSpanId not turned into a leading CHILD_OF reference: %+v", spans[1].References)
				}
				if len(spans[2].References) != 1 {
					t.Errorf("parent named by a reference added twice: %+v", spans[2].References)
				}
				// Every strict prefix is an error, never a panic.
				for n := range len(b) {
					if _, err := decodeThrift(b[:n], p, env); err == nil && n < len(b)-1 {
						t.Fatalf("prefix of %d/%d bytes decoded without error", n, len(b))
					}
				}
			})
		}
	}
}

func TestJaegerThriftErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		p    ThriftProtocol
		env  bool
		want string
	}{
		{"empty", nil, ThriftCompact, true, "end of data"},
		{"not compact", []byte{0x80, 1, 0, 4}, ThriftCompact, true, "protocol id"},
		{"huge list", []byte{0x19, 0xfc, 0xff, 0xff, 0xff, 0x07}, ThriftCompact, false, "list of"},
		{"binary huge list", []byte{15, 0, 2, 12, 0x7f, 0xff, 0xff, 0xff}, ThriftBinary, false, "list of"},
		{"wrong method", encodeMessage(t, "emitZipkinBatch"), ThriftCompact, true, "not emitBatch"},
		{"no process", []byte{0x19, 0x0c, 0}, ThriftCompact, false, "process is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeThrift(tc.b, tc.p, tc.env)
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrMalformed saying %q", err, tc.want)
			}
		})
	}
	// Zero IDs.
	b := sampleBatch()
	b.Spans[1].SpanId = 0
	if _, err := DecodeJaegerThrift(encodeBatch(t, b, ThriftBinary, false), ThriftBinary, nil); err == nil || !strings.Contains(err.Error(), "span id is zero") {
		t.Errorf("zero span id: %v", err)
	}
	// Invalid UTF-8 is repaired, not refused.
	b = sampleBatch()
	b.Spans[0].OperationName = "bad\xffname"
	spans, err := DecodeJaegerThrift(encodeBatch(t, b, ThriftCompact, false), ThriftCompact, nil)
	if err != nil || spans[0].Operation != "bad\uFFFDname" {
		t.Errorf("invalid UTF-8: %v %q", err, spans[0].Operation)
	}
}

func encodeMessage(tb testing.TB, name string) []byte {
	buf := thrift.NewTMemoryBuffer()
	proto := thrift.NewTCompactProtocolConf(buf, &thrift.TConfiguration{})
	ctx := context.Background()
	proto.WriteMessageBegin(ctx, name, thrift.ONEWAY, 1)
	proto.WriteStructBegin(ctx, "args")
	proto.WriteFieldStop(ctx)
	proto.WriteStructEnd(ctx)
	proto.WriteMessageEnd(ctx)
	proto.Flush(ctx)
	return buf.Bytes()
}

func fuzzThrift(f *testing.F, p ThriftProtocol) {
	for _, env := range []bool{false, true} {
		b := encodeBatch(f, sampleBatch(), p, env)
		f.Add(b, env)
		f.Add(b[:len(b)/2], env)
	}
	empty := &jaeger.Batch{Process: &jaeger.Process{ServiceName: "x"}, Spans: []*jaeger.Span{}}
	f.Add(encodeBatch(f, empty, p, true), true)
	f.Fuzz(func(t *testing.T, b []byte, env bool) {
		checkThriftAgainstReference(t, b, p, env)
	})
}

// FuzzJaegerThriftCompact holds DecodeAgentEmitBatch and DecodeJaegerThrift
// (compact protocol) to jaeger-client-go's generated code.
func FuzzJaegerThriftCompact(f *testing.F) { fuzzThrift(f, ThriftCompact) }

// FuzzJaegerThriftBinary: the same for the binary protocol.
func FuzzJaegerThriftBinary(f *testing.F) { fuzzThrift(f, ThriftBinary) }

func BenchmarkDecodeJaegerThrift(b *testing.B) {
	batch := &jaeger.Batch{Process: sampleBatch().Process}
	for len(batch.Spans) < 99 {
		batch.Spans = append(batch.Spans, sampleBatch().Spans...)
	}
	for i, s := range batch.Spans {
		s.SpanId = int64(i + 1)
	}
	for _, p := range []ThriftProtocol{ThriftCompact, ThriftBinary} {
		msg := encodeBatch(b, batch, p, false)
		b.Run(p.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			var dst []*model.Span
			for b.Loop() {
				var err error
				dst, err = DecodeJaegerThrift(msg, p, dst[:0])
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch.Spans))/b.Elapsed().Seconds(), "spans/s")
		})
	}
}
