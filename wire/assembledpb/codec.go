// Package assembledpb is the wire form of model.AssembledTrace: the protobuf
// message tracepipe.v1.AssembledTrace defined in
// proto/tracepipe/v1/assembled.proto, which the ingester publishes and the
// aggregator and storage read.
//
// The generated types (assembled.pb.go) are the schema's reference and are what
// other languages and tools use. The hand-written Encode/Decode and
// AppendSpan/DecodeSpan below produce and read the same bytes without
// intermediate messages, because they sit on the ingester's hot path; tests
// check them against the generated code.
//
// Decode never panics on bad bytes: it returns an error saying which field is
// wrong (see FuzzDecode).
package assembledpb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracepipe/tracepipe/model"
)

// Field numbers (see assembled.proto).
const (
	fTraceID      = 1
	fVersion      = 2
	fCompletion   = 3
	fTruncated    = 4
	fDroppedSpans = 5
	fFirstSeen    = 6
	fEmittedAt    = 7
	fSpans        = 8
	fAnalysis     = 9
)

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("malformed assembled trace")

// Encode appends the protobuf encoding of t to dst and returns the extended
// slice. t.Trace.Spans and t.Analysis.Spans are written as they are (they
// should be aligned, as dag.Analyze leaves them).
func Encode(dst []byte, t *model.AssembledTrace) []byte {
	id := t.Trace.TraceID.Bytes()
	dst = appendTag(dst, fTraceID, protowire.BytesType)
	dst = appendBytes(dst, id[:])
	dst = appendUint(dst, fVersion, uint64(t.Version))
	dst = appendUint(dst, fCompletion, uint64(t.Completion))
	if t.Truncated {
		dst = appendUint(dst, fTruncated, 1)
	}
	dst = appendUint(dst, fDroppedSpans, uint64(t.DroppedSpans))
	if !t.FirstSeen.IsZero() {
		dst = appendInt(dst, fFirstSeen, t.FirstSeen.UnixNano())
	}
	if !t.EmittedAt.IsZero() {
		dst = appendInt(dst, fEmittedAt, t.EmittedAt.UnixNano())
	}
	var procs processRanges
	for _, s := range t.Trace.Spans {
		start := beginNested(&dst, fSpans)
		dst = appendSpan(dst, s, &procs)
		dst = endNested(dst, start)
	}
	start := beginNested(&dst, fAnalysis)
	dst = appendAnalysis(dst, &t.Analysis)
	return endNested(dst, start)
}

