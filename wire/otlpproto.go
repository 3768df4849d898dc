package wire

import (
	"fmt"
	"math"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
)

// The direct OTLP decoder reads an ExportTraceServiceRequest straight into
// model spans. The parts that occur once per resource or scope (Resource,
// InstrumentationScope) and the rare ones (links, array and key-value-list
// attribute values, anything unusual in an attribute) go through the
// generated code and the reference conversion in otlp.go, so they follow
// protobuf's rules exactly; spans, their scalar attributes, events and
// status are decoded by hand. decodeOTLPProtoReference (proto.Unmarshal of
// the whole message, then otlpToModel) is the reference the differential
// fuzz test holds this decoder to.
//
// Per span the decoder allocates the span, one copy of the span's bytes
// (its strings are substrings of it), one block of key-values (tags and log
// fields), and the references and logs when present. The spans of a
// resource share its Process.

var (
	otlpRequestFields  = []string{1: "resource_spans"}
	otlpResourceFields = []string{1: "resource", 2: "scope_spans", 3: "schema_url"}
	otlpScopeFields    = []string{1: "scope", 2: "spans", 3: "schema_url"}
	otlpSpanFields     = []string{1: "trace_id", 2: "span_id", 3: "trace_state", 4: "parent_span_id", 5: "name", 6: "kind",
		7: "start_time_unix_nano", 8: "end_time_unix_nano", 9: "attributes", 10: "dropped_attributes_count", 11: "events",
		12: "dropped_events_count", 13: "links", 14: "dropped_links_count", 15: "status", 16: "flags"}
	otlpEventFields  = []string{1: "time_unix_nano", 2: "name", 3: "attributes", 4: "dropped_attributes_count"}
	otlpStatusFields = []string{2: "message", 3: "code"}
	otlpKVFields     = []string{1: "key", 2: "value", 3: "key_strindex"}
)

// decodeOTLPProtoReference is the reference decoder: the generated code
// and the conversion in otlp.go. TracesData has the same fields as
// ExportTraceServiceRequest (field 1, repeated ResourceSpans) and so reads
// the same bytes, without the gRPC dependencies of the collector package.
func decodeOTLPProtoReference(b []byte, dst []*model.Span) ([]*model.Span, error) {
	var req tracepb.TracesData
	if err := proto.Unmarshal(b, &req); err != nil {
		return dst, locateProtoError(b, req.ProtoReflect().Descriptor(), "otlp request", err)
	}
	return otlpToModel(req.GetResourceSpans(), dst, "otlp request")
}

// otlpDecoder reuses the field-reading helpers of the Jaeger decoder; its
// errors say "otlp request".
type otlpDecoder struct {
	pbDecoder
	ri, si, pi int // indexes of the resource, scope and span being decoded, for conversion errors
}

func (d *otlpDecoder) convErr(field string, err error) bool {
	if d.err == nil {
		d.whole = true
		d.err = &DecodeError{What: "otlp request", Offset: -1, Msg: err.Error(),
			Field: fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d]%s", d.ri, d.si, d.pi, field)}
	}
	return false
}

// generated decodes h's content into m with the generated code, merging
// into what m holds; on error it records where the bytes are wrong (the
// caller adds h's own field to the path).
func (d *otlpDecoder) generated(h fieldHdr, m proto.Message) bool {
	if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(d.b[h.vs:h.ve], m); err != nil {
		path, off, msg := walkProto(d.b[h.vs:h.ve], h.vs, m.ProtoReflect().Descriptor(), 0)
		if msg == "" {
			path, off, msg = "", h.start, err.Error()
		}
		d.err = &DecodeError{What: "otlp request", Field: path, Offset: off, Msg: msg}
		return false
	}
	return true
}

func decodeOTLPProto(b []byte, dst []*model.Span) ([]*model.Span, error) {
	d := otlpDecoder{pbDecoder: pbDecoder{b: b, what: "otlp request"}}
	orig := len(dst)
	ri := 0
	for i := 0; i < len(b); {
		var h fieldHdr
		ok := d.hdr(&h, i, len(b), otlpRequestFields)
		if !ok {
			return dst[:orig], d.err
		}
		if h.num == 1 && h.typ == protowire.BytesType {
			d.ri = ri
			if dst, ok = d.resourceSpans(h, dst); !ok {
				d.wrap(otlpRequestFields, 1)
				return dst[:orig], d.err
			}
			ri++
			i = h.ve
			continue
		}
		if i, ok = d.skip(h, len(b), otlpRequestFields); !ok {
			return dst[:orig], d.err
		}
	}
	return dst, nil
}

