package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegertags"
)

// ThriftProtocol names a Thrift protocol of the Jaeger agent and collector.
type ThriftProtocol int8

const (
	// ThriftCompact is TCompactProtocol: jaeger-client-go's UDP sender
	// (agent port 6831).
	ThriftCompact ThriftProtocol = iota
	// ThriftBinary is TBinaryProtocol: the agent's port 6832 and the
	// collector's HTTP endpoint (POST /api/traces).
	ThriftBinary
)

func (p ThriftProtocol) String() string {
	if p == ThriftCompact {
		return "compact"
	}
	return "binary"
}

// DecodeJaegerThrift appends the spans of one jaeger.thrift Batch (a struct
// without message envelope, what jaeger-client-go's HTTP sender posts to
// /api/traces) to dst.
//
// DecodeAgentEmitBatch appends the spans of one call of the agent's
// emitBatch (a Thrift message whose argument 1 is a Batch, what
// jaeger-client-go's UDP sender writes in one datagram).
//
// Mapping, as Jaeger's thrift-to-domain converter does it: trace IDs from
// traceIdHigh/traceIdLow; a parentSpanId that no reference names becomes a
// CHILD_OF reference in front of the others; times and durations are
// microseconds; tag types map one to one (an unknown type becomes a string
// tag saying so); the batch's Process is every span's Process (spans share
// its Tags); Kind and Status are derived from the tags as for the other
// Jaeger formats. Strings that are not UTF-8 have their bad bytes replaced
// by U+FFFD (Jaeger's protobuf needs UTF-8; Thrift does not check).
// Unknown fields are skipped. Errors wrap ErrMalformed: bad framing, a
// missing required field (as the generated jaeger-client-go code requires
// them), a zero trace or span ID, a time outside int64 nanoseconds. On error
// dst is returned unchanged.
//
// The spans' strings are substrings of one copy of b; the spans of a batch
// share blocks. Nothing refers to b once the call returns.
func DecodeJaegerThrift(b []byte, p ThriftProtocol, dst []*model.Span) ([]*model.Span, error) {
	d := thriftDecoder{b: b, compact: p == ThriftCompact, what: "jaeger thrift batch", str: string(b)}
	n := len(dst)
	dst = d.batch(dst)
	if d.err != nil {
		clear(dst[n:])
		return dst[:n], d.err
	}
	return dst, nil
}

// DecodeAgentEmitBatch: see DecodeJaegerThrift.
func DecodeAgentEmitBatch(b []byte, p ThriftProtocol, dst []*model.Span) ([]*model.Span, error) {
	d := thriftDecoder{b: b, compact: p == ThriftCompact, what: "jaeger agent emitBatch", str: string(b)}
	n := len(dst)
	name := d.messageBegin()
	if d.err == nil && name != "emitBatch" {
		d.failf("message", "method %q is not emitBatch", name)
	}
	found := false
	if d.err == nil {
		d.structBegin()
		for d.err == nil {
			typ, id := d.fieldBegin()
			if typ == tStop || d.err != nil {
				break
			}
			if id == 1 && typ == tStruct {
				found = true
				dst = d.batch(dst)
				continue
			}
			d.skip(typ, 0)
		}
		d.structEnd()
	}
	if d.err == nil && !found {
		d.failf("emitBatch", "argument batch is missing")
	}
	if d.err != nil {
		clear(dst[n:])
		return dst[:n], d.err
	}
	return dst, nil
}

// Thrift type codes (TBinaryProtocol's; compact ones are translated).
const (
	tStop   = 0
	tBool   = 2
	tByte   = 3
	tDouble = 4
	tI16    = 6
	tI32    = 8
	tI64    = 10
	tString = 11
	tStruct = 12
	tMap    = 13
	tSet    = 14
	tList   = 15
)

const thriftMaxDepth = 64

