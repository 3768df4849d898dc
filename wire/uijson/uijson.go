// Package uijson reads and writes the trace document of Jaeger's query
// service and UI (GET /api/traces, /api/traces/{id}, and the UI's "Download
// JSON"):
//
//	{"data":[{"traceID":"…","spans":[…],"processes":{"p1":{…}},"warnings":null}],
//	 "total":0,"limit":0,"offset":0,"errors":null}
//
// A span is {"traceID","spanID","flags","operationName","references":
// [{"refType":"CHILD_OF"|"FOLLOWS_FROM","traceID","spanID"}],"startTime",
// "duration","tags","logs":[{"timestamp","fields"}],"processID","warnings"}
// with IDs in hex, startTime, duration and log timestamps in microseconds
// since the epoch, and key-values {"key","type","value"} whose type is
// string, bool, int64, float64 or binary (binary values in base64). The span's
// process is the entry of "processes" its processID names.
//
// Read also accepts, because they cost nothing: "data" holding one trace
// object instead of an array; a bare trace object or a bare array of
// traces; a span with an embedded "process" object instead of a processID;
// the old "parentSpanID" member (a CHILD_OF reference when the span has
// none); key-values without "type" (taken from the JSON value); 64-bit
// integers and floats given as strings, and "NaN"/"Infinity".
//
// Kind and status follow Jaeger's tag conventions, as in package wire: Read
// sets Kind, Status and StatusMessage from the span.kind, error,
// otel.status_code and otel.status_description tags, and Write adds those
// tags only where the span's fields need them and its tags lack them.
//
// Times in this format have microsecond precision: Write truncates
// nanoseconds.
package uijson

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegertags"
	"github.com/tracepipe/tracepipe/wire/internal/jsonscan"
	"github.com/tracepipe/tracepipe/wire/internal/procset"
)

// ErrMalformed is wrapped by every error about the document's content.
var ErrMalformed = errors.New("malformed trace document")

// Error says what is wrong in a document and where.
type Error struct {
	Field  string // JSON path of the member at fault, such as data[0].spans[3].spanID
	Offset int    // byte offset in the document
	Msg    string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("read jaeger ui json: %s at byte %d: %s", e.Field, e.Offset, e.Msg)
	}
	return fmt.Sprintf("read jaeger ui json: at byte %d: %s", e.Offset, e.Msg)
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *Error) Unwrap() error { return ErrMalformed }

// Read reads a whole document from r and returns its traces in document
// order, each with its spans in document order. Errors reading r are
// returned as they are; errors in the document wrap ErrMalformed.
func Read(r io.Reader) ([]model.Trace, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read jaeger ui json: %w", err)
	}
	return Parse(b)
}

// Parse is Read for a document in memory. A leading UTF-8 byte order mark
// (as some editors save) is skipped.
func Parse(b []byte) ([]model.Trace, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	s := jsonscan.New(b)
	var traces []model.Trace
	switch s.Peek() {
	case '[':
		traces = readTraceArray(s, traces)
	case '{':
		traces = readTop(s, traces)
	default:
		s.ObjectStart() // records the error
	}
	s.End()
	if e := s.Error(); e != nil {
		return nil, &Error{Field: e.Field, Offset: e.Offset, Msg: e.Msg}
	}
	return traces, nil
}

func readTraceArray(s *jsonscan.Scanner, traces []model.Trace) []model.Trace {
	if !s.ArrayStart() {
		return traces
	}
	for i := 0; s.NextElem(); i++ {
		var t model.Trace
		readTrace(s, &t)
		if s.Failed() {
			s.WrapIndex(i)
			return traces
		}
		traces = append(traces, t)
	}
	return traces
}

// readTop reads the top-level object: the {"data":…} envelope or a bare
// trace.
func readTop(s *jsonscan.Scanner, traces []model.Trace) []model.Trace {
	// Decide by the members: an envelope has "data"; a trace has "spans".
	probe := jsonscan.New(s.Rest())
	envelope := false
	if probe.ObjectStart() {
		for probe.NextKey() {
			k := string(probe.Key())
			if k == "data" {
				envelope = true
				break
			}
			if k == "spans" || k == "traceID" || k == "processes" {
				break
			}
			probe.Skip()
		}
	}
	if !envelope {
		var t model.Trace
		readTrace(s, &t)
		return append(traces, t)
	}
	if !s.ObjectStart() {
		return traces
	}
	for s.NextKey() {
		if string(s.Key()) != "data" {
			s.Skip()
			continue
		}
		switch s.Peek() {
		case 'n':
			s.Null()
		case '{':
			var t model.Trace
			readTrace(s, &t)
			traces = append(traces, t)
		default:
			traces = readTraceArray(s, traces)
		}
		if s.Failed() {
			s.WrapField("data")
			return traces
		}
	}
	return traces
}

