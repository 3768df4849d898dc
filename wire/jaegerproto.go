package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegertags"
)

// Field names of jaeger.api_v2 messages, for error messages.
var (
	spanFields = []string{1: "trace_id", 2: "span_id", 3: "operation_name", 4: "references", 5: "flags",
		6: "start_time", 7: "duration", 8: "tags", 9: "logs", 10: "process", 11: "process_id", 12: "warnings"}
	kvFields      = []string{1: "key", 2: "v_type", 3: "v_str", 4: "v_bool", 5: "v_int64", 6: "v_float64", 7: "v_binary"}
	refFields     = []string{1: "trace_id", 2: "span_id", 3: "ref_type"}
	logFields     = []string{1: "timestamp", 2: "fields"}
	processFields = []string{1: "service_name", 2: "tags"}
	tsFields      = []string{1: "seconds", 2: "nanos"}
)

func fieldName(names []string, num protowire.Number) string {
	if num > 0 && int(num) < len(names) && names[num] != "" {
		return fmt.Sprintf("field %d (%s)", num, names[num])
	}
	return fmt.Sprintf("field %d", num)
}

func joinPath(outer, inner string) string {
	if inner == "" {
		return outer
	}
	return outer + " > " + inner
}

// protoErrMsg turns a protowire error code into words.
func protoErrMsg(n int) string {
	err := protowire.ParseError(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated"
	}
	// protobuf-go prefixes "proto:" and then, deliberately at random, a
	// space or a no-break space.
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "proto:"); ok {
		msg = strings.TrimLeft(rest, " \u00a0")
	}
	return msg
}

// pbDecoder decodes one jaeger.api_v2.Span straight into a model.Span whose
// strings are substrings of str (a copy of the message, or the message
// itself), and whose key-values are carved from a block the caller gives.
//
// DecodeJaegerProto first counts the repeated fields (countJaeger), so that
// everything lands in exactly-sized allocations: the span (with its
// reference when it has exactly one), the copy of the message, one block
// for all key-values, and the logs, references and warnings when present.
// JaegerProtoDecoder skips the count and carves from blocks shared by many
// spans.
type pbDecoder struct {
	b    []byte
	str  string
	err  *DecodeError
	what string // for errors; "jaeger span" when empty
	// whole is set when err is about the decoded content rather than a
	// field's bytes; its path is complete and wrap leaves it alone.
	whole bool

	// Key-values are carved from block in runs, one per list (the span's
	// tags, its process tags, each log's fields), in the order they arrive:
	// a run is open while one list's key-values follow each other, as
	// every Jaeger encoder writes them, and closes when another list
	// starts. A list that resumes after its run closed is copied, one that
	// outgrows the block moves to the heap: correct, only slower.
	sp         *model.Span
	block      []model.KeyValue // what is left of the block
	run        []model.KeyValue // the open run
	runList    kvList           // whose run is open
	runInBlock bool             // run still lies at the front of block
	logFields  []model.KeyValue // the last closed log run

	procs *processCache // nil: every process is decoded
}

// kvList names the lists key-values belong to.
type kvList int8

const (
	noList kvList = iota
	tagList
	processList
	logList
)

// newKV adds a zero key-value to list and returns it.
func (d *pbDecoder) newKV(list kvList) *model.KeyValue {
	if d.runList != list {
		d.closeRun()
		d.runList, d.run, d.runInBlock = list, d.block[:0:len(d.block)], true
	}
	if len(d.run) == cap(d.run) {
		// The block is used up: the run goes on on the heap, and the
		// block's entries it used are zeroed for whoever carves them next.
		grown := make([]model.KeyValue, len(d.run), 2*len(d.run)+4)
		copy(grown, d.run)
		clear(d.run)
		d.run, d.runInBlock = grown, false
	}
	d.run = d.run[:len(d.run)+1]
	return &d.run[len(d.run)-1]
}

// closeRun hands the open run to its list and moves the block past it.
func (d *pbDecoder) closeRun() {
	if d.runList == noList {
		return
	}
	n := len(d.run)
	l := d.run[:n:n]
	if d.runInBlock {
		d.block = d.block[n:]
	}
	switch d.runList {
	case tagList:
		d.sp.Tags = appendList(d.sp.Tags, l)
	case processList:
		d.sp.Process.Tags = appendList(d.sp.Process.Tags, l)
	case logList:
		d.logFields = l
	}
	d.runList, d.run = noList, nil
}

func appendList(l, more []model.KeyValue) []model.KeyValue {
	if len(l) == 0 {
		return more
	}
	return append(l[:len(l):len(l)], more...)
}

func (d *pbDecoder) fail(names []string, num protowire.Number, off int, format string, args ...any) bool {
	if d.err == nil {
		field := ""
		if num != 0 {
			field = fieldName(names, num)
		}
		what := d.what
		if what == "" {
			what = "jaeger span"
		}
		d.err = &DecodeError{What: what, Field: field, Offset: off, Msg: fmt.Sprintf(format, args...)}
	}
	return false
}