// thriftDecoder reads Thrift's binary or compact protocol from b. The first
// error sticks; every read after it returns zero values.
type thriftDecoder struct {
	b       []byte
	str     string // one copy of b, strings are cut from it
	i       int
	compact bool
	what    string
	err     error

	// compact protocol state
	lastID  int16
	idStack []int16
	boolVal bool // value of a bool field read from its header
	hasBool bool
}

func (d *thriftDecoder) failf(field, format string, args ...any) {
	if d.err == nil {
		d.err = &DecodeError{What: d.what, Field: field, Offset: d.i, Msg: fmt.Sprintf(format, args...)}
	}
}

func (d *thriftDecoder) short(n int) bool {
	if d.err != nil {
		return true
	}
	if n < 0 || len(d.b)-d.i < n {
		d.failf("", "unexpected end of data")
		return true
	}
	return false
}

func (d *thriftDecoder) byte1() byte {
	if d.short(1) {
		return 0
	}
	c := d.b[d.i]
	d.i++
	return c
}

func (d *thriftDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		d.failf("", "bad varint")
		return 0
	}
	d.i += n
	return v
}

func zigzag(v uint64) int64 { return int64(v>>1) ^ -int64(v&1) }

func (d *thriftDecoder) i16() int16 {
	if d.compact {
		return int16(zigzag(d.uvarint()))
	}
	if d.short(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(d.b[d.i:])
	d.i += 2
	return int16(v)
}

func (d *thriftDecoder) i32() int32 {
	if d.compact {
		return int32(zigzag(d.uvarint()))
	}
	if d.short(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(d.b[d.i:])
	d.i += 4
	return int32(v)
}

func (d *thriftDecoder) i64() int64 {
	if d.compact {
		return zigzag(d.uvarint())
	}
	if d.short(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.i:])
	d.i += 8
	return int64(v)
}

func (d *thriftDecoder) double() float64 {
	if d.short(8) {
		return 0
	}
	var v uint64
	if d.compact {
		v = binary.LittleEndian.Uint64(d.b[d.i:])
	} else {
		v = binary.BigEndian.Uint64(d.b[d.i:])
	}
	d.i += 8
	return math.Float64frombits(v)
}

// boolField reads a bool field's value (in compact, it was in the header).
func (d *thriftDecoder) boolField() bool {
	if d.compact && d.hasBool {
		d.hasBool = false
		return d.boolVal
	}
	return d.byte1() == 1
}

// binaryLen reads the length of a string or binary and checks it fits.
func (d *thriftDecoder) binaryLen() int {
	var n int64
	if d.compact {
		n = int64(int32(d.uvarint()))
	} else {
		n = int64(d.i32())
	}
	if d.err != nil {
		return 0
	}
	if n < 0 {
		d.failf("", "negative length %d", n)
		return 0
	}
	if d.short(int(n)) {
		return 0
	}
	return int(n)
}

// text reads a string as a substring of d.str, made valid UTF-8.
func (d *thriftDecoder) text() string {
	s := d.rawBinary()
	if !validUTF8(d.b[d.i-len(s) : d.i]) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

// rawBinary reads a string or binary as a substring of d.str, as it is.
func (d *thriftDecoder) rawBinary() string {
	n := d.binaryLen()
	if d.err != nil {
		return ""
	}
	s := d.str[d.i : d.i+n]
	d.i += n
	return s
}

var compactToType = [...]byte{0, tBool, tBool, tByte, tI16, tI32, tI64, tDouble, tString, tList, tSet, tMap, tStruct}

func (d *thriftDecoder) compactType(t byte) byte {
	if int(t) >= len(compactToType) || t == 0 {
		d.failf("", "unknown compact type %d", t)
		return 0
	}
	return compactToType[t]
}

func (d *thriftDecoder) structBegin() {
	if d.compact {
		d.idStack = append(d.idStack, d.lastID)
		d.lastID = 0
	}
}

func (d *thriftDecoder) structEnd() {
	if d.compact && len(d.idStack) > 0 {
		d.lastID = d.idStack[len(d.idStack)-1]
		d.idStack = d.idStack[:len(d.idStack)-1]
	}
}

// fieldBegin reads a field header: its type (tStop at the end of a struct)
// and id.
func (d *thriftDecoder) fieldBegin() (byte, int16) {
	d.hasBool = false
	if !d.compact {
		t := d.byte1()
		if t == tStop || d.err != nil {
			return tStop, 0
		}
		return t, d.i16()
	}
	h := d.byte1()
	if d.err != nil || h&0x0f == 0 { // STOP, whatever the high bits
		return tStop, 0
	}
	ct := h & 0x0f
	var id int16
	if delta := h >> 4; delta != 0 {
		id = d.lastID + int16(delta)
	} else {
		id = d.i16()
	}
	t := d.compactType(ct)
	if ct == 1 || ct == 2 {
		d.hasBool, d.boolVal = true, ct == 1
	}
	d.lastID = id
	return t, id
}

// listBegin reads a list or set header: element type and count. The count
// is checked against the bytes left (every element takes at least one).
func (d *thriftDecoder) listBegin() (byte, int) {
	var et byte
	var n int64
	if d.compact {
		h := d.byte1()
		n = int64(h >> 4)
		if n == 15 {
			n = int64(int32(d.uvarint()))
		}
		if d.err != nil {
			return 0, 0
		}
		if h&0x0f != 0 { // 0 (STOP) is let through, as the runtime does
			et = d.compactType(h & 0x0f)
		}
	} else {
		et = d.byte1()
		n = int64(d.i32())
	}
	if d.err != nil {
		return 0, 0
	}
	if n < 0 || n > int64(len(d.b)-d.i) {
		d.failf("", "list of %d elements in %d bytes", n, len(d.b)-d.i)
		return 0, 0
	}
	return et, int(n)
}

// skip reads and discards a value of type t.
func (d *thriftDecoder) skip(t byte, depth int) {
	if depth > thriftMaxDepth {
		d.failf("", "nested deeper than %d", thriftMaxDepth)
		return
	}
	switch t {
	case tBool:
		if d.compact && d.hasBool {
			d.hasBool = false
			return
		}
		d.byte1()
	case tByte:
		d.byte1()
	case tI16:
		d.i16()
	case tI32:
		d.i32()
	case tI64:
		d.i64()
	case tDouble:
		d.double()
	case tString:
		n := d.binaryLen()
		d.i += n
	case tStruct:
		d.structBegin()
		for d.err == nil {
			ft, _ := d.fieldBegin()
			if ft == tStop {
				break
			}
			d.skip(ft, depth+1)
		}
		d.structEnd()
	case tList, tSet:
		et, n := d.listBegin()
		for k := 0; k < n && d.err == nil; k++ {
			if et == tBool {
				d.byte1()
				continue
			}
			d.skip(et, depth+1)
		}
	case tMap:
		var kt, vt byte
		var n int64
		if d.compact {
			n = int64(int32(d.uvarint()))
			if n > 0 {
				h := d.byte1()
				kt, vt = d.compactType(h>>4), d.compactType(h&0x0f)
			}
		} else {
			kt, vt = d.byte1(), d.byte1()
			n = int64(d.i32())
		}
		if d.err != nil {
			return
		}
		if n < 0 || n > int64(len(d.b)-d.i) {
			d.failf("", "map of %d entries in %d bytes", n, len(d.b)-d.i)
			return
		}
		for k := int64(0); k < n && d.err == nil; k++ {
			for _, et := range [2]byte{kt, vt} {
				if et == tBool {
					d.byte1()
				} else {
					d.skip(et, depth+1)
				}
			}
		}
	default:
		d.failf("", "unknown type %d", t)
	}
}

// messageBegin reads a message header and returns the method name.
func (d *thriftDecoder) messageBegin() string {
	var name string
	var typ byte
	if d.compact {
		if id := d.byte1(); d.err == nil && id != 0x82 {
			d.failf("message", "protocol id 0x%02x is not compact (0x82)", id)
			return ""
		}
		vt := d.byte1()
		if d.err == nil && vt&0x1f != 1 {
			d.failf("message", "compact protocol version %d, want 1", vt&0x1f)
			return ""
		}
		typ = vt >> 5
		d.uvarint() // sequence id
		name = d.text()
	} else {
		v := d.i32()
		if d.err != nil {
			return ""
		}
		if v < 0 { // strict: version and type
			if uint32(v)&0xffff0000 != 0x80010000 {
				d.failf("message", "bad binary protocol version 0x%08x", uint32(v))
				return ""
			}
			typ = byte(v)
			name = d.text()
		} else { // old style: the name first
			d.i -= 4
			name = d.text()
			typ = d.byte1()
		}
		d.i32() // sequence id
	}
	if d.err == nil && typ != 1 && typ != 4 { // CALL or ONEWAY
		d.failf("message", "message type %d is not a call", typ)
	}
	return name
}

// Required-field bits.
const (
	reqTraceLow = 1 << iota
	reqTraceHigh
	reqSpanID
	reqParent
	reqOperation
	reqFlags
	reqStart
	reqDuration
	reqSpanAll = 1<<iota - 1
)

func (d *thriftDecoder) batch(dst []*model.Span) []*model.Span {
	first := len(dst)
	var proc model.Process
	var haveProc, haveSpans bool
	d.structBegin()
	for d.err == nil {
		typ, id := d.fieldBegin()
		if typ == tStop || d.err != nil {
			break
		}
		switch {
		case id == 1 && typ == tStruct:
			haveProc = true
			proc = d.process()
		case id == 2 && typ == tList:
			haveSpans = true
			// As the generated code: the elements are read as structs
			// whatever type the list header names.
			_, n := d.listBegin()
			block := make([]model.Span, n)
			for k := range block {
				sp := &block[k]
				d.span(sp, k)
				if d.err != nil {
					break
				}
				dst = append(dst, sp)
			}
		case id == 4 && typ == tStruct:
			d.clientStats()
		default:
			d.skip(typ, 1)
		}
	}
	d.structEnd()
	if d.err != nil {
		return dst
	}
	if !haveProc {
		d.failf("batch", "required field process is missing")
	} else if !haveSpans {
		d.failf("batch", "required field spans is missing")
	}
	for _, sp := range dst[first:] {
		sp.Process = proc
		normalizeSpan(sp)
	}
	return dst
}

// clientStats checks the batch's optional ClientStats (three required
// counters, as the generated code requires them) and discards it.
func (d *thriftDecoder) clientStats() {
	seen := 0
	d.structBegin()
	for d.err == nil {
		typ, id := d.fieldBegin()
		if typ == tStop || d.err != nil {
			break
		}
		if id >= 1 && id <= 3 && typ == tI64 {
			seen |= 1 << (id - 1)
		}
		d.skip(typ, 2)
	}
	d.structEnd()
	if d.err == nil && seen != 7 {
		d.failf("stats", "a required field is missing (fullQueueDroppedSpans, tooLargeDroppedSpans, failedToEmitSpans)")
	}
}

func (d *thriftDecoder) process() model.Process {
	var p model.Process
	haveName := false
	d.structBegin()
	for d.err == nil {
		typ, id := d.fieldBegin()
		if typ == tStop || d.err != nil {
			break
		}
		switch {
		case id == 1 && typ == tString:
			haveName = true
			p.ServiceName = d.text()
		case id == 2 && typ == tList:
			p.Tags = d.tags(p.Tags[:0], "process.tags")
		default:
			d.skip(typ, 1)
		}
	}
	d.structEnd()
	if d.err == nil && !haveName {
		d.failf("process", "required field serviceName is missing")
	}
	if len(p.Tags) > 0 {
		p.Tags = p.Tags[:len(p.Tags):len(p.Tags)]
	}
	return p
}

// tags reads a list<Tag> (the list header not yet read).
func (d *thriftDecoder) tags(dst model.KeyValues, where string) model.KeyValues {
	_, n := d.listBegin() // elements read as structs, as the generated code does
	if dst == nil && n > 0 {
		dst = make(model.KeyValues, 0, n)
	}
	for k := 0; k < n && d.err == nil; k++ {
		dst = append(dst, d.tag(where))
	}
	return dst
}

func (d *thriftDecoder) tag(where string) model.KeyValue {
	var kv model.KeyValue
	var vType int32
	var haveKey, haveType bool
	var vStr, vBin string
	var vDouble float64
	var vBool bool
	var vLong int64
	d.structBegin()
	for d.err == nil {
		typ, id := d.fieldBegin()
		if typ == tStop || d.err != nil {
			break
		}
		switch {
		case id == 1 && typ == tString:
			haveKey = true
			kv.Key = d.text()
		case id == 2 && typ == tI32:
			haveType = true
			vType = d.i32()
		case id == 3 && typ == tString:
			vStr = d.text()
		case id == 4 && typ == tDouble:
			vDouble = d.double()
		case id == 5 && typ == tBool:
			vBool = d.boolField()
		case id == 6 && typ == tI64:
			vLong = d.i64()
		case id == 7 && typ == tString:
			vBin = d.rawBinary()
		default:
			d.skip(typ, 1)
		}
	}
	d.structEnd()
	if d.err != nil {
		return kv
	}
	if !haveKey || !haveType {
		d.failf(where, "required field key or vType is missing")
		return kv
	}
	switch vType {
	case 0:
		kv.Type, kv.Str = model.StringType, vStr
	case 1:
		kv = model.Float64(kv.Key, vDouble)
	case 2:
		kv = model.Bool(kv.Key, vBool)
	case 3:
		kv = model.Int64(kv.Key, vLong)
	case 4:
		kv.Type, kv.Str = model.BinaryType, vBin
	default:
		kv.Type, kv.Str = model.StringType, fmt.Sprintf("unknown tag type %d", vType)
	}
	return kv
}

func micros(us int64) (int64, bool) {
	if us > math.MaxInt64/1000 || us < math.MinInt64/1000 {
		return 0, false
	}
	return us * 1000, true
}

func (d *thriftDecoder) span(sp *model.Span, k int) {
	var seen int
	var parent int64
	d.structBegin()
	for d.err == nil {
		typ, id := d.fieldBegin()
		if typ == tStop || d.err != nil {
			break
		}
		switch {
		case id == 1 && typ == tI64:
			seen |= reqTraceLow
			sp.TraceID.Low = uint64(d.i64())
		case id == 2 && typ == tI64:
			seen |= reqTraceHigh
			sp.TraceID.High = uint64(d.i64())
		case id == 3 && typ == tI64:
			seen |= reqSpanID
			sp.SpanID = model.SpanID(d.i64())
		case id == 4 && typ == tI64:
			seen |= reqParent
			parent = d.i64()
		case id == 5 && typ == tString:
			seen |= reqOperation
			sp.Operation = d.text()
		case id == 6 && typ == tList:
			d.refs(sp)
		case id == 7 && typ == tI32:
			seen |= reqFlags
			sp.Flags = uint32(d.i32())
		case id == 8 && typ == tI64:
			seen |= reqStart
			us := d.i64()
			ns, ok := micros(us)
			if !ok {
				d.failf(fmt.Sprintf("spans[%d].startTime", k), "%d microseconds do not fit int64 nanoseconds", us)
			}
			sp.Start = model.Timestamp(ns)
		case id == 9 && typ == tI64:
			seen |= reqDuration
			us := d.i64()
			ns, ok := micros(us)
			if !ok {
				d.failf(fmt.Sprintf("spans[%d].duration", k), "%d microseconds do not fit int64 nanoseconds", us)
			}
			sp.Duration = time.Duration(ns)
		case id == 10 && typ == tList:
			sp.Tags = d.tags(sp.Tags, "tags")
		case id == 11 && typ == tList:
			d.logs(sp, k)
		default:
			d.skip(typ, 1)
		}
	}
	d.structEnd()
	if d.err != nil {
		return
	}
	if seen != reqSpanAll {
		d.failf(fmt.Sprintf("spans[%d]", k), "a required field is missing (traceIdLow, traceIdHigh, spanId, parentSpanId, operationName, flags, startTime, duration)")
		return
	}
	if sp.TraceID.IsZero() {
		d.failf(fmt.Sprintf("spans[%d]", k), "trace id is zero")
		return
	}
	if sp.SpanID == 0 {
		d.failf(fmt.Sprintf("spans[%d]", k), "span id is zero")
		return
	}
	if parent != 0 {
		found := false
		for _, r := range sp.References {
			if r.SpanID == model.SpanID(parent) && r.TraceID == sp.TraceID {
				found = true
				break
			}
		}
		if !found {
			refs := make([]model.Reference, 0, len(sp.References)+1)
			refs = append(refs, model.Reference{Type: model.ChildOf, TraceID: sp.TraceID, SpanID: model.SpanID(parent)})
			sp.References = append(refs, sp.References...)
		}
	}
	if len(sp.Tags) > 0 {
		sp.Tags = sp.Tags[:len(sp.Tags):len(sp.Tags)]
	}
	jaegertags.Apply(sp)
}

func (d *thriftDecoder) refs(sp *model.Span) {
	_, n := d.listBegin() // elements read as structs, as the generated code does
	if sp.References == nil && n > 0 {
		sp.References = make([]model.Reference, 0, n+1)
	}
	for k := 0; k < n && d.err == nil; k++ {
		var r model.Reference
		var seen int
		d.structBegin()
		for d.err == nil {
			typ, id := d.fieldBegin()
			if typ == tStop || d.err != nil {
				break
			}
			switch {
			case id == 1 && typ == tI32:
				seen |= 1
				r.Type = model.RefType(d.i32())
			case id == 2 && typ == tI64:
				seen |= 2
				r.TraceID.Low = uint64(d.i64())
			case id == 3 && typ == tI64:
				seen |= 4
				r.TraceID.High = uint64(d.i64())
			case id == 4 && typ == tI64:
				seen |= 8
				r.SpanID = model.SpanID(d.i64())
			default:
				d.skip(typ, 2)
			}
		}
		d.structEnd()
		if d.err != nil {
			return
		}
		if seen != 15 {
			d.failf("references", "a required field is missing (refType, traceIdLow, traceIdHigh, spanId)")
			return
		}
		if r.Type != model.ChildOf && r.Type != model.FollowsFrom {
			d.failf("references", "unknown reference type %d", r.Type)
			return
		}
		sp.References = append(sp.References, r)
	}
}

func (d *thriftDecoder) logs(sp *model.Span, k int) {
	_, n := d.listBegin() // elements read as structs, as the generated code does
	if sp.Logs == nil && n > 0 {
		sp.Logs = make([]model.Log, 0, n)
	}
	for j := 0; j < n && d.err == nil; j++ {
		var l model.Log
		var seen int
		d.structBegin()
		for d.err == nil {
			typ, id := d.fieldBegin()
			if typ == tStop || d.err != nil {
				break
			}
			switch {
			case id == 1 && typ == tI64:
				seen |= 1
				us := d.i64()
				ns, ok := micros(us)
				if !ok {
					d.failf(fmt.Sprintf("spans[%d].logs[%d].timestamp", k, j), "%d microseconds do not fit int64 nanoseconds", us)
				}
				l.Timestamp = model.Timestamp(ns)
			case id == 2 && typ == tList:
				seen |= 2
				l.Fields = d.tags(l.Fields, "logs.fields")
			default:
				d.skip(typ, 2)
			}
		}
		d.structEnd()
		if d.err != nil {
			return
		}
		if seen != 3 {
			d.failf(fmt.Sprintf("spans[%d].logs[%d]", k, j), "a required field is missing (timestamp, fields)")
			return
		}
		if len(l.Fields) == 0 {
			l.Fields = nil
		}
		sp.Logs = append(sp.Logs, l)
	}
}