// scan walks the fields of [vs, ve), validating what it skips, and calls
// field for each bytes field with a number in nums. It is the first pass
// over a message whose parts must be read in a set order.
func (d *otlpDecoder) scan(vs, ve int, names []string, field func(h fieldHdr) bool) bool {
	for i := vs; i < ve; {
		var h fieldHdr
		ok := d.hdr(&h, i, ve, names)
		if !ok {
			return false
		}
		if h.typ == protowire.BytesType {
			if !field(h) {
				return false
			}
			i = h.ve
			continue
		}
		if i, ok = d.skip(h, ve, names); !ok {
			return false
		}
	}
	return true
}

func (d *otlpDecoder) resourceSpans(rh fieldHdr, dst []*model.Span) ([]*model.Span, bool) {
	// The resource may come after the spans and may be repeated (repeats
	// merge): read it first.
	var res *resourcepb.Resource
	ok := d.scan(rh.vs, rh.ve, otlpResourceFields, func(h fieldHdr) bool {
		switch h.num {
		case 1:
			if res == nil {
				res = &resourcepb.Resource{}
			}
			return d.generated(h, res) || d.wrap(otlpResourceFields, 1)
		case 3:
			return d.validText(h, otlpResourceFields)
		}
		return true
	})
	if !ok {
		return dst, false
	}
	proc, err := otlpProcess(res)
	if err != nil {
		d.err = &DecodeError{What: "otlp request", Offset: -1, Msg: err.Error(),
			Field: fmt.Sprintf("resourceSpans[%d].resource.attributes", d.ri)}
		d.whole = true
		return dst, false
	}
	si := 0
	ok = d.scan(rh.vs, rh.ve, otlpResourceFields, func(h fieldHdr) bool {
		if h.num != 2 {
			return true
		}
		d.si = si
		si++
		var ok bool
		if dst, ok = d.scopeSpans(h, &proc, dst); !ok {
			return d.wrap(otlpResourceFields, 2)
		}
		return true
	})
	return dst, ok
}

func (d *otlpDecoder) scopeSpans(sh fieldHdr, proc *model.Process, dst []*model.Span) ([]*model.Span, bool) {
	var scope *commonpb.InstrumentationScope
	ok := d.scan(sh.vs, sh.ve, otlpScopeFields, func(h fieldHdr) bool {
		switch h.num {
		case 1:
			if scope == nil {
				scope = &commonpb.InstrumentationScope{}
			}
			return d.generated(h, scope) || d.wrap(otlpScopeFields, 1)
		case 3:
			return d.validText(h, otlpScopeFields)
		}
		return true
	})
	if !ok {
		return dst, false
	}
	var scopeTags []model.KeyValue
	if name := scope.GetName(); name != "" {
		scopeTags = append(scopeTags, model.String(keyScopeName, name))
	}
	if v := scope.GetVersion(); v != "" {
		scopeTags = append(scopeTags, model.String(keyScopeVersion, v))
	}
	pi := 0
	ok = d.scan(sh.vs, sh.ve, otlpScopeFields, func(h fieldHdr) bool {
		if h.num != 2 {
			return true
		}
		d.pi = pi
		pi++
		sp, ok := d.span(h, scopeTags)
		if !ok {
			return d.wrap(otlpScopeFields, 2)
		}
		sp.Process = *proc
		dst = append(dst, sp)
		return true
	})
	return dst, ok
}

type otlpSpanCounts struct {
	attrs, events, eventAttrs, links int
}

// countOTLPSpan counts a span's repeated fields; like countJaeger it stops
// quietly at malformed bytes.
func countOTLPSpan(b []byte) otlpSpanCounts {
	var c otlpSpanCounts
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
		case 9:
			c.attrs++
		case 11:
			c.events++
			for j := vs; j < ve; {
				n, t, _, e, ok := quickField(b, j)
				if !ok {
					break
				}
				if n == 3 && t == protowire.BytesType {
					c.eventAttrs++
				}
				j = e
			}
		case 13:
			c.links++
		}
	}
	return c
}