// wrap prefixes the recorded error's path with field num of names.
func (d *pbDecoder) wrap(names []string, num protowire.Number) bool {
	if d.err != nil && !d.whole {
		d.err.Field = joinPath(fieldName(names, num), d.err.Field)
	}
	return false
}

// tag reads the tag at i. n < 0 is a protowire error code; -2 is an invalid
// field number (0 or above 2^29-1, as protobuf rejects).
func (d *pbDecoder) tag(i, end int) (protowire.Number, protowire.Type, int) {
	if i < end && d.b[i] < 0x80 {
		c := d.b[i]
		if c>>3 == 0 {
			return 0, 0, -2
		}
		return protowire.Number(c >> 3), protowire.Type(c & 7), 1
	}
	v, n := protowire.ConsumeVarint(d.b[i:end])
	if n < 0 {
		return 0, 0, n
	}
	if num := v >> 3; num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		return 0, 0, -2
	}
	return protowire.Number(v >> 3), protowire.Type(v & 7), n
}

// hdr reads the field header at i into h: a fast path for the usual
// one-byte tag and one-byte length, else next. (Headers are filled in place
// rather than returned: copying the returned struct costs a
// store-forwarding stall per field.)
func (d *pbDecoder) hdr(h *fieldHdr, i, end int, names []string) bool {
	if i+1 < end {
		if c := d.b[i]; c < 0x80 && c >= 8 {
			h.num, h.start = protowire.Number(c>>3), i
			if c&7 != 2 {
				h.typ, h.vs, h.ve = protowire.Type(c&7), i+1, 0
				return true
			}
			if l := int(d.b[i+1]); l < 0x80 && l <= end-i-2 {
				h.typ, h.vs, h.ve = protowire.BytesType, i+2, i+2+l
				return true
			}
		}
	}
	return d.next(h, i, end, names)
}

// fieldHdr is a field header: its number and wire type, the offset of its
// tag, and for bytes fields the content range [vs, ve) (for other wire
// types vs is where the value starts).
type fieldHdr struct {
	num    protowire.Number
	typ    protowire.Type
	start  int
	vs, ve int
}

// next reads the field header at i within a message that ends at end;
// parent is the message's path. ok=false means an error was recorded.
func (d *pbDecoder) next(h *fieldHdr, i, end int, names []string) bool {
	num, typ, n := d.tag(i, end)
	if n < 0 {
		if n == -2 {
			return d.fail(names, 0, i, "invalid field number")
		}
		return d.fail(names, 0, i, "field tag: %s", protoErrMsg(n))
	}
	*h = fieldHdr{num: num, typ: typ, start: i, vs: i + n}
	if typ == protowire.BytesType {
		var l uint64
		var m int
		if h.vs < end && d.b[h.vs] < 0x80 {
			l, m = uint64(d.b[h.vs]), 1
		} else {
			l, m = protowire.ConsumeVarint(d.b[h.vs:end])
			if m < 0 {
				return d.fail(names, num, i, "length: %s", protoErrMsg(m))
			}
		}
		if l > uint64(end-h.vs-m) {
			return d.fail(names, num, i, "truncated: length %d, %d bytes left", l, end-h.vs-m)
		}
		h.vs += m
		h.ve = h.vs + int(l)
	}
	return true
}

// skip consumes a field's value that is not used: an unknown field, or a
// known field with an unexpected wire type, which protobuf treats as
// unknown.
func (d *pbDecoder) skip(h fieldHdr, end int, names []string) (int, bool) {
	if h.typ == protowire.BytesType {
		return h.ve, true
	}
	m := protowire.ConsumeFieldValue(h.num, h.typ, d.b[h.vs:end])
	if m < 0 {
		return 0, d.fail(names, h.num, h.start, "%s", protoErrMsg(m))
	}
	return h.vs + m, true
}

func (d *pbDecoder) varint(h fieldHdr, end int, names []string) (uint64, int, bool) {
	if h.vs < end && d.b[h.vs] < 0x80 {
		return uint64(d.b[h.vs]), h.vs + 1, true
	}
	v, m := protowire.ConsumeVarint(d.b[h.vs:end])
	if m < 0 {
		return 0, 0, d.fail(names, h.num, h.start, "%s", protoErrMsg(m))
	}
	return v, h.vs + m, true
}

// text returns a string field's value, a substring of the message copy.
// Strings must be UTF-8, as protobuf requires of proto3 strings.
func (d *pbDecoder) text(h fieldHdr, names []string) (string, bool) {
	if h.ve == h.vs {
		return "", true
	}
	if !validUTF8(d.b[h.vs:h.ve]) {
		return "", d.fail(names, h.num, h.start, "invalid UTF-8")
	}
	return d.str[h.vs:h.ve], true
}