type pendingSpan struct {
	span      *model.Span
	processID string
	hasProc   bool
	at        int
	index     int
}

func readTrace(s *jsonscan.Scanner, t *model.Trace) {
	if !s.ObjectStart() {
		return
	}
	objStart := s.Pos() - 1
	haveID := false
	var pending []pendingSpan
	procs := map[string]model.Process{}
	for s.NextKey() {
		if s.Null() {
			continue
		}
		var field string
		switch string(s.Key()) {
		case "traceID", "traceId":
			field = "traceID"
			off := s.Pos()
			id, err := model.ParseTraceID(string(s.StringBytes()))
			if err != nil && !s.Failed() {
				s.Fail(off, "", "%v", err)
			}
			t.TraceID, haveID = id, true
		case "spans":
			field = "spans"
			if s.ArrayStart() {
				for i := 0; s.NextElem(); i++ {
					p := pendingSpan{span: new(model.Span), at: s.Pos(), index: i}
					readSpan(s, &p)
					if s.Failed() {
						s.WrapIndex(i)
						break
					}
					pending = append(pending, p)
				}
			}
		case "processes":
			field = "processes"
			if s.ObjectStart() {
				for s.NextKey() {
					id := string(s.Key())
					var p model.Process
					readProcess(s, &p)
					if s.Failed() {
						s.WrapField(id)
						break
					}
					procs[id] = p
				}
			}
		default:
			s.Skip()
		}
		if s.Failed() {
			s.WrapField(field)
			return
		}
	}
	if s.Failed() {
		return
	}
	t.Spans = make([]*model.Span, 0, len(pending))
	for _, p := range pending {
		if !p.hasProc {
			proc, ok := procs[p.processID]
			if !ok {
				s.Fail(p.at, "spans["+strconv.Itoa(p.index)+"].processID", "process %q is not in processes", p.processID)
				return
			}
			p.span.Process = proc
		}
		t.Spans = append(t.Spans, p.span)
	}
	if !haveID {
		if len(t.Spans) == 0 {
			s.Fail(objStart, "traceID", "missing trace id and no spans")
			return
		}
		t.TraceID = t.Spans[0].TraceID
	}
}

func readProcess(s *jsonscan.Scanner, p *model.Process) {
	if !s.ObjectStart() {
		return
	}
	for s.NextKey() {
		if s.Null() {
			continue
		}
		switch string(s.Key()) {
		case "serviceName":
			p.ServiceName = s.String()
			if s.Failed() {
				s.WrapField("serviceName")
			}
		case "tags":
			p.Tags = readKVs(s, p.Tags)
			if s.Failed() {
				s.WrapField("tags")
			}
		default:
			s.Skip()
		}
	}
	if len(p.Tags) == 0 {
		p.Tags = nil
	}
}