func (d *otlpDecoder) span(h fieldHdr, scopeTags []model.KeyValue) (*model.Span, bool) {
	b := d.b
	c := countOTLPSpan(b[h.vs:h.ve])
	sp := new(model.Span)
	// Strings are substrings of this span's own copy of its bytes, so a
	// span kept alive does not keep the whole message alive.
	base := h.vs
	str := string(b[h.vs:h.ve])
	d.str = str
	var kvs []model.KeyValue
	if n := c.attrs + len(scopeTags) + c.events + c.eventAttrs; n > 0 {
		kvs = make([]model.KeyValue, n)
		sp.Tags = kvs[0 : 0 : c.attrs+len(scopeTags)]
	}
	logStart := c.attrs + len(scopeTags)
	if c.events > 0 {
		sp.Logs = make([]model.Log, 0, c.events)
	}
	var links []*tracepb.Span_Link
	var traceID, spanID, parentID []byte
	haveParent := false
	var start, end uint64
	var kind int32
	var status *pbStatus
	for i := h.vs; i < h.ve; {
		var f fieldHdr
		ok := d.hdr(&f, i, h.ve, otlpSpanFields)
		if !ok {
			return nil, false
		}
		switch {
		case f.typ == protowire.BytesType:
			i = f.ve
			switch f.num {
			case 1:
				traceID = b[f.vs:f.ve]
			case 2:
				spanID = b[f.vs:f.ve]
			case 4:
				parentID, haveParent = b[f.vs:f.ve], true
			case 3:
				if !d.validText(f, otlpSpanFields) {
					return nil, false
				}
			case 5:
				if !validUTF8(b[f.vs:f.ve]) {
					return nil, d.fail(otlpSpanFields, 5, f.start, "invalid UTF-8")
				}
				sp.Operation = str[f.vs-base : f.ve-base]
			case 9:
				var kv *model.KeyValue
				sp.Tags, kv = nextKV(sp.Tags)
				if !d.attribute(f, kv, base) {
					return nil, d.wrap(otlpSpanFields, 9)
				}
			case 11:
				var fields model.KeyValues
				if logStart < len(kvs) {
					fields = kvs[logStart:logStart:len(kvs)]
				}
				l, ok := d.event(f, fields, base)
				if !ok {
					return nil, d.wrap(otlpSpanFields, 11)
				}
				if len(l.Fields) > 0 && logStart < len(kvs) && &l.Fields[0] == &kvs[logStart] {
					logStart += len(l.Fields)
				}
				sp.Logs = append(sp.Logs, l)
			case 13:
				link := &tracepb.Span_Link{}
				if !d.generated(f, link) {
					return nil, d.wrap(otlpSpanFields, 13)
				}
				links = append(links, link)
			case 15:
				if status == nil {
					status = &pbStatus{}
				}
				if !d.status(f, status, base) {
					return nil, d.wrap(otlpSpanFields, 15)
				}
			}
			continue
		case f.typ == protowire.Fixed64Type && (f.num == 7 || f.num == 8):
			v, m := protowire.ConsumeFixed64(b[f.vs:h.ve])
			if m < 0 {
				return nil, d.fail(otlpSpanFields, f.num, f.start, "%s", protoErrMsg(m))
			}
			if f.num == 7 {
				start = v
			} else {
				end = v
			}
			i = f.vs + m
			continue
		case f.typ == protowire.Fixed32Type && f.num == 16:
			v, m := protowire.ConsumeFixed32(b[f.vs:h.ve])
			if m < 0 {
				return nil, d.fail(otlpSpanFields, 16, f.start, "%s", protoErrMsg(m))
			}
			sp.Flags = v
			i = f.vs + m
			continue
		case f.typ == protowire.VarintType && f.num == 6:
			var v uint64
			if v, i, ok = d.varint(f, h.ve, otlpSpanFields); !ok {
				return nil, false
			}
			kind = int32(v)
			continue
		}
		if i, ok = d.skip(f, h.ve, otlpSpanFields); !ok {
			return nil, false
		}
	}

	// The conversion rules of otlpSpan, in its order.
	var err error
	if sp.TraceID, err = traceIDFromBytes(traceID); err != nil {
		return nil, d.convErr(".traceId", err)
	}
	if sp.SpanID, err = spanIDFromBytes(spanID); err != nil {
		return nil, d.convErr(".spanId", err)
	}
	var parent model.SpanID
	if haveParent && len(parentID) > 0 {
		if parent, err = model.SpanIDFromBytes(parentID); err != nil {
			return nil, d.convErr(".parentSpanId", err)
		}
	}
	if n := len(links); n > 0 || parent != 0 {
		if parent != 0 {
			n++
		}
		sp.References = make([]model.Reference, 0, n)
		if parent != 0 {
			sp.References = append(sp.References, model.Reference{Type: model.ChildOf, TraceID: sp.TraceID, SpanID: parent})
		}
		for li, l := range links {
			r := model.Reference{Type: model.FollowsFrom}
			if r.TraceID, err = model.TraceIDFromBytes(l.GetTraceId()); err != nil {
				return nil, d.convErr(fmt.Sprintf(".links[%d].traceId", li), err)
			}
			if r.SpanID, err = model.SpanIDFromBytes(l.GetSpanId()); err != nil {
				return nil, d.convErr(fmt.Sprintf(".links[%d].spanId", li), err)
			}
			sp.References = append(sp.References, r)
		}
	}
	if start > math.MaxInt64 {
		return nil, d.convErr(".startTimeUnixNano", fmt.Errorf("time %d out of range", start))
	}
	if end > math.MaxInt64 {
		return nil, d.convErr(".endTimeUnixNano", fmt.Errorf("time %d out of range", end))
	}
	sp.Start = model.Timestamp(start)
	sp.Duration = time.Duration(int64(end) - int64(start))
	for li := range sp.Logs {
		if sp.Logs[li].Timestamp < 0 {
			return nil, d.convErr(fmt.Sprintf(".events[%d].timeUnixNano", li), fmt.Errorf("time %d out of range", uint64(sp.Logs[li].Timestamp)))
		}
	}
	if len(scopeTags) > 0 {
		sp.Tags = append(sp.Tags, scopeTags...)
	}
	if len(sp.Tags) == 0 {
		sp.Tags = nil
	}
	if kind >= 0 && kind <= int32(tracepb.Span_SPAN_KIND_CONSUMER) {
		sp.Kind = model.SpanKind(kind)
	}
	if status != nil {
		switch status.code {
		case int32(tracepb.Status_STATUS_CODE_OK):
			sp.Status = model.StatusOK
		case int32(tracepb.Status_STATUS_CODE_ERROR):
			sp.Status = model.StatusError
		}
		sp.StatusMessage = status.message
	}
	if len(sp.Logs) == 0 {
		sp.Logs = nil
	}
	return sp, true
}