// validText checks that a string field is UTF-8, without reading it.
func (d *pbDecoder) validText(h fieldHdr, names []string) bool {
	if !validUTF8(d.b[h.vs:h.ve]) {
		return d.fail(names, h.num, h.start, "invalid UTF-8")
	}
	return true
}

// pbTime is a Timestamp or Duration as read, merged over occurrences (a
// repeated occurrence of a message field merges into the earlier one).
type pbTime struct {
	sec   int64
	nanos int32
}

func (d *pbDecoder) time(vs, ve int, t *pbTime) bool {
	for i := vs; i < ve; {
		var h fieldHdr
		ok := d.next(&h, i, ve, tsFields)
		if !ok {
			return false
		}
		if (h.num == 1 || h.num == 2) && h.typ == protowire.VarintType {
			v, j, ok := d.varint(h, ve, tsFields)
			if !ok {
				return false
			}
			if h.num == 1 {
				t.sec = int64(v)
			} else {
				t.nanos = int32(v)
			}
			i = j
			continue
		}
		if i, ok = d.skip(h, ve, tsFields); !ok {
			return false
		}
	}
	return true
}

// DecodeJaegerProto decodes one jaeger.api_v2.Span message, as Jaeger
// collectors write to Kafka with the protobuf encoding.
//
// The strings of the returned span share one copy of b (b itself is not
// retained and may be reused); a long-lived holder of a few of its strings
// should strings.Clone them to let the rest go. JaegerProtoDecoder decodes
// many messages faster, without copying them.
func DecodeJaegerProto(b []byte) (*model.Span, error) {
	return decodeJaegerProto(b)
}

// spanWithRef allocates a span and its one reference together, the
// common case.
type spanWithRef struct {
	span model.Span
	ref  [1]model.Reference
}

func decodeJaegerProto(b []byte) (*model.Span, error) {
	c := countJaeger(b)
	var sp *model.Span
	if c.refs == 1 {
		x := new(spanWithRef)
		sp = &x.span
		sp.References = x.ref[:0:1]
	} else {
		sp = new(model.Span)
		if c.refs > 0 {
			sp.References = make([]model.Reference, 0, c.refs)
		}
	}
	var kvs []model.KeyValue
	if n := c.kvs(); n > 0 {
		kvs = make([]model.KeyValue, n)
	}
	if c.logs > 0 {
		sp.Logs = make([]model.Log, 0, c.logs)
	}
	if c.warnings > 0 {
		sp.Warnings = make([]string, 0, c.warnings)
	}
	d := pbDecoder{b: b, str: string(b)}
	if !d.decode(sp, kvs) {
		return nil, d.err
	}
	jaegertags.Apply(sp)
	return sp, nil
}

// decode decodes the span into sp, carving its key-values from block.
func (d *pbDecoder) decode(sp *model.Span, block []model.KeyValue) bool {
	d.sp, d.block = sp, block
	ok := d.span(sp)
	d.closeRun()
	if ok {
		normalizeSpan(sp)
	}
	return ok
}

// JaegerProtoDecoder decodes Jaeger protobuf span messages in bulk, for a
// consumer that keeps the messages anyway (the ingester stores them as the
// spans' buffered form):
//
//   - Decode does not copy the message: the span's strings and binary
//     values alias b, which the caller must not modify while the span is in
//     use. Spans and key-values are carved from blocks shared by successive
//     spans, so a block stays in memory while any of its spans is reachable;
//     decode spans that live and die together (a trace being emitted).
//   - Processes are remembered by their bytes (Jaeger writes the whole
//     process into every span; a service's spans carry the same one): a
//     process seen before is neither validated nor decoded again, and the
//     spans Decode returns for it share one Process value, its strings and
//     tag array held by the decoder's copy of the bytes, not by b. Callers
//     must not modify a decoded span's Process.Tags in place.
//
// Unlike DecodeJaegerProto, Decode makes no first pass to count what to
// allocate; it gives the same errors. (ReadJaegerProtoIDs reads a
// message's IDs without decoding it.) The zero
// value is ready to use; a decoder is not safe for concurrent use.
type JaegerProtoDecoder struct {
	spans []spanWithRef    // the front of the current span block
	kvs   []model.KeyValue // the front of the current key-value block
	logs  []model.Log      // the front of the current log block

	// Blocks reused after Recycle (see there).
	recycling  bool
	spanBlocks blockPool[spanWithRef]
	kvBlocks   blockPool[model.KeyValue]
	logBlocks  blockPool[model.Log]

	procs processCache
}

// processCache maps the bytes of process messages already seen to their
// decoded form. Entries own a copy of the bytes and are never modified,
// so spans may share them after they are forgotten.
type processCache struct {
	m map[string]*model.Process
}

