package wire

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegerpb"
)

// TestJaegerProtoDifferentialMutations runs the fuzz test's differential
// check deterministically over every truncation and a set of single-byte
// mutations of the seed messages.
func TestJaegerProtoDifferentialMutations(t *testing.T) {
	var bulk JaegerProtoDecoder
	check := func(b []byte) {
		t.Helper()
		got, err := DecodeJaegerProto(b)
		checkBulk(t, &bulk, b, got, err)
		bulk.Recycle() // the next message reuses this one's blocks
		var p jaegerpb.Span
		var ref *model.Span
		refErr := proto.Unmarshal(b, &p)
		if refErr == nil {
			ref, refErr = spanFromPB(&p)
		}
		if (err == nil) != (refErr == nil) {
			t.Fatalf("input %x\ndirect error: %v\nreference error: %v", b, err, refErr)
		}
		if err == nil && !reflect.DeepEqual(got, ref) {
			t.Fatalf("input %x:%s", b, spanDiff(got, ref))
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("input %x: error does not wrap ErrMalformed: %v", b, err)
		}
	}
	seeds := fuzzSeeds(t, "FuzzJaegerProto")
	// Concatenated messages merge: lists resume after other lists started
	// (tags after process tags, more logs, a second process).
	for i := 1; i < len(seeds); i++ {
		check(append(append([]byte(nil), seeds[i-1]...), seeds[i]...))
	}
	// More key-values than a decoder block holds.
	big := realisticSpan()
	for i := 0; i < 3*kvBlock; i++ {
		big.Tags = append(big.Tags, model.Int64(fmt.Sprint("k", i), int64(i)))
		big.Process.Tags = append(big.Process.Tags, model.String(fmt.Sprint("p", i), "v"))
	}
	bigMsg, err := EncodeJaegerProto(big)
	if err != nil {
		t.Fatal(err)
	}
	check(bigMsg)
	check(append(append([]byte(nil), bigMsg...), bigMsg...))
	for _, seed := range seeds {
		for n := 0; n <= len(seed); n++ {
			check(seed[:n])
		}
		m := append([]byte(nil), seed...)
		for i := range m {
			orig := m[i]
			for _, v := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff, orig ^ 0x01, orig + 1, orig ^ 0x07} {
				m[i] = v
				check(m)
			}
			m[i] = orig
		}
	}
}

// checkBulk: JaegerProtoDecoder's Decode agrees with DecodeJaegerProto,
// which gave want or wantErr for b, and ReadJaegerProtoIDs reads the IDs of
// every message that decodes (of others it may or may not).
func checkBulk(t *testing.T, dec *JaegerProtoDecoder, b []byte, want *model.Span, wantErr error) {
	t.Helper()
	own := append([]byte(nil), b...) // Decode aliases its input
	got, err := dec.Decode(own)
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("input %x\nDecode error: %v\nDecodeJaegerProto error: %v", b, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("input %x: Decode:%s", b, spanDiff(got, want))
	}
	traceID, spanID, err := ReadJaegerProtoIDs(b)
	switch {
	case err != nil && wantErr == nil:
		t.Fatalf("input %x decodes, but its IDs do not read: %v", b, err)
	case err == nil && wantErr == nil && (traceID != want.TraceID || spanID != want.SpanID):
		t.Fatalf("input %x: ReadJaegerProtoIDs gives %v/%v, want %v/%v", b, traceID, spanID, want.TraceID, want.SpanID)
	}
}