// Decode reads one encoded AssembledTrace. The result's Analysis.TraceID is
// the trace's ID.
func Decode(b []byte) (*model.AssembledTrace, error) {
	t := &model.AssembledTrace{}
	var sawID bool
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, buf []byte) error {
		switch num {
		case fTraceID:
			id, err := traceID(typ, buf)
			if err != nil {
				return err
			}
			t.Trace.TraceID, sawID = id, true
		case fVersion:
			if typ != protowire.VarintType || v > math.MaxUint32 {
				return errField("version")
			}
			t.Version = uint32(v)
		case fCompletion:
			if typ != protowire.VarintType {
				return errField("completion")
			}
			t.Completion = model.Completion(int8(v))
		case fTruncated:
			if typ != protowire.VarintType {
				return errField("truncated")
			}
			t.Truncated = v != 0
		case fDroppedSpans:
			if typ != protowire.VarintType || v > math.MaxInt32 {
				return errField("dropped_spans")
			}
			t.DroppedSpans = int(v)
		case fFirstSeen:
			if typ != protowire.VarintType {
				return errField("first_seen_unix_nano")
			}
			if v != 0 { // proto3: 0 is "not set"
				t.FirstSeen = time.Unix(0, int64(v)).UTC()
			}
		case fEmittedAt:
			if typ != protowire.VarintType {
				return errField("emitted_at_unix_nano")
			}
			if v != 0 {
				t.EmittedAt = time.Unix(0, int64(v)).UTC()
			}
		case fSpans:
			if typ != protowire.BytesType {
				return errField("spans")
			}
			s, err := DecodeSpan(buf)
			if err != nil {
				return fmt.Errorf("span %d: %w", len(t.Trace.Spans), err)
			}
			t.Trace.Spans = append(t.Trace.Spans, s)
		case fAnalysis:
			if typ != protowire.BytesType {
				return errField("analysis")
			}
			if err := decodeAnalysis(buf, &t.Analysis); err != nil {
				return fmt.Errorf("analysis: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawID || t.Trace.TraceID.IsZero() {
		return nil, fmt.Errorf("%w: missing trace_id", ErrMalformed)
	}
	t.Analysis.TraceID = t.Trace.TraceID
	return t, nil
}

// Span field numbers.
const (
	sTraceID = 1 + iota
	sSpanID
	sOperation
	sReferences
	sFlags
	sStart
	sDuration
	sTags
	sLogs
	sProcess
	sKind
	sStatus
	sStatusMessage
	sWarnings
)

// AppendSpan appends the body of a tracepipe.v1.Span message for s (without
// its own tag and length) to dst.
func AppendSpan(dst []byte, s *model.Span) []byte {
	return appendSpan(dst, s, nil)
}

// processRanges remembers where the processes of a trace's spans were
// encoded, so that a span sharing an earlier span's Process (the same
// service name and tag array, as decoders give the spans of one process)
// copies its bytes instead of encoding it again. The bytes are copied
// into buf (dst is no place to keep them: endNested moves span bodies).
type processRanges struct {
	n    int
	ents [8]processRange
	used int
	buf  [1024]byte
}

type processRange struct {
	tags    *model.KeyValue
	nTags   int
	service string
	from    int // the process field (tag, length, body) is buf[from:to]
	to      int
}

// find returns the encoded process field of an earlier span with p's
// service name and tag array, or nil.
func (r *processRanges) find(p *model.Process) []byte {
	if r == nil || len(p.Tags) == 0 {
		return nil
	}
	tags := &p.Tags[0]
	for i := range min(r.n, len(r.ents)) {
		e := &r.ents[i]
		if e.tags == tags && e.nTags == len(p.Tags) && e.service == p.ServiceName {
			return r.buf[e.from:e.to]
		}
	}
	return nil
}

func (r *processRanges) add(p *model.Process, b []byte) {
	if r == nil || len(p.Tags) == 0 {
		return
	}
	if len(b) > len(r.buf)-r.used {
		if len(b) > len(r.buf)/4 {
			return
		}
		// Start the buffer afresh: forget every entry.
		r.n, r.used, r.ents = 0, 0, [len(r.ents)]processRange{}
	}
	copy(r.buf[r.used:], b)
	r.ents[r.n%len(r.ents)] = processRange{tags: &p.Tags[0], nTags: len(p.Tags), service: p.ServiceName, from: r.used, to: r.used + len(b)}
	r.used += len(b)
	r.n++
}

func appendSpan(dst []byte, s *model.Span, procs *processRanges) []byte {
	id := s.TraceID.Bytes()
	dst = appendTag(dst, sTraceID, protowire.BytesType)
	dst = appendBytes(dst, id[:])
	dst = appendFixed(dst, sSpanID, uint64(s.SpanID))
	dst = appendString(dst, sOperation, s.Operation)
	for _, r := range s.References {
		rid := r.TraceID.Bytes()
		body := 0
		if r.Type != 0 {
			body += 1 + protowire.SizeVarint(uint64(int64(r.Type)))
		}
		body += 1 + 1 + 16
		if r.SpanID != 0 {
			body += 1 + 8
		}
		dst = appendTag(dst, sReferences, protowire.BytesType)
		dst = appendVarint(dst, uint64(body))
		dst = appendUint(dst, 1, uint64(int64(r.Type)))
		dst = appendTag(dst, 2, protowire.BytesType)
		dst = appendBytes(dst, rid[:])
		dst = appendFixed(dst, 3, uint64(r.SpanID))
	}
	dst = appendUint(dst, sFlags, uint64(s.Flags))
	dst = appendInt(dst, sStart, int64(s.Start))
	dst = appendInt(dst, sDuration, int64(s.Duration))
	for i := range s.Tags {
		dst = appendKeyValue(dst, sTags, &s.Tags[i])
	}
	for i := range s.Logs {
		l := &s.Logs[i]
		start := beginNested(&dst, sLogs)
		dst = appendInt(dst, 1, int64(l.Timestamp))
		for j := range l.Fields {
			dst = appendKeyValue(dst, 2, &l.Fields[j])
		}
		dst = endNested(dst, start)
	}
	if s.Process.ServiceName != "" || len(s.Process.Tags) > 0 {
		if b := procs.find(&s.Process); b != nil {
			dst = append(dst, b...)
		} else {
			from := len(dst)
			start := beginNested(&dst, sProcess)
			dst = appendString(dst, 1, s.Process.ServiceName)
			for i := range s.Process.Tags {
				dst = appendKeyValue(dst, 2, &s.Process.Tags[i])
			}
			dst = endNested(dst, start)
			procs.add(&s.Process, dst[from:])
		}
	}
	dst = appendUint(dst, sKind, uint64(int64(s.Kind)))
	dst = appendUint(dst, sStatus, uint64(int64(s.Status)))
	dst = appendString(dst, sStatusMessage, s.StatusMessage)
	for _, w := range s.Warnings {
		dst = appendTag(dst, sWarnings, protowire.BytesType)
		dst = appendStr(dst, w)
	}
	return dst
}

// DecodeSpan reads the body of a tracepipe.v1.Span message.
func DecodeSpan(b []byte) (*model.Span, error) {
	s := &model.Span{}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, buf []byte) error {
		switch num {
		case sTraceID:
			id, err := traceID(typ, buf)
			if err != nil {
				return err
			}
			s.TraceID = id
		case sSpanID:
			if typ != protowire.Fixed64Type {
				return errField("span_id")
			}
			s.SpanID = model.SpanID(v)
		case sOperation:
			if typ != protowire.BytesType {
				return errField("operation_name")
			}
			s.Operation = string(buf)
		case sReferences:
			if typ != protowire.BytesType {
				return errField("references")
			}
			r, err := decodeRef(buf)
			if err != nil {
				return err
			}
			s.References = append(s.References, r)
		case sFlags:
			if typ != protowire.VarintType {
				return errField("flags")
			}
			s.Flags = uint32(v)
		case sStart:
			if typ != protowire.VarintType {
				return errField("start_unix_nano")
			}
			s.Start = model.Timestamp(int64(v))
		case sDuration:
			if typ != protowire.VarintType {
				return errField("duration_nanos")
			}
			s.Duration = time.Duration(int64(v))
		case sTags:
			if typ != protowire.BytesType {
				return errField("tags")
			}
			kv, err := decodeKeyValue(buf)
			if err != nil {
				return fmt.Errorf("tag: %w", err)
			}
			s.Tags = append(s.Tags, kv)
		case sLogs:
			if typ != protowire.BytesType {
				return errField("logs")
			}
			l, err := decodeLog(buf)
			if err != nil {
				return err
			}
			s.Logs = append(s.Logs, l)
		case sProcess:
			if typ != protowire.BytesType {
				return errField("process")
			}
			return decodeProcess(buf, &s.Process)
		case sKind:
			if typ != protowire.VarintType || v > uint64(model.KindConsumer) {
				return errField("kind")
			}
			s.Kind = model.SpanKind(v)
		case sStatus:
			if typ != protowire.VarintType || v > uint64(model.StatusError) {
				return errField("status")
			}
			s.Status = model.StatusCode(v)
		case sStatusMessage:
			if typ != protowire.BytesType {
				return errField("status_message")
			}
			s.StatusMessage = string(buf)
		case sWarnings:
			if typ != protowire.BytesType {
				return errField("warnings")
			}
			s.Warnings = append(s.Warnings, string(buf))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func decodeRef(b []byte) (model.Reference, error) {
	var r model.Reference
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, buf []byte) error {
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return errField("reference ref_type")
			}
			r.Type = model.RefType(int32(v))
		case 2:
			id, err := traceID(typ, buf)
			if err != nil {
				return fmt.Errorf("reference: %w", err)
			}
			r.TraceID = id
		case 3:
			if typ != protowire.Fixed64Type {
				return errField("reference span_id")
			}
			r.SpanID = model.SpanID(v)
		}
		return nil
	})
	return r, err
}