// pbStatus is a Status as read, merged over occurrences.
type pbStatus struct {
	message string
	code    int32
}

func (d *otlpDecoder) status(h fieldHdr, st *pbStatus, base int) bool {
	for i := h.vs; i < h.ve; {
		var f fieldHdr
		ok := d.hdr(&f, i, h.ve, otlpStatusFields)
		if !ok {
			return false
		}
		switch {
		case f.num == 2 && f.typ == protowire.BytesType:
			if !validUTF8(d.b[f.vs:f.ve]) {
				return d.fail(otlpStatusFields, 2, f.start, "invalid UTF-8")
			}
			st.message = d.str[f.vs-base : f.ve-base]
			i = f.ve
		case f.num == 3 && f.typ == protowire.VarintType:
			var v uint64
			if v, i, ok = d.varint(f, h.ve, otlpStatusFields); !ok {
				return false
			}
			st.code = int32(v)
		default:
			if i, ok = d.skip(f, h.ve, otlpStatusFields); !ok {
				return false
			}
		}
	}
	return true
}

// event decodes an Event into a log whose fields are appended to fields
// (the span's key-value block): event=<name> first when the name is not
// empty, then the attributes.
func (d *otlpDecoder) event(h fieldHdr, fields model.KeyValues, base int) (model.Log, bool) {
	var l model.Log
	var t uint64
	name := ""
	var attrs []fieldHdr // attribute headers, read after the name is known
	var attrBuf [8]fieldHdr
	attrs = attrBuf[:0]
	for i := h.vs; i < h.ve; {
		var f fieldHdr
		ok := d.hdr(&f, i, h.ve, otlpEventFields)
		if !ok {
			return l, false
		}
		switch {
		case f.num == 1 && f.typ == protowire.Fixed64Type:
			v, m := protowire.ConsumeFixed64(d.b[f.vs:h.ve])
			if m < 0 {
				return l, d.fail(otlpEventFields, 1, f.start, "%s", protoErrMsg(m))
			}
			t, i = v, f.vs+m
		case f.num == 2 && f.typ == protowire.BytesType:
			if !validUTF8(d.b[f.vs:f.ve]) {
				return l, d.fail(otlpEventFields, 2, f.start, "invalid UTF-8")
			}
			name = d.str[f.vs-base : f.ve-base]
			i = f.ve
		case f.num == 3 && f.typ == protowire.BytesType:
			attrs = append(attrs, f)
			i = f.ve
		default:
			if i, ok = d.skip(f, h.ve, otlpEventFields); !ok {
				return l, false
			}
		}
	}
	if name != "" {
		var kv *model.KeyValue
		fields, kv = nextKV(fields)
		*kv = model.String(keyEvent, name)
	}
	for _, f := range attrs {
		var kv *model.KeyValue
		fields, kv = nextKV(fields)
		if !d.attribute(f, kv, base) {
			return l, d.wrap(otlpEventFields, 3)
		}
	}
	// A time above MaxInt64 shows as negative here; span() reports it.
	l.Timestamp = model.Timestamp(int64(t))
	if len(fields) > 0 {
		l.Fields = fields[:len(fields):len(fields)]
	}
	return l, true
}