// maxCachedProcesses bounds a processCache (about 200 B each for a process
// with three tags): past it the cache starts afresh.
const maxCachedProcesses = 4096

// get returns the decoded process of the process message b, decoding and
// remembering it when it is new, or nil when b does not decode (the
// caller's own decoding then reports why, with the span's offsets).
func (c *processCache) get(b []byte) *model.Process {
	if p := c.m[string(b)]; p != nil {
		return p
	}
	own := string(b)
	var sp model.Span
	d := pbDecoder{b: unsafe.Slice(unsafe.StringData(own), len(own)), str: own, sp: &sp}
	if n := countField2(b); n > 0 {
		d.block = make([]model.KeyValue, n)
	}
	ok := d.process(fieldHdr{num: 10, typ: protowire.BytesType, vs: 0, ve: len(own)}, &sp.Process)
	d.closeRun()
	if !ok {
		return nil
	}
	p := &model.Process{ServiceName: sp.Process.ServiceName, Tags: sp.Process.Tags[:len(sp.Process.Tags):len(sp.Process.Tags)]}
	if len(p.Tags) == 0 {
		p.Tags = nil // as normalizeSpan leaves it
	}
	if c.m == nil || len(c.m) >= maxCachedProcesses {
		c.m = make(map[string]*model.Process)
	}
	c.m[own] = p
	return p
}

// Block sizes: large enough to amortise allocation, small enough that a
// span kept alive pins little. A span starts a new key-value block when
// fewer than kvHeadroom are left.
const (
	spanBlock  = 32
	kvBlock    = 512
	kvHeadroom = 64
	logBlock   = 32
)

// Decode decodes one message into a span that aliases b (see the type's
// documentation).
func (j *JaegerProtoDecoder) Decode(b []byte) (*model.Span, error) {
	if len(j.spans) == 0 {
		j.spans = j.spanBlocks.get(spanBlock, j.recycling)
	}
	if len(j.kvs) < kvHeadroom {
		j.kvs = j.kvBlocks.get(kvBlock, j.recycling)
	}
	if len(j.logs) == 0 {
		j.logs = j.logBlocks.get(logBlock, j.recycling)
	}
	x := &j.spans[0]
	j.spans = j.spans[1:]
	sp := &x.span
	sp.References = x.ref[:0:1]
	sp.Logs = j.logs[:0:len(j.logs)]
	d := pbDecoder{b: b, str: aliasString(b), procs: &j.procs}
	ok := d.decode(sp, j.kvs)
	used := len(j.kvs) - len(d.block)
	if !ok {
		// Let go of what the failed span holds of b, and reuse its room.
		clear(j.kvs[:used])
		clear(j.logs)
		*x = spanWithRef{}
		return nil, d.err
	}
	j.kvs = j.kvs[used:]
	if n := len(sp.Logs); n > 0 && n <= len(j.logs) && &sp.Logs[0] == &j.logs[0] {
		sp.Logs = sp.Logs[:n:n]
		j.logs = j.logs[n:]
	}
	jaegertags.Apply(sp)
	return sp, nil
}

// Recycle tells the decoder that no span Decode returned is in use any
// more (nor anything of it: its tags, logs, references): the memory of up
// to keptBlocks blocks of each kind (135 KiB in all) is cleared and
// the next Decodes reuse it instead of allocating; further blocks are left
// to the collector. A decoder never recycled keeps nothing. The ingester
// decodes a trace, analyses and encodes it, then recycles: its decoded
// spans were the largest part of its garbage.
func (j *JaegerProtoDecoder) Recycle() {
	j.recycling = true
	j.spanBlocks.recycle(len(j.spans))
	j.kvBlocks.recycle(len(j.kvs))
	j.logBlocks.recycle(len(j.logs))
	j.spans, j.kvs, j.logs = nil, nil, nil
}

// keptBlocks is how many blocks of each kind a recycling decoder reuses.
const keptBlocks = 4

// blockPool hands out blocks of n T: the kept ones first, cleared since
// the last recycle, then new ones, of which it keeps up to keptBlocks when
// track is set.
type blockPool[T any] struct {
	kept [][]T
	used int // kept[:used] are handed out
	last *T  // the first element of the block handed out last
}

func (p *blockPool[T]) get(n int, track bool) []T {
	if p.used < len(p.kept) {
		b := p.kept[p.used]
		p.used++
		p.last = &b[0]
		return b
	}
	b := make([]T, n)
	if track && len(p.kept) < keptBlocks {
		p.kept = append(p.kept, b)
		p.used++
	}
	p.last = &b[0]
	return b
}

// recycle clears the blocks handed out, of the last one only the part
// before its unused tail of rest elements, and hands them out again.
func (p *blockPool[T]) recycle(rest int) {
	for _, b := range p.kept[:p.used] {
		if &b[0] == p.last {
			b = b[:len(b)-rest]
		}
		clear(b)
	}
	p.used, p.last = 0, nil
}