func decodeLog(b []byte) (model.Log, error) {
	var l model.Log
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, buf []byte) error {
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return errField("log timestamp")
			}
			l.Timestamp = model.Timestamp(int64(v))
		case 2:
			if typ != protowire.BytesType {
				return errField("log fields")
			}
			kv, err := decodeKeyValue(buf)
			if err != nil {
				return fmt.Errorf("log field: %w", err)
			}
			l.Fields = append(l.Fields, kv)
		}
		return nil
	})
	return l, err
}

func decodeProcess(b []byte, p *model.Process) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, buf []byte) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return errField("service_name")
			}
			p.ServiceName = string(buf)
		case 2:
			if typ != protowire.BytesType {
				return errField("process tags")
			}
			kv, err := decodeKeyValue(buf)
			if err != nil {
				return fmt.Errorf("process tag: %w", err)
			}
			p.Tags = append(p.Tags, kv)
		}
		return nil
	})
}

// appendKeyValue writes a KeyValue sub-message; its size is computed first
// so no bytes move.
func appendKeyValue(dst []byte, num protowire.Number, kv *model.KeyValue) []byte {
	if kv.Type == model.StringType {
		// The usual tag: a short key and string, one-byte lengths.
		if k, v := len(kv.Key), len(kv.Str); k > 0 && v > 0 && 4+k+v < 0x80 {
			dst = append(dst, byte(num)<<3|byte(protowire.BytesType), byte(4+k+v), 1<<3|byte(protowire.BytesType), byte(k))
			dst = append(dst, kv.Key...)
			dst = append(dst, 3<<3|byte(protowire.BytesType), byte(v))
			return append(dst, kv.Str...)
		}
	}
	n := 0
	if kv.Key != "" {
		n += 1 + protowire.SizeBytes(len(kv.Key))
	}
	if kv.Type != 0 {
		n += 1 + protowire.SizeVarint(uint64(kv.Type))
	}
	switch kv.Type {
	case model.StringType:
		if kv.Str != "" {
			n += 1 + protowire.SizeBytes(len(kv.Str))
		}
	case model.BoolType:
		if kv.Num != 0 {
			n += 2
		}
	case model.Int64Type:
		if kv.Num != 0 {
			n += 1 + protowire.SizeVarint(uint64(kv.Num))
		}
	case model.Float64Type:
		if kv.Num != 0 {
			n += 1 + 8
		}
	case model.BinaryType:
		if kv.Str != "" {
			n += 1 + protowire.SizeBytes(len(kv.Str))
		}
	}
	dst = appendTag(dst, num, protowire.BytesType)
	dst = appendVarint(dst, uint64(n))
	dst = appendString(dst, 1, kv.Key)
	dst = appendUint(dst, 2, uint64(kv.Type))
	switch kv.Type {
	case model.StringType:
		dst = appendString(dst, 3, kv.Str)
	case model.BoolType:
		if kv.Num != 0 {
			dst = appendUint(dst, 4, 1)
		}
	case model.Int64Type:
		dst = appendUint(dst, 5, uint64(kv.Num))
	case model.Float64Type:
		dst = appendFixed(dst, 6, uint64(kv.Num))
	case model.BinaryType:
		if kv.Str != "" {
			dst = appendTag(dst, 7, protowire.BytesType)
			dst = appendStr(dst, kv.Str)
		}
	}
	return dst
}

