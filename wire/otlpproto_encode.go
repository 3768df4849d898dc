package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/procset"
)

// The hand-written OTLP encoder writes exactly the bytes that
// proto.MarshalOptions{Deterministic: true} writes for modelToOTLP(spans)
// (tested), without building the generated message tree.

type otlpScopeGroup struct {
	key   scopeKey
	spans []int // indexes into the span list
	size  int
}

type otlpResourceGroup struct {
	proc    *model.Process
	scopes  []*otlpScopeGroup
	byScope map[scopeKey]*otlpScopeGroup
	resSize int // size of the Resource message
	size    int // size of the ResourceSpans message
}

// otlpSpanInfo is what the encoder precomputes per span.
type otlpSpanInfo struct {
	s        *model.Span
	scope    scopeKey
	attrs    []model.KeyValue // tags without the trailing scope tags
	parent   int              // index of the reference written as parent_span_id, or -1
	size     int
	statusSz int
}

// AppendOTLPProto appends EncodeOTLPProto's message to dst.
func AppendOTLPProto(dst []byte, spans []*model.Span) ([]byte, error) {
	infos := make([]otlpSpanInfo, len(spans))
	var groups []*otlpResourceGroup
	procs := procset.New()
	for i, s := range spans {
		if err := checkOTLPEncodable(s); err != nil {
			return dst, err
		}
		inf := &infos[i]
		inf.s = s
		inf.attrs, inf.scope = splitScopeTags(s.Tags)
		inf.parent = parentRef(s)
		inf.size, inf.statusSz = otlpSpanSize(inf)

		gi, added := procs.Add(&s.Process)
		if added {
			groups = append(groups, &otlpResourceGroup{proc: &s.Process, byScope: map[scopeKey]*otlpScopeGroup{}})
		}
		g := groups[gi]
		sg := g.byScope[inf.scope]
		if sg == nil {
			sg = &otlpScopeGroup{key: inf.scope}
			g.byScope[inf.scope] = sg
			g.scopes = append(g.scopes, sg)
		}
		sg.spans = append(sg.spans, i)
	}
	total := 0
	for _, g := range groups {
		g.resSize = resourceSize(g.proc)
		g.size = lenField(g.resSize)
		for _, sg := range g.scopes {
			if sg.key != (scopeKey{}) {
				sg.size += lenField(scopeSize(sg.key))
			}
			for _, i := range sg.spans {
				sg.size += lenField(infos[i].size)
			}
			g.size += lenField(sg.size)
		}
		total += lenField(g.size)
	}
	if cap(dst)-len(dst) < total {
		nd := make([]byte, len(dst), len(dst)+total)
		copy(nd, dst)
		dst = nd
	}
	for _, g := range groups {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(g.size))
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(g.resSize))
		dst = appendResource(dst, g.proc)
		for _, sg := range g.scopes {
			dst = protowire.AppendTag(dst, 2, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(sg.size))
			if sg.key != (scopeKey{}) {
				dst = protowire.AppendTag(dst, 1, protowire.BytesType)
				dst = protowire.AppendVarint(dst, uint64(scopeSize(sg.key)))
				dst = appendStringField(dst, 1, sg.key.name)
				dst = appendStringField(dst, 2, sg.key.version)
			}
			for _, i := range sg.spans {
				dst = protowire.AppendTag(dst, 2, protowire.BytesType)
				dst = protowire.AppendVarint(dst, uint64(infos[i].size))
				dst = appendOTLPSpan(dst, &infos[i])
			}
		}
	}
	return dst, nil
}

// checkOTLPEncodable rejects what OTLP cannot carry: times before the
// epoch (OTLP times are unsigned), unknown kinds, and what no format can
// carry (unknown value or reference types).
func checkOTLPEncodable(s *model.Span) error {
	if s.Start < 0 {
		return fmt.Errorf("encode span %s: start %d is before the epoch, which OTLP cannot carry", s.SpanID, s.Start)
	}
	if int64(s.Start)+int64(s.Duration) < 0 {
		return fmt.Errorf("encode span %s: end is before the epoch, which OTLP cannot carry", s.SpanID)
	}
	if s.Kind < model.KindUnspecified || s.Kind > model.KindConsumer {
		return fmt.Errorf("encode span %s: unknown kind %d", s.SpanID, s.Kind)
	}
	for _, l := range s.Logs {
		if l.Timestamp < 0 {
			return fmt.Errorf("encode span %s: log time %d is before the epoch", s.SpanID, l.Timestamp)
		}
	}
	return checkEncodable(s, nil)
}