// jaegerMessage encodes s as a Jaeger protobuf message and returns it with
// what DecodeJaegerProto makes of it, the reference for the bulk decoder.
func jaegerMessage(t *testing.T, s *model.Span) ([]byte, *model.Span) {
	t.Helper()
	b, err := EncodeJaegerProto(s)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := DecodeJaegerProto(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, ref
}

// TestJaegerProtoDecoderKeepsSpans: spans decoded from one block stay
// intact while later messages are decoded and checked, across blocks.
func TestJaegerProtoDecoderKeepsSpans(t *testing.T) {
	var dec JaegerProtoDecoder
	var want, got []*model.Span
	for i := 0; i < 3*spanBlock; i++ {
		s := realisticSpan()
		s.SpanID = model.SpanID(i + 1)
		s.Tags = append(s.Tags, model.Binary("blob", []byte{byte(i), 1, 2}))
		b, ref := jaegerMessage(t, s)
		g, err := dec.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ReadJaegerProtoIDs(b); err != nil {
			t.Fatal(err)
		}
		if _, err := dec.Decode(b[:len(b)-1]); err == nil {
			t.Fatal("a truncated message decoded")
		}
		want, got = append(want, ref), append(got, g)
	}
	for i := range want {
		if d := spanDiff(got[i], want[i]); d != "" {
			t.Fatalf("span %d:%s", i, d)
		}
	}
}

// TestJaegerProtoDecoderRecycles: after Recycle the next spans are decoded
// into the blocks of the previous ones, correctly; a decoder never recycled
// keeps no block.
func TestJaegerProtoDecoderRecycles(t *testing.T) {
	t.Logf("block bytes: spans %d, key-values %d, logs %d", spanBlock*unsafe.Sizeof(spanWithRef{}), kvBlock*unsafe.Sizeof(model.KeyValue{}), logBlock*unsafe.Sizeof(model.Log{}))
	msgs := func(salt int) (bs [][]byte, want []*model.Span) {
		for i := 0; i < 3*spanBlock; i++ {
			s := realisticSpan()
			s.SpanID = model.SpanID(salt*1000 + i + 1)
			s.Operation = fmt.Sprint("op-", salt, "-", i)
			s.Tags = append(s.Tags, model.Binary("blob", []byte{byte(i), byte(salt)}))
			if i%3 == 0 {
				s.Logs = append(s.Logs, model.Log{Timestamp: s.Start, Fields: []model.KeyValue{model.String("event", fmt.Sprint("e", i))}})
			}
			b, ref := jaegerMessage(t, s)
			bs, want = append(bs, b), append(want, ref)
		}
		return bs, want
	}
	var dec JaegerProtoDecoder
	var first *model.Span
	for round := 0; round < 4; round++ {
		bs, want := msgs(round)
		for i, b := range bs {
			got, err := dec.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				if round >= 2 && got != first {
					t.Errorf("round %d: the first span was not decoded into the recycled block", round)
				}
				first = got
			}
			if d := spanDiff(got, want[i]); d != "" {
				t.Fatalf("round %d, span %d:%s", round, i, d)
			}
		}
		dec.Recycle()
	}
	for _, n := range []int{len(dec.spanBlocks.kept), len(dec.kvBlocks.kept), len(dec.logBlocks.kept)} {
		if n > keptBlocks {
			t.Errorf("%d blocks kept, at most %d", n, keptBlocks)
		}
	}
	one, err := EncodeJaegerProto(realisticSpan())
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := dec.Decode(one); err != nil {
			t.Fatal(err)
		}
		dec.Recycle()
	}); allocs != 0 {
		t.Errorf("Decode then Recycle allocates %.1f times", allocs)
	}
	var never JaegerProtoDecoder
	bs, _ := msgs(9)
	for _, b := range bs {
		if _, err := never.Decode(b); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(never.spanBlocks.kept) + len(never.kvBlocks.kept) + len(never.logBlocks.kept); n != 0 {
		t.Errorf("a decoder never recycled keeps %d blocks", n)
	}
}

func TestReadJaegerProtoIDsAllocatesNothing(t *testing.T) {
	b, err := EncodeJaegerProto(realisticSpan())
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := ReadJaegerProtoIDs(b); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("ReadJaegerProtoIDs allocates %.1f times per message, want 0", allocs)
	}
}

// TestReadJaegerProtoIDs: the IDs of a message whose framing and IDs are
// sound read, whatever else Decode will reject; a message whose IDs do not
// read is one Decode rejects, with the same error.
func TestReadJaegerProtoIDs(t *testing.T) {
	good, err := EncodeJaegerProto(realisticSpan())
	if err != nil {
		t.Fatal(err)
	}
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	withIDs := func(rest ...[]byte) []byte {
		b := append(field(1, bytes.Repeat([]byte{1}, 16)), field(2, bytes.Repeat([]byte{2}, 8))...)
		for _, r := range rest {
			b = append(b, r...)
		}
		return b
	}
	const (
		decodes   = iota // the IDs read and the message decodes
		readsOnly        // the IDs read, Decode rejects the message
		noIDs            // the IDs do not read: Decode rejects it the same way
	)
	cases := []struct {
		name string
		msg  []byte
		want int
	}{
		{"a whole span", good, decodes},
		{"IDs only", withIDs(), decodes},
		{"unknown varint field", withIDs(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7)), decodes},
		{"IDs repeated: the last counts", append(withIDs(), field(2, bytes.Repeat([]byte{3}, 8))...), decodes},
		{"invalid UTF-8 operation name", withIDs(field(3, []byte("\xff"))), readsOnly},
		{"start time out of range", withIDs(field(6, protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 2e9))), readsOnly},
		{"malformed tag", withIDs(field(8, []byte{0xff})), readsOnly},
		{"empty", nil, noIDs},
		{"no span ID", field(1, bytes.Repeat([]byte{1}, 16)), noIDs},
		{"zero trace ID", append(field(1, make([]byte, 16)), field(2, bytes.Repeat([]byte{2}, 8))...), noIDs},
		{"short span ID", append(field(1, bytes.Repeat([]byte{1}, 16)), field(2, []byte{2, 2})...), noIDs},
		{"truncated", good[:len(good)-1], noIDs},
		{"field number 0", append(withIDs(), 0x02, 0x00), noIDs},
		{"not protobuf", []byte("\xff\xff not a span"), noIDs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, wantErr := DecodeJaegerProto(c.msg)
			traceID, spanID, err := ReadJaegerProtoIDs(c.msg)
			switch {
			case c.want == noIDs && (err == nil || wantErr == nil || err.Error() != wantErr.Error()):
				t.Fatalf("ReadJaegerProtoIDs error %v, Decode's %v: want the same error", err, wantErr)
			case c.want != noIDs && err != nil:
				t.Fatalf("ReadJaegerProtoIDs: %v", err)
			case (c.want == decodes) != (wantErr == nil):
				t.Fatalf("Decode error %v, want one: %v", wantErr, c.want != decodes)
			case c.want == decodes && (traceID != want.TraceID || spanID != want.SpanID):
				t.Fatalf("IDs %v/%v, Decode's %v/%v", traceID, spanID, want.TraceID, want.SpanID)
			}
		})
	}
}