func decodeKeyValue(b []byte) (model.KeyValue, error) {
	var kv model.KeyValue
	var boolV, intV, floatV uint64
	var str, bin string
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, buf []byte) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return errField("key")
			}
			kv.Key = string(buf)
		case 2:
			if typ != protowire.VarintType || v > uint64(model.BinaryType) {
				return errField("v_type")
			}
			kv.Type = model.ValueType(v)
		case 3:
			if typ != protowire.BytesType {
				return errField("v_str")
			}
			str = string(buf)
		case 4:
			if typ != protowire.VarintType {
				return errField("v_bool")
			}
			boolV = v
		case 5:
			if typ != protowire.VarintType {
				return errField("v_int64")
			}
			intV = v
		case 6:
			if typ != protowire.Fixed64Type {
				return errField("v_float64")
			}
			floatV = v
		case 7:
			if typ != protowire.BytesType {
				return errField("v_binary")
			}
			bin = string(buf)
		}
		return nil
	})
	switch kv.Type {
	case model.StringType:
		kv.Str = str
	case model.BoolType:
		if boolV != 0 {
			kv.Num = 1
		}
	case model.Int64Type:
		kv.Num = int64(intV)
	case model.Float64Type:
		kv.Num = int64(floatV)
	case model.BinaryType:
		kv.Str = bin
	}
	return kv, err
}

// Analysis field numbers.
const (
	aRoot = 1 + iota
	aStart
	aDuration
	aSpanCount
	aErrorCount
	aCritical
	aSpans
	aOperations
	aWarnings
)