// ReadJaegerProtoIDs reads the trace and span IDs of one Jaeger protobuf
// span message, checking only what they need: that the message's fields are
// well framed (tags, lengths) and that both IDs are present, of the right
// size and not zero, with the error Decode gives then. What else Decode
// rejects (invalid UTF-8, a timestamp out of range, a malformed tag, log
// or reference…) is left to Decode: a message whose IDs read may still not
// decode, but one whose IDs do not read never decodes, and a message that
// decodes has these IDs. The ingester reads IDs on arrival and decodes each
// span once, when its trace is emitted. It allocates nothing.
func ReadJaegerProtoIDs(b []byte) (model.TraceID, model.SpanID, error) {
	d := pbDecoder{b: b}
	traceAt, spanAt := -1, -1
	var traceID, spanID []byte
	for i, end := 0, len(b); i < end; {
		var h fieldHdr
		if !d.hdr(&h, i, end, spanFields) {
			return model.TraceID{}, 0, d.err
		}
		if h.typ != protowire.BytesType {
			var ok bool
			if i, ok = d.skip(h, end, spanFields); !ok {
				return model.TraceID{}, 0, d.err
			}
			continue
		}
		i = h.ve
		switch h.num {
		case 1:
			traceID, traceAt = b[h.vs:h.ve], h.start
		case 2:
			spanID, spanAt = b[h.vs:h.ve], h.start
		}
	}
	tid, sid, ok := d.spanIDs(traceID, traceAt, spanID, spanAt)
	if !ok {
		return model.TraceID{}, 0, d.err
	}
	return tid, sid, nil
}

// spanIDs converts a span's trace and span ID fields (found at traceAt and
// spanAt, -1 when absent), recording the error Decode and
// ReadJaegerProtoIDs both give when one is missing, of the wrong size or
// zero.
func (d *pbDecoder) spanIDs(traceID []byte, traceAt int, spanID []byte, spanAt int) (model.TraceID, model.SpanID, bool) {
	tid, err := traceIDFromBytes(traceID)
	if err != nil {
		return tid, 0, d.fail(spanFields, 1, traceAt, "%v", err)
	}
	sid, err := spanIDFromBytes(spanID)
	if err != nil {
		return tid, 0, d.fail(spanFields, 2, spanAt, "%v", err)
	}
	return tid, sid, true
}

// aliasString returns b's bytes as a string without copying; b must not
// change while the string is in use.
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

type jaegerCounts struct {
	refs, tags, procTags, logs, logFields, warnings int
}

// kvs is the number of key-values: tags, process tags and log fields.
func (c jaegerCounts) kvs() int { return c.tags + c.procTags + c.logFields }

// countJaeger counts the repeated fields of a span. It stops quietly at
// malformed bytes (the decoder reports those); the decoder appends beyond
// the counts if it must.
func countJaeger(b []byte) jaegerCounts {
	var c jaegerCounts
	for i := 0; i < len(b); {
		num, typ, vs, ve, ok := quickField(b, i)
		if !ok {
			return c
		}
		i = ve
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 4:
			c.refs++
		case 8:
			c.tags++
		case 9:
			c.logs++
			c.logFields += countField2(b[vs:ve])
		case 10:
			c.procTags += countField2(b[vs:ve])
		case 12:
			c.warnings++
		}
	}
	return c
}

// quickField reads the field at b[i:]: its number, wire type, value range
// (the content for bytes fields) and end.
func quickField(b []byte, i int) (num protowire.Number, typ protowire.Type, vs, ve int, ok bool) {
	if i+1 < len(b) && b[i] < 0x80 && b[i] >= 8 && b[i]&7 == 2 && b[i+1] < 0x80 {
		vs = i + 2
		ve = vs + int(b[i+1])
		return protowire.Number(b[i] >> 3), protowire.BytesType, vs, ve, ve <= len(b)
	}
	num, typ, n := protowire.ConsumeTag(b[i:])
	if n < 0 {
		return 0, 0, 0, 0, false
	}
	vs = i + n
	if typ == protowire.BytesType {
		v, m := protowire.ConsumeBytes(b[vs:])
		if m < 0 {
			return 0, 0, 0, 0, false
		}
		return num, typ, vs + m - len(v), vs + m, true
	}
	m := protowire.ConsumeFieldValue(num, typ, b[vs:])
	if m < 0 {
		return 0, 0, 0, 0, false
	}
	return num, typ, vs, vs + m, true
}

func countField2(b []byte) int {
	n := 0
	for i := 0; i < len(b); {
		num, typ, _, ve, ok := quickField(b, i)
		if !ok {
			return n
		}
		if num == 2 && typ == protowire.BytesType {
			n++
		}
		i = ve
	}
	return n
}