// splitScopeTags takes the trailing scope tags off tags (see spanToOTLP).
func splitScopeTags(tags model.KeyValues) (model.KeyValues, scopeKey) {
	var scope scopeKey
	if n := len(tags); n > 0 && tags[n-1].Key == keyScopeVersion && tags[n-1].Type == model.StringType && tags[n-1].Str != "" {
		scope.version, tags = tags[n-1].Str, tags[:n-1]
	}
	if n := len(tags); n > 0 && tags[n-1].Key == keyScopeName && tags[n-1].Type == model.StringType && tags[n-1].Str != "" {
		scope.name, tags = tags[n-1].Str, tags[:n-1]
	}
	return tags, scope
}

// parentRef is the index of the reference written as parent_span_id: the
// first CHILD_OF reference within the trace with a non-zero span ID.
func parentRef(s *model.Span) int {
	for i, r := range s.References {
		if r.Type == model.ChildOf && r.TraceID == s.TraceID && r.SpanID != 0 {
			return i
		}
	}
	return -1
}

func appendStringField(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

func stringFieldSize(s string) int {
	if s == "" {
		return 0
	}
	return lenField(len(s))
}

func scopeSize(k scopeKey) int { return stringFieldSize(k.name) + stringFieldSize(k.version) }

// anyValueSize is the size of the AnyValue of kv: a oneof member is written
// even when it holds its zero value.
func anyValueSize(kv *model.KeyValue) int {
	switch kv.Type {
	case model.StringType:
		return lenField(len(kv.Str))
	case model.BoolType:
		return 2
	case model.Int64Type:
		return 1 + protowire.SizeVarint(uint64(kv.Num))
	case model.Float64Type:
		return 9
	case model.BinaryType:
		return lenField(len(kv.Str))
	}
	return 0
}

func attrSize(kv *model.KeyValue) int {
	return stringFieldSize(kv.Key) + lenField(anyValueSize(kv))
}

func appendAttr(dst []byte, num protowire.Number, kv *model.KeyValue) []byte {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(attrSize(kv)))
	dst = appendStringField(dst, 1, kv.Key)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(anyValueSize(kv)))
	switch kv.Type {
	case model.StringType:
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendString(dst, kv.Str)
	case model.BoolType:
		dst = protowire.AppendTag(dst, 2, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(b2u(kv.Num != 0)))
	case model.Int64Type:
		dst = protowire.AppendTag(dst, 3, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(kv.Num))
	case model.Float64Type:
		dst = protowire.AppendTag(dst, 4, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, uint64(kv.Num))
	case model.BinaryType:
		dst = protowire.AppendTag(dst, 7, protowire.BytesType)
		dst = protowire.AppendString(dst, kv.Str)
	}
	return dst
}