func appendAnalysis(dst []byte, a *model.Analysis) []byte {
	dst = appendFixed(dst, aRoot, uint64(a.RootSpanID))
	dst = appendInt(dst, aStart, int64(a.Start))
	dst = appendInt(dst, aDuration, int64(a.Duration))
	dst = appendUint(dst, aSpanCount, uint64(a.SpanCount))
	dst = appendUint(dst, aErrorCount, uint64(a.ErrorCount))
	for _, c := range a.CriticalPath {
		start := beginNested(&dst, aCritical)
		dst = appendFixed(dst, 1, uint64(c.SpanID))
		dst = appendInt(dst, 2, int64(c.Start))
		dst = appendInt(dst, 3, int64(c.End))
		dst = endNested(dst, start)
	}
	for _, s := range a.Spans {
		start := beginNested(&dst, aSpans)
		dst = appendFixed(dst, 1, uint64(s.SpanID))
		dst = appendInt(dst, 2, int64(s.Self))
		dst = appendInt(dst, 3, int64(s.CriticalPath))
		dst = endNested(dst, start)
	}
	for _, o := range a.Operations {
		start := beginNested(&dst, aOperations)
		dst = appendString(dst, 1, o.Service)
		dst = appendString(dst, 2, o.Operation)
		dst = appendUint(dst, 3, uint64(o.Count))
		dst = appendUint(dst, 4, uint64(o.Errors))
		dst = appendInt(dst, 5, int64(o.Duration))
		dst = appendInt(dst, 6, int64(o.Self))
		dst = appendInt(dst, 7, int64(o.CriticalPath))
		dst = endNested(dst, start)
	}
	for _, w := range a.Warnings {
		start := beginNested(&dst, aWarnings)
		dst = appendString(dst, 1, string(w.Kind))
		dst = appendFixed(dst, 2, uint64(w.SpanID))
		dst = appendString(dst, 3, w.Message)
		dst = endNested(dst, start)
	}
	return dst
}

func decodeAnalysis(b []byte, a *model.Analysis) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, buf []byte) error {
		switch num {
		case aRoot:
			if typ != protowire.Fixed64Type {
				return errField("root_span_id")
			}
			a.RootSpanID = model.SpanID(v)
		case aStart:
			if typ != protowire.VarintType {
				return errField("start_unix_nano")
			}
			a.Start = model.Timestamp(int64(v))
		case aDuration:
			if typ != protowire.VarintType {
				return errField("duration_nanos")
			}
			a.Duration = time.Duration(int64(v))
		case aSpanCount:
			if typ != protowire.VarintType || v > math.MaxInt32 {
				return errField("span_count")
			}
			a.SpanCount = int(v)
		case aErrorCount:
			if typ != protowire.VarintType || v > math.MaxInt32 {
				return errField("error_count")
			}
			a.ErrorCount = int(v)
		case aCritical:
			if typ != protowire.BytesType {
				return errField("critical_path")
			}
			var c model.CriticalSection
			err := eachField(buf, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
				switch {
				case num == 1 && typ == protowire.Fixed64Type:
					c.SpanID = model.SpanID(v)
				case num == 2 && typ == protowire.VarintType:
					c.Start = model.Timestamp(int64(v))
				case num == 3 && typ == protowire.VarintType:
					c.End = model.Timestamp(int64(v))
				case num >= 1 && num <= 3:
					return errField("critical section")
				}
				return nil
			})
			if err != nil {
				return err
			}
			a.CriticalPath = append(a.CriticalPath, c)
		case aSpans:
			if typ != protowire.BytesType {
				return errField("spans")
			}
			var s model.SpanStats
			err := eachField(buf, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
				switch {
				case num == 1 && typ == protowire.Fixed64Type:
					s.SpanID = model.SpanID(v)
				case num == 2 && typ == protowire.VarintType:
					s.Self = time.Duration(int64(v))
				case num == 3 && typ == protowire.VarintType:
					s.CriticalPath = time.Duration(int64(v))
				case num >= 1 && num <= 3:
					return errField("span stats")
				}
				return nil
			})
			if err != nil {
				return err
			}
			a.Spans = append(a.Spans, s)
		case aOperations:
			if typ != protowire.BytesType {
				return errField("operations")
			}
			var o model.OperationSummary
			err := eachField(buf, func(num protowire.Number, typ protowire.Type, v uint64, sb []byte) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					o.Service = string(sb)
				case num == 2 && typ == protowire.BytesType:
					o.Operation = string(sb)
				case num == 3 && typ == protowire.VarintType && v <= math.MaxInt32:
					o.Count = int(v)
				case num == 4 && typ == protowire.VarintType && v <= math.MaxInt32:
					o.Errors = int(v)
				case num == 5 && typ == protowire.VarintType:
					o.Duration = time.Duration(int64(v))
				case num == 6 && typ == protowire.VarintType:
					o.Self = time.Duration(int64(v))
				case num == 7 && typ == protowire.VarintType:
					o.CriticalPath = time.Duration(int64(v))
				case num >= 1 && num <= 7:
					return errField("operation summary")
				}
				return nil
			})
			if err != nil {
				return err
			}
			a.Operations = append(a.Operations, o)
		case aWarnings:
			if typ != protowire.BytesType {
				return errField("warnings")
			}
			var w model.Warning
			err := eachField(buf, func(num protowire.Number, typ protowire.Type, v uint64, sb []byte) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					w.Kind = model.WarningKind(sb)
				case num == 2 && typ == protowire.Fixed64Type:
					w.SpanID = model.SpanID(v)
				case num == 3 && typ == protowire.BytesType:
					w.Message = string(sb)
				case num >= 1 && num <= 3:
					return errField("warning")
				}
				return nil
			})
			if err != nil {
				return err
			}
			a.Warnings = append(a.Warnings, w)
		}
		return nil
	})
}