// nextKV extends kvs by one element and returns it, in place when there is
// room.
func nextKV(kvs []model.KeyValue) ([]model.KeyValue, *model.KeyValue) {
	if len(kvs) < cap(kvs) {
		kvs = kvs[:len(kvs)+1]
	} else {
		kvs = append(kvs, model.KeyValue{})
	}
	return kvs, &kvs[len(kvs)-1]
}

func (d *pbDecoder) span(sp *model.Span) bool {
	end := len(d.b)
	traceAt, spanAt, startAt, durAt := -1, -1, -1, -1
	var traceID, spanID []byte
	var start, dur pbTime
	for i := 0; i < end; {
		var h fieldHdr
		ok := d.hdr(&h, i, end, spanFields)
		if !ok {
			return false
		}
		if h.typ == protowire.BytesType {
			i = h.ve
			switch h.num {
			case 1:
				traceID, traceAt = d.b[h.vs:h.ve], h.start
			case 2:
				spanID, spanAt = d.b[h.vs:h.ve], h.start
			case 3:
				if sp.Operation, ok = d.text(h, spanFields); !ok {
					return false
				}
			case 4:
				var r model.Reference
				if !d.ref(h, &r) {
					return d.wrap(spanFields, 4)
				}
				sp.References = append(sp.References, r)
			case 6:
				startAt = h.start
				if !d.time(h.vs, h.ve, &start) {
					return d.wrap(spanFields, 6)
				}
			case 7:
				durAt = h.start
				if !d.time(h.vs, h.ve, &dur) {
					return d.wrap(spanFields, 7)
				}
			case 8:
				if !d.keyValue(h.vs, h.ve, h.start, d.newKV(tagList)) {
					return d.wrap(spanFields, 8)
				}
			case 9:
				if !d.log(h, sp) {
					return d.wrap(spanFields, 9)
				}
			case 10:
				// The first process field (a repeated one merges into it).
				if d.procs != nil && sp.Process.ServiceName == "" && sp.Process.Tags == nil && d.runList != processList {
					if p := d.procs.get(d.b[h.vs:h.ve]); p != nil {
						sp.Process = *p
						continue
					}
				}
				if !d.process(h, &sp.Process) {
					return d.wrap(spanFields, 10)
				}
			case 11:
				if !d.validText(h, spanFields) {
					return false
				}
			case 12:
				w, ok := d.text(h, spanFields)
				if !ok {
					return false
				}
				sp.Warnings = append(sp.Warnings, w)
			}
			continue
		}
		if h.num == 5 && h.typ == protowire.VarintType {
			v, j, ok := d.varint(h, end, spanFields)
			if !ok {
				return false
			}
			sp.Flags = uint32(v)
			i = j
			continue
		}
		if i, ok = d.skip(h, end, spanFields); !ok {
			return false
		}
	}
	var ok bool
	if sp.TraceID, sp.SpanID, ok = d.spanIDs(traceID, traceAt, spanID, spanAt); !ok {
		return false
	}
	ts, ok := timestampNanos(start.sec, start.nanos)
	if !ok {
		return d.fail(spanFields, 6, startAt, "timestamp %ds %dns out of range", start.sec, start.nanos)
	}
	sp.Start = model.Timestamp(ts)
	dn, ok := durationNanos(dur.sec, dur.nanos)
	if !ok {
		return d.fail(spanFields, 7, durAt, "duration %ds %dns out of range", dur.sec, dur.nanos)
	}
	sp.Duration = time.Duration(dn)
	return true
}

func (d *pbDecoder) ref(h fieldHdr, r *model.Reference) bool {
	var traceID, spanID []byte
	traceAt, spanAt := h.start, h.start
	var refType int32
	for i := h.vs; i < h.ve; {
		var f fieldHdr
		ok := d.hdr(&f, i, h.ve, refFields)
		if !ok {
			return false
		}
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			traceID, traceAt, i = d.b[f.vs:f.ve], f.start, f.ve
		case f.num == 2 && f.typ == protowire.BytesType:
			spanID, spanAt, i = d.b[f.vs:f.ve], f.start, f.ve
		case f.num == 3 && f.typ == protowire.VarintType:
			var v uint64
			if v, i, ok = d.varint(f, h.ve, refFields); !ok {
				return false
			}
			refType = int32(v)
		default:
			if i, ok = d.skip(f, h.ve, refFields); !ok {
				return false
			}
		}
	}
	var err error
	if r.TraceID, err = refTraceID(traceID); err != nil {
		return d.fail(refFields, 1, traceAt, "%v", err)
	}
	if r.SpanID, err = refSpanID(spanID); err != nil {
		return d.fail(refFields, 2, spanAt, "%v", err)
	}
	if refType != 0 && refType != 1 {
		return d.fail(refFields, 3, h.start, "unknown ref_type %d", refType)
	}
	r.Type = model.RefType(refType)
	return true
}