// attribute decodes a KeyValue. The usual shape (a key and one scalar
// value) is read by hand; anything else goes through the generated code
// and attrToKV.
func (d *otlpDecoder) attribute(h fieldHdr, kv *model.KeyValue, base int) bool {
	b := d.b
	key := ""
	member := 0 // the AnyValue member last set: 1 string, 2 bool, 3 int, 4 double, 7 bytes
	var sval string
	var num uint64
	var bval []byte
	simple := true
fields:
	for i := h.vs; i < h.ve; {
		var f fieldHdr
		ok := d.hdr(&f, i, h.ve, otlpKVFields)
		if !ok {
			return false
		}
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			if !validUTF8(b[f.vs:f.ve]) {
				return d.fail(otlpKVFields, 1, f.start, "invalid UTF-8")
			}
			key = d.str[f.vs-base : f.ve-base]
			i = f.ve
		case f.num == 2 && f.typ == protowire.BytesType:
			for j := f.vs; j < f.ve; {
				var g fieldHdr
				ok := d.hdr(&g, j, f.ve, anyValueFields)
				if !ok {
					return d.wrap(otlpKVFields, 2)
				}
				switch {
				case (g.num == 1 || g.num == 7) && g.typ == protowire.BytesType:
					if g.num == 1 {
						if !validUTF8(b[g.vs:g.ve]) {
							d.fail(anyValueFields, 1, g.start, "invalid UTF-8")
							return d.wrap(otlpKVFields, 2)
						}
						sval = d.str[g.vs-base : g.ve-base]
					} else {
						bval = b[g.vs:g.ve]
					}
					member, j = int(g.num), g.ve
				case (g.num == 2 || g.num == 3) && g.typ == protowire.VarintType:
					var v uint64
					if v, j, ok = d.varint(g, f.ve, anyValueFields); !ok {
						return d.wrap(otlpKVFields, 2)
					}
					member, num = int(g.num), v
				case g.num == 4 && g.typ == protowire.Fixed64Type:
					v, m := protowire.ConsumeFixed64(b[g.vs:f.ve])
					if m < 0 {
						d.fail(anyValueFields, 4, g.start, "%s", protoErrMsg(m))
						return d.wrap(otlpKVFields, 2)
					}
					member, num, j = 4, v, g.vs+m
				default:
					simple = false
					break fields
				}
			}
			i = f.ve
		default:
			simple = false
			break fields
		}
	}
	if !simple {
		var a commonpb.KeyValue
		if !d.generated(h, &a) {
			return false
		}
		v, err := attrToKV(&a)
		if err != nil {
			return d.convErr(".attributes", err)
		}
		*kv = v
		return true
	}
	switch member {
	case 1:
		*kv = model.String(key, sval)
	case 2:
		*kv = model.Bool(key, num != 0)
	case 3:
		*kv = model.Int64(key, int64(num))
	case 4:
		*kv = model.Float64(key, math.Float64frombits(num))
	case 7:
		var bin []byte
		if len(bval) > 0 {
			bin = append([]byte(nil), bval...)
		}
		*kv = model.Binary(key, bin)
	default:
		*kv = model.String(key, "")
	}
	return true
}

var anyValueFields = []string{1: "string_value", 2: "bool_value", 3: "int_value", 4: "double_value", 5: "array_value",
	6: "kvlist_value", 7: "bytes_value", 8: "string_value_strindex"}