// eachField calls fn for every field of message b: v holds varint and fixed
// values, buf the payload of length-delimited ones. Groups are rejected.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, buf []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: bad field tag: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		var buf []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var v32 uint32
			v32, n = protowire.ConsumeFixed32(b)
			v = uint64(v32)
		case protowire.BytesType:
			buf, n = protowire.ConsumeBytes(b)
		default:
			return fmt.Errorf("%w: field %d has unsupported wire type %d", ErrMalformed, num, typ)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, buf); err != nil {
			return err
		}
	}
	return nil
}

func errField(name string) error {
	return fmt.Errorf("%w: field %s has the wrong type or an out-of-range value", ErrMalformed, name)
}

func traceID(typ protowire.Type, b []byte) (model.TraceID, error) {
	if typ != protowire.BytesType {
		return model.TraceID{}, errField("trace_id")
	}
	id, err := model.TraceIDFromBytes(b)
	if err != nil {
		return model.TraceID{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return id, nil
}

// The field helpers below write one-byte tags: every field number of these
// messages is below 16 (appendTag). They write the usual one-byte value or
// length without calls.

func appendUint(dst []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return dst
	}
	if v < 0x80 {
		return append(dst, byte(num)<<3|byte(protowire.VarintType), byte(v))
	}
	return protowire.AppendVarint(appendTag(dst, num, protowire.VarintType), v)
}

func appendInt(dst []byte, num protowire.Number, v int64) []byte {
	return appendUint(dst, num, uint64(v))
}

func appendFixed(dst []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return dst
	}
	return binary.LittleEndian.AppendUint64(appendTag(dst, num, protowire.Fixed64Type), v)
}

func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	if len(s) < 0x80 {
		dst = append(dst, byte(num)<<3|byte(protowire.BytesType), byte(len(s)))
		return append(dst, s...)
	}
	return protowire.AppendString(appendTag(dst, num, protowire.BytesType), s)
}

// appendTag appends the tag of field num, which must be below 16 (a
// one-byte tag), as every field of these messages is.
func appendTag(dst []byte, num protowire.Number, typ protowire.Type) []byte {
	return append(dst, byte(num)<<3|byte(typ))
}

// appendVarint is protowire.AppendVarint with the one-byte case inline.
func appendVarint(dst []byte, v uint64) []byte {
	if v < 0x80 {
		return append(dst, byte(v))
	}
	return protowire.AppendVarint(dst, v)
}

// appendStr is protowire.AppendString with a one-byte length inline.
func appendStr(dst []byte, s string) []byte {
	return append(appendVarint(dst, uint64(len(s))), s...)
}

// appendBytes is protowire.AppendBytes with a one-byte length inline.
func appendBytes(dst []byte, b []byte) []byte {
	return append(appendVarint(dst, uint64(len(b))), b...)
}

// beginNested writes num's tag and reserves one length byte; endNested fills
// the length in, moving the body when the length needs more than one byte.
func beginNested(dst *[]byte, num protowire.Number) int {
	*dst = append(*dst, byte(num)<<3|byte(protowire.BytesType), 0)
	return len(*dst)
}

func endNested(dst []byte, start int) []byte {
	n := len(dst) - start
	if n < 0x80 {
		dst[start-1] = byte(n)
		return dst
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	for i := 0; i < extra; i++ {
		dst = append(dst, 0)
	}
	copy(dst[start+extra:], dst[start:start+n])
	protowire.AppendVarint(dst[start-1:start-1], uint64(n))
	return dst
}