// keyValue decodes the KeyValue in [vs, ve) (its field header at start)
// into kv. The loop handles the usual encoding (one-byte tags, lengths and
// small varints) inline and leaves anything else to the general path.
func (d *pbDecoder) keyValue(vs, ve, start int, kv *model.KeyValue) bool {
	var vtype int32
	var vstr string
	var vbool bool
	var vint int64
	var vfloat uint64
	var vbin string
	b := d.b
	// A key-value whose bytes are all ASCII (the usual string tag) has
	// valid strings: one check instead of one per string.
	ascii := isASCII(b[vs:ve])
	for i := vs; i < ve; {
		if i+1 < ve {
			switch c, l := b[i], int(b[i+1]); {
			case (c == 0x0a || c == 0x1a) && l < 0x80 && l <= ve-i-2: // key, v_str
				s0, s1 := i+2, i+2+l
				if !ascii && !validUTF8(b[s0:s1]) {
					return d.fail(kvFields, protowire.Number(c>>3), i, "invalid UTF-8")
				}
				if c == 0x0a {
					kv.Key = d.str[s0:s1]
				} else {
					vstr = d.str[s0:s1]
				}
				i = s1
				continue
			case (c == 0x10 || c == 0x20 || c == 0x28) && l < 0x80: // v_type, v_bool, v_int64
				switch c {
				case 0x10:
					vtype = int32(l)
				case 0x20:
					vbool = l != 0
				default:
					vint = int64(l)
				}
				i += 2
				continue
			}
		}
		var f fieldHdr
		ok := d.hdr(&f, i, ve, kvFields)
		if !ok {
			return false
		}
		switch {
		case f.typ == protowire.BytesType && (f.num == 1 || f.num == 3):
			s, ok := d.text(f, kvFields)
			if !ok {
				return false
			}
			if f.num == 1 {
				kv.Key = s
			} else {
				vstr = s
			}
			i = f.ve
		case f.typ == protowire.BytesType && f.num == 7:
			vbin, i = d.str[f.vs:f.ve], f.ve
		case f.typ == protowire.VarintType && (f.num == 2 || f.num == 4 || f.num == 5):
			var v uint64
			if v, i, ok = d.varint(f, ve, kvFields); !ok {
				return false
			}
			switch f.num {
			case 2:
				vtype = int32(v)
			case 4:
				vbool = v != 0
			case 5:
				vint = int64(v)
			}
		case f.typ == protowire.Fixed64Type && f.num == 6:
			v, m := protowire.ConsumeFixed64(b[f.vs:ve])
			if m < 0 {
				return d.fail(kvFields, 6, f.start, "%s", protoErrMsg(m))
			}
			vfloat, i = v, f.vs+m
		default:
			if i, ok = d.skip(f, ve, kvFields); !ok {
				return false
			}
		}
	}
	if vtype < int32(model.StringType) || vtype > int32(model.BinaryType) {
		// model.ValueType is narrower than the enum: check before converting.
		return d.fail(kvFields, 2, start, "key %q: unknown v_type %d", kv.Key, vtype)
	}
	switch model.ValueType(vtype) {
	case model.StringType:
		kv.Type, kv.Str = model.StringType, vstr
	case model.BoolType:
		kv.Type = model.BoolType
		if vbool {
			kv.Num = 1
		}
	case model.Int64Type:
		kv.Type, kv.Num = model.Int64Type, vint
	case model.Float64Type:
		kv.Type, kv.Num = model.Float64Type, int64(vfloat)
	case model.BinaryType:
		kv.Type, kv.Str = model.BinaryType, vbin
	default:
		return d.fail(kvFields, 2, start, "key %q: unknown v_type %d", kv.Key, vtype)
	}
	return true
}

// isASCII reports whether b is all ASCII, eight bytes at a time.
func isASCII(b []byte) bool {
	var acc uint64
	for len(b) >= 8 {
		acc |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		acc |= uint64(c)
	}
	return acc&0x8080808080808080 == 0
}

// validUTF8 is utf8.Valid with a fast path for ASCII text, eight bytes at
// a time.
func validUTF8(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return utf8.Valid(b)
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

func (d *pbDecoder) log(h fieldHdr, sp *model.Span) bool {
	var ts pbTime
	d.closeRun() // each log's fields are a run of their own
	for i := h.vs; i < h.ve; {
		var f fieldHdr
		ok := d.hdr(&f, i, h.ve, logFields)
		if !ok {
			return false
		}
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			if !d.time(f.vs, f.ve, &ts) {
				return d.wrap(logFields, 1)
			}
			i = f.ve
		case f.num == 2 && f.typ == protowire.BytesType:
			if !d.keyValue(f.vs, f.ve, f.start, d.newKV(logList)) {
				return d.wrap(logFields, 2)
			}
			i = f.ve
		default:
			if i, ok = d.skip(f, h.ve, logFields); !ok {
				return false
			}
		}
	}
	n, ok := timestampNanos(ts.sec, ts.nanos)
	if !ok {
		return d.fail(logFields, 1, h.start, "timestamp %ds %dns out of range", ts.sec, ts.nanos)
	}
	d.closeRun()
	l := model.Log{Timestamp: model.Timestamp(n), Fields: d.logFields}
	d.logFields = nil
	sp.Logs = append(sp.Logs, l)
	return true
}