// TestJaegerProtoDecoderSharesProcesses: spans whose process bytes were
// seen before share one decoded Process, which holds none of their
// messages; a repeated process field still merges into the first, and an
// invalid process is reported as without the cache.
func TestJaegerProtoDecoderSharesProcesses(t *testing.T) {
	encode := func(s *model.Span) []byte {
		t.Helper()
		b, err := EncodeJaegerProto(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	procField := func(service string, tags ...string) []byte {
		var p []byte
		if service != "" {
			p = protowire.AppendTag(p, 1, protowire.BytesType)
			p = protowire.AppendString(p, service)
		}
		for _, k := range tags {
			kv := protowire.AppendTag(nil, 1, protowire.BytesType)
			kv = protowire.AppendString(kv, k)
			kv = protowire.AppendTag(kv, 3, protowire.BytesType)
			kv = protowire.AppendString(kv, "v-"+k)
			p = protowire.AppendTag(p, 2, protowire.BytesType)
			p = protowire.AppendBytes(p, kv)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, 10, protowire.BytesType), p)
	}
	base := realisticSpan()
	other := realisticSpan()
	other.Process.ServiceName, other.SpanID = "billing", 7
	noProc := realisticSpan()
	noProc.Process = model.Process{}
	cases := []struct {
		name string
		msg  []byte
	}{
		{"first", encode(base)},
		{"same process", encode(base)},
		{"another process", encode(other)},
		{"first again", encode(base)},
		{"no process", encode(noProc)},
		{"process without service, then a second process", append(append(encode(noProc), procField("", "a")...), procField("svc", "b")...)},
		{"a known process, then a second process", append(append(encode(noProc), procField("svc", "b")...), procField("", "c")...)},
		{"the merged processes again", append(append(encode(noProc), procField("svc", "b")...), procField("", "c")...)},
		{"invalid UTF-8 in a process tag", append(encode(noProc), procField("svc", "\xff")...)},
		{"invalid UTF-8 again", append(encode(noProc), procField("svc", "\xff")...)},
	}
	var dec JaegerProtoDecoder
	var kept []*model.Span
	var msgs [][]byte
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, wantErr := DecodeJaegerProto(c.msg)
			checkBulk(t, &dec, c.msg, want, wantErr)
			if wantErr != nil {
				return
			}
			own := append([]byte(nil), c.msg...)
			got, err := dec.Decode(own)
			if err != nil {
				t.Fatal(err)
			}
			kept, msgs = append(kept, got), append(msgs, own)
		})
	}
	if &kept[0].Process.Tags[0] != &kept[1].Process.Tags[0] || &kept[0].Process.Tags[0] != &kept[3].Process.Tags[0] {
		t.Error("spans with the same process bytes do not share its tags")
	}
	if &kept[0].Process.Tags[0] == &kept[2].Process.Tags[0] {
		t.Error("spans with different processes share tags")
	}
	// The shared processes hold none of the messages: overwrite them.
	for _, m := range msgs {
		clear(m)
	}
	for i, want := range []*model.Span{base, base, other, base} {
		if !reflect.DeepEqual(kept[i].Process, want.Process) {
			t.Errorf("span %d: process %+v after its message was overwritten, want %+v", i, kept[i].Process, want.Process)
		}
	}
}