func readSpan(s *jsonscan.Scanner, p *pendingSpan) {
	sp := p.span
	if !s.ObjectStart() {
		return
	}
	objStart := s.Pos() - 1
	haveTrace, haveSpan := false, false
	var parent model.SpanID
	for s.NextKey() {
		if s.Null() {
			continue
		}
		var field string
		off := s.Pos()
		switch string(s.Key()) {
		case "traceID", "traceId":
			field = "traceID"
			sp.TraceID = readTraceID(s, off)
			haveTrace = true
		case "spanID", "spanId":
			field = "spanID"
			sp.SpanID = readSpanID(s, off)
			haveSpan = true
		case "parentSpanID":
			field = "parentSpanID"
			if t := s.StringBytes(); len(t) > 0 && !s.Failed() {
				id, err := model.ParseSpanID(string(t))
				if err != nil {
					s.Fail(off, "", "%v", err)
				}
				parent = id
			}
		case "flags":
			field = "flags"
			v := s.Uint64()
			if v > math.MaxUint32 && !s.Failed() {
				s.Fail(off, "", "flags %d out of range", v)
			}
			sp.Flags = uint32(v)
		case "operationName":
			field = "operationName"
			sp.Operation = s.String()
		case "references":
			field = "references"
			if s.ArrayStart() {
				for i := 0; s.NextElem(); i++ {
					var r model.Reference
					readRef(s, &r)
					if s.Failed() {
						s.WrapIndex(i)
						break
					}
					sp.References = append(sp.References, r)
				}
			}
		case "startTime":
			field = "startTime"
			sp.Start = model.Timestamp(readMicros(s, off))
		case "duration":
			field = "duration"
			sp.Duration = time.Duration(readMicros(s, off))
		case "tags":
			field = "tags"
			sp.Tags = readKVs(s, sp.Tags)
		case "logs":
			field = "logs"
			if s.ArrayStart() {
				for i := 0; s.NextElem(); i++ {
					var l model.Log
					readLog(s, &l)
					if s.Failed() {
						s.WrapIndex(i)
						break
					}
					sp.Logs = append(sp.Logs, l)
				}
			}
		case "processID":
			field = "processID"
			p.processID = s.String()
		case "process":
			field = "process"
			readProcess(s, &sp.Process)
			p.hasProc = true
		case "warnings":
			field = "warnings"
			if s.ArrayStart() {
				for s.NextElem() {
					sp.Warnings = append(sp.Warnings, s.String())
				}
			}
		default:
			s.Skip()
		}
		if s.Failed() {
			s.WrapField(field)
			return
		}
	}
	if s.Failed() {
		return
	}
	if !haveTrace {
		s.Fail(objStart, "traceID", "missing trace id")
		return
	}
	if !haveSpan {
		s.Fail(objStart, "spanID", "missing span id")
		return
	}
	if parent != 0 && len(sp.References) == 0 {
		sp.References = []model.Reference{{Type: model.ChildOf, TraceID: sp.TraceID, SpanID: parent}}
	}
	normalize(sp)
	jaegertags.Apply(sp)
}

func readTraceID(s *jsonscan.Scanner, off int) model.TraceID {
	t := s.StringBytes()
	if s.Failed() {
		return model.TraceID{}
	}
	id, err := model.ParseTraceID(string(t))
	if err == nil && id.IsZero() {
		err = errors.New("trace id is zero")
	}
	if err != nil {
		s.Fail(off, "", "%v", err)
	}
	return id
}

func readSpanID(s *jsonscan.Scanner, off int) model.SpanID {
	t := s.StringBytes()
	if s.Failed() {
		return 0
	}
	id, err := model.ParseSpanID(string(t))
	if err == nil && id == 0 {
		err = errors.New("span id is zero")
	}
	if err != nil {
		s.Fail(off, "", "%v", err)
	}
	return id
}

// readMicros reads microseconds and returns nanoseconds, failing when they
// do not fit int64.
func readMicros(s *jsonscan.Scanner, off int) int64 {
	us := s.Int64()
	if s.Failed() {
		return 0
	}
	if us > math.MaxInt64/1000 || us < math.MinInt64/1000 {
		s.Fail(off, "", "%d microseconds out of range", us)
		return 0
	}
	return us * 1000
}

func readRef(s *jsonscan.Scanner, r *model.Reference) {
	if !s.ObjectStart() {
		return
	}
	objStart := s.Pos() - 1
	haveTrace, haveSpan := false, false
	for s.NextKey() {
		if s.Null() {
			continue
		}
		var field string
		off := s.Pos()
		switch string(s.Key()) {
		case "refType":
			field = "refType"
			switch t := string(s.StringBytes()); t {
			case "CHILD_OF", "child_of", "child-of":
				r.Type = model.ChildOf
			case "FOLLOWS_FROM", "follows_from", "follows-from":
				r.Type = model.FollowsFrom
			default:
				if !s.Failed() {
					s.Fail(off, "", "unknown reference type %q", t)
				}
			}
		case "traceID", "traceId":
			field = "traceID"
			t := s.StringBytes()
			id, err := model.ParseTraceID(string(t))
			if err != nil && !s.Failed() {
				s.Fail(off, "", "%v", err)
			}
			r.TraceID, haveTrace = id, true
		case "spanID", "spanId":
			field = "spanID"
			t := s.StringBytes()
			id, err := model.ParseSpanID(string(t))
			if err != nil && !s.Failed() {
				s.Fail(off, "", "%v", err)
			}
			r.SpanID, haveSpan = id, true
		default:
			s.Skip()
		}
		if s.Failed() {
			s.WrapField(field)
			return
		}
	}
	if s.Failed() {
		return
	}
	if !haveTrace {
		s.Fail(objStart, "traceID", "missing trace id")
	} else if !haveSpan {
		s.Fail(objStart, "spanID", "missing span id")
	}
}