// process reads a Process (a repeated process field merges into the
// earlier one, as protobuf does).
func (d *pbDecoder) process(h fieldHdr, proc *model.Process) bool {
	for i := h.vs; i < h.ve; {
		var f fieldHdr
		ok := d.hdr(&f, i, h.ve, processFields)
		if !ok {
			return false
		}
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			if proc.ServiceName, ok = d.text(f, processFields); !ok {
				return false
			}
			i = f.ve
		case f.num == 2 && f.typ == protowire.BytesType:
			if !d.keyValue(f.vs, f.ve, f.start, d.newKV(processList)) {
				return d.wrap(processFields, 2)
			}
			i = f.ve
		default:
			if i, ok = d.skip(f, h.ve, processFields); !ok {
				return false
			}
		}
	}
	return true
}

// ---- shared conversion rules (also used by the reference conversion) ----

// traceIDFromBytes reads a span's own trace ID: 16 bytes (what Jaeger
// writes) or 8, and not zero.
func traceIDFromBytes(b []byte) (model.TraceID, error) {
	if len(b) == 0 {
		return model.TraceID{}, errors.New("missing trace id")
	}
	id, err := model.TraceIDFromBytes(b)
	if err != nil {
		return id, err
	}
	if id.IsZero() {
		return id, errors.New("trace id is zero")
	}
	return id, nil
}

func spanIDFromBytes(b []byte) (model.SpanID, error) {
	if len(b) == 0 {
		return 0, errors.New("missing span id")
	}
	id, err := model.SpanIDFromBytes(b)
	if err != nil {
		return 0, err
	}
	if id == 0 {
		return 0, errors.New("span id is zero")
	}
	return id, nil
}

// refTraceID and refSpanID read a reference's IDs: they must have the right
// size; zero values are kept (they point nowhere, which the trace graph
// reports).
func refTraceID(b []byte) (model.TraceID, error) { return model.TraceIDFromBytes(b) }
func refSpanID(b []byte) (model.SpanID, error)   { return model.SpanIDFromBytes(b) }

// timestampNanos converts a protobuf Timestamp to Unix nanoseconds. It
// fails when nanos is outside [0, 1e9) or the time does not fit in int64
// nanoseconds (years 1678 to 2262).
func timestampNanos(sec int64, nanos int32) (int64, bool) {
	if nanos < 0 || nanos >= 1e9 {
		return 0, false
	}
	const maxSec int64 = math.MaxInt64 / 1000000000 // 9223372036
	if sec < -maxSec || sec > maxSec || (sec == maxSec && int64(nanos) > math.MaxInt64%1000000000) {
		return 0, false
	}
	return sec*1e9 + int64(nanos), true
}

// durationNanos converts a protobuf Duration to nanoseconds: nanos within
// (-1e9, 1e9) with the sign of seconds, and the total within int64.
func durationNanos(sec int64, nanos int32) (int64, bool) {
	if nanos <= -1e9 || nanos >= 1e9 || (sec > 0 && nanos < 0) || (sec < 0 && nanos > 0) {
		return 0, false
	}
	const maxSec int64 = math.MaxInt64 / 1000000000
	if sec < -maxSec || sec > maxSec ||
		(sec == maxSec && int64(nanos) > math.MaxInt64%1000000000) || (sec == -maxSec && int64(nanos) < -(math.MaxInt64%1000000000)) {
		return 0, false
	}
	return sec*1e9 + int64(nanos), true
}

// splitNanos is the inverse of timestampNanos.
func splitNanos(ns int64) (int64, int32) {
	sec, n := ns/1e9, ns%1e9
	if n < 0 {
		sec--
		n += 1e9
	}
	return sec, int32(n)
}

// normalizeSpan makes empty slices nil, so spans compare equal however they
// were decoded.
func normalizeSpan(sp *model.Span) {
	if len(sp.Tags) == 0 {
		sp.Tags = nil
	}
	if len(sp.Process.Tags) == 0 {
		sp.Process.Tags = nil
	}
	if len(sp.References) == 0 {
		sp.References = nil
	}
	if len(sp.Logs) == 0 {
		sp.Logs = nil
	}
	if len(sp.Warnings) == 0 {
		sp.Warnings = nil
	}
}