func b2u(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func resourceSize(p *model.Process) int {
	n := 0
	if p.ServiceName != "" || hasStringTag(p.Tags, keyServiceName) {
		n += lenField(stringFieldSize(keyServiceName) + lenField(lenField(len(p.ServiceName))))
	}
	for i := range p.Tags {
		n += lenField(attrSize(&p.Tags[i]))
	}
	return n
}

func appendResource(dst []byte, p *model.Process) []byte {
	if p.ServiceName != "" || hasStringTag(p.Tags, keyServiceName) {
		kv := model.String(keyServiceName, p.ServiceName)
		dst = appendAttr(dst, 1, &kv)
	}
	for i := range p.Tags {
		dst = appendAttr(dst, 1, &p.Tags[i])
	}
	return dst
}

// eventParts splits a log into the event name and attributes, as
// spanToOTLP does.
func eventParts(l *model.Log) (string, []model.KeyValue) {
	f := l.Fields
	if len(f) > 0 && f[0].Key == keyEvent && f[0].Type == model.StringType && f[0].Str != "" {
		return f[0].Str, f[1:]
	}
	return "", f
}

func eventSize(l *model.Log) int {
	name, attrs := eventParts(l)
	n := stringFieldSize(name)
	if l.Timestamp != 0 {
		n += 9
	}
	for i := range attrs {
		n += lenField(attrSize(&attrs[i]))
	}
	return n
}

func otlpSpanSize(inf *otlpSpanInfo) (size, statusSize int) {
	s := inf.s
	n := lenField(16) + lenField(8)
	if inf.parent >= 0 {
		n += lenField(8)
	}
	n += stringFieldSize(s.Operation)
	if s.Kind != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.Kind))
	}
	if s.Start != 0 {
		n += 9
	}
	if s.Start+model.Timestamp(s.Duration) != 0 {
		n += 9
	}
	for i := range inf.attrs {
		n += lenField(attrSize(&inf.attrs[i]))
	}
	for i := range s.Logs {
		n += lenField(eventSize(&s.Logs[i]))
	}
	for i := range s.References {
		if i != inf.parent {
			n += lenField(lenField(16) + lenField(8))
		}
	}
	if s.Status != model.StatusUnset || s.StatusMessage != "" {
		statusSize = stringFieldSize(s.StatusMessage)
		if s.Status != 0 {
			statusSize += 1 + protowire.SizeVarint(uint64(s.Status))
		}
		n += lenField(statusSize)
	}
	if s.Flags != 0 {
		n += 2 + 4
	}
	return n, statusSize
}

func appendOTLPSpan(dst []byte, inf *otlpSpanInfo) []byte {
	s := inf.s
	tid, sid := s.TraceID.Bytes(), s.SpanID.Bytes()
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendBytes(dst, tid[:])
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendBytes(dst, sid[:])
	if inf.parent >= 0 {
		pid := s.References[inf.parent].SpanID.Bytes()
		dst = protowire.AppendTag(dst, 4, protowire.BytesType)
		dst = protowire.AppendBytes(dst, pid[:])
	}
	dst = appendStringField(dst, 5, s.Operation)
	if s.Kind != 0 {
		dst = protowire.AppendTag(dst, 6, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(s.Kind))
	}
	if s.Start != 0 {
		dst = protowire.AppendTag(dst, 7, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, uint64(s.Start))
	}
	if end := s.Start + model.Timestamp(s.Duration); end != 0 {
		dst = protowire.AppendTag(dst, 8, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, uint64(end))
	}
	for i := range inf.attrs {
		dst = appendAttr(dst, 9, &inf.attrs[i])
	}
	for i := range s.Logs {
		l := &s.Logs[i]
		dst = protowire.AppendTag(dst, 11, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(eventSize(l)))
		if l.Timestamp != 0 {
			dst = protowire.AppendTag(dst, 1, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, uint64(l.Timestamp))
		}
		name, attrs := eventParts(l)
		dst = appendStringField(dst, 2, name)
		for j := range attrs {
			dst = appendAttr(dst, 3, &attrs[j])
		}
	}
	for i, r := range s.References {
		if i == inf.parent {
			continue
		}
		lt, ls := r.TraceID.Bytes(), r.SpanID.Bytes()
		dst = protowire.AppendTag(dst, 13, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(lenField(16)+lenField(8)))
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendBytes(dst, lt[:])
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendBytes(dst, ls[:])
	}
	if s.Status != model.StatusUnset || s.StatusMessage != "" {
		dst = protowire.AppendTag(dst, 15, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(inf.statusSz))
		dst = appendStringField(dst, 2, s.StatusMessage)
		if s.Status != 0 {
			dst = protowire.AppendTag(dst, 3, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(s.Status))
		}
	}
	if s.Flags != 0 {
		dst = protowire.AppendTag(dst, 16, protowire.Fixed32Type)
		dst = protowire.AppendFixed32(dst, s.Flags)
	}
	return dst
}