func readLog(s *jsonscan.Scanner, l *model.Log) {
	if !s.ObjectStart() {
		return
	}
	for s.NextKey() {
		if s.Null() {
			continue
		}
		off := s.Pos()
		switch string(s.Key()) {
		case "timestamp":
			l.Timestamp = model.Timestamp(readMicros(s, off))
			if s.Failed() {
				s.WrapField("timestamp")
			}
		case "fields":
			l.Fields = readKVs(s, l.Fields)
			if s.Failed() {
				s.WrapField("fields")
			}
		default:
			s.Skip()
		}
	}
	if len(l.Fields) == 0 {
		l.Fields = nil
	}
}

func readKVs(s *jsonscan.Scanner, dst model.KeyValues) model.KeyValues {
	if !s.ArrayStart() {
		return dst
	}
	for i := 0; s.NextElem(); i++ {
		var kv model.KeyValue
		readKV(s, &kv)
		if s.Failed() {
			s.WrapIndex(i)
			return dst
		}
		dst = append(dst, kv)
	}
	return dst
}

// readKV reads {"key","type","value"}. The value may come before the type,
// so it is read as raw JSON and converted at the end.
func readKV(s *jsonscan.Scanner, kv *model.KeyValue) {
	if !s.ObjectStart() {
		return
	}
	objStart := s.Pos() - 1
	typ := ""
	haveType := false
	var raw []byte
	rawAt := -1
	for s.NextKey() {
		switch string(s.Key()) {
		case "key":
			if !s.Null() {
				kv.Key = s.String()
			}
			if s.Failed() {
				s.WrapField("key")
				return
			}
		case "type":
			off := s.Pos()
			if !s.Null() {
				typ, haveType = s.String(), true
			}
			if s.Failed() {
				s.WrapField("type")
				return
			}
			switch typ {
			case "string", "bool", "int64", "float64", "binary":
			default:
				s.Fail(off, "type", "unknown type %q", typ)
				return
			}
		case "value":
			rawAt = s.Pos()
			s.Skip()
			raw = s.Consumed(rawAt)
			if s.Failed() {
				s.WrapField("value")
				return
			}
		default:
			s.Skip()
		}
	}
	if s.Failed() {
		return
	}
	if rawAt < 0 {
		if !haveType || typ == "string" {
			kv.Type = model.StringType
			return
		}
		s.Fail(objStart, "value", "missing value")
		return
	}
	v := jsonscan.New(raw)
	if !haveType {
		switch v.Peek() {
		case '"', 'n':
			typ = "string"
		case 't', 'f':
			typ = "bool"
		default:
			typ = "int64"
			if !isIntText(raw) {
				typ = "float64"
			}
		}
	}
	switch typ {
	case "string":
		kv.Type = model.StringType
		if !v.Null() {
			kv.Str = v.String()
		}
	case "bool":
		*kv = model.Bool(kv.Key, v.Bool())
	case "int64":
		*kv = model.Int64(kv.Key, v.Int64())
	case "float64":
		*kv = model.Float64(kv.Key, v.Float64())
	case "binary":
		kv.Type = model.BinaryType
		kv.Str = string(v.Base64())
	}
	v.End()
	if e := v.Error(); e != nil {
		s.Fail(rawAt+e.Offset, "value", "%s value: %s", typ, e.Msg)
	}
}

func isIntText(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func normalize(sp *model.Span) {
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

// Write writes traces as one document in the form Jaeger's /api/traces
// returns, followed by a newline. Processes are deduplicated per trace and
// named p1, p2, ... in order of first use. Times are truncated to
// microseconds. Write fails on a value it cannot represent (an unknown
// value or reference type) before writing anything.
func Write(w io.Writer, traces []model.Trace) error {
	b, err := Append(nil, traces)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Append appends Write's document to dst.
func Append(dst []byte, traces []model.Trace) ([]byte, error) {
	b := append(dst, `{"data":[`...)
	for i := range traces {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendTrace(b, &traces[i]); err != nil {
			return dst, err
		}
	}
	b = append(b, `],"total":0,"limit":0,"offset":0,"errors":null}`...)
	return append(b, '\n'), nil
}

func appendTrace(b []byte, t *model.Trace) ([]byte, error) {
	b = append(b, `{"traceID":"`...)
	b = t.TraceID.AppendHex(b)
	b = append(b, `","spans":[`...)
	procs := procset.New()
	for i, sp := range t.Spans {
		if i > 0 {
			b = append(b, ',')
		}
		pid, _ := procs.Add(&sp.Process)
		var err error
		if b, err = appendSpan(b, sp, pid+1); err != nil {
			return b, err
		}
	}
	b = append(b, `],"processes":{`...)
	for i := 0; i < procs.Len(); i++ {
		p := procs.Get(i)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `"p`...)
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, `":{"serviceName":`...)
		b = jsonscan.AppendString(b, p.ServiceName)
		b = append(b, `,"tags":`...)
		var err error
		if b, err = appendKVs(b, p.Tags, nil); err != nil {
			return b, err
		}
		b = append(b, '}')
	}
	return append(b, `},"warnings":null}`...), nil
}

func appendSpan(b []byte, sp *model.Span, pid int) ([]byte, error) {
	b = append(b, `{"traceID":"`...)
	b = sp.TraceID.AppendHex(b)
	b = append(b, `","spanID":"`...)
	b = appendSpanID(b, sp.SpanID)
	b = append(b, '"')
	if sp.Flags != 0 {
		b = append(b, `,"flags":`...)
		b = strconv.AppendUint(b, uint64(sp.Flags), 10)
	}
	b = append(b, `,"operationName":`...)
	b = jsonscan.AppendString(b, sp.Operation)
	b = append(b, `,"references":[`...)
	for i, r := range sp.References {
		if i > 0 {
			b = append(b, ',')
		}
		var rt string
		switch r.Type {
		case model.ChildOf:
			rt = "CHILD_OF"
		case model.FollowsFrom:
			rt = "FOLLOWS_FROM"
		default:
			return b, fmt.Errorf("write jaeger ui json: span %s: unknown reference type %d", sp.SpanID, r.Type)
		}
		b = append(b, `{"refType":"`...)
		b = append(b, rt...)
		b = append(b, `","traceID":"`...)
		b = r.TraceID.AppendHex(b)
		b = append(b, `","spanID":"`...)
		b = appendSpanID(b, r.SpanID)
		b = append(b, `"}`...)
	}
	b = append(b, `],"startTime":`...)
	b = strconv.AppendInt(b, sp.Start.Micros(), 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, sp.Duration.Microseconds(), 10)
	b = append(b, `,"tags":`...)
	var err error
	if b, err = appendKVs(b, sp.Tags, jaegertags.Extra(sp)); err != nil {
		return b, err
	}
	b = append(b, `,"logs":[`...)
	for i, l := range sp.Logs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"timestamp":`...)
		b = strconv.AppendInt(b, l.Timestamp.Micros(), 10)
		b = append(b, `,"fields":`...)
		if b, err = appendKVs(b, l.Fields, nil); err != nil {
			return b, err
		}
		b = append(b, '}')
	}
	b = append(b, `],"processID":"p`...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, `","warnings":`...)
	if len(sp.Warnings) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, w := range sp.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonscan.AppendString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func appendSpanID(b []byte, id model.SpanID) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[(uint64(id)>>uint(shift))&0xf])
	}
	return b
}

func appendKVs(b []byte, kvs, extra []model.KeyValue) ([]byte, error) {
	b = append(b, '[')
	n := 0
	for _, list := range [2][]model.KeyValue{kvs, extra} {
		for i := range list {
			kv := &list[i]
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = append(b, `{"key":`...)
			b = jsonscan.AppendString(b, kv.Key)
			b = append(b, `,"type":"`...)
			switch kv.Type {
			case model.StringType:
				b = append(b, `string","value":`...)
				b = jsonscan.AppendString(b, kv.Str)
			case model.BoolType:
				b = append(b, `bool","value":`...)
				b = strconv.AppendBool(b, kv.BoolValue())
			case model.Int64Type:
				b = append(b, `int64","value":`...)
				b = strconv.AppendInt(b, kv.Num, 10)
			case model.Float64Type:
				b = append(b, `float64","value":`...)
				b = jsonscan.AppendFloat(b, kv.Float64Value())
			case model.BinaryType:
				b = append(b, `binary","value":"`...)
				b = base64.StdEncoding.AppendEncode(b, []byte(kv.Str))
				b = append(b, '"')
			default:
				return b, fmt.Errorf("write jaeger ui json: key %q: unknown value type %d", kv.Key, kv.Type)
			}
			b = append(b, '}')
		}
	}
	return append(b, ']'), nil
}
