package embedded

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/tracepipe/tracepipe/storage/dbmodel"
)

// decodeSpans decodes a stored JSON array of dbmodel.Span documents, with
// the same result as json.Unmarshal.
//
// Reading a 10,000-span trace is mostly decoding its spans, and
// encoding/json's reflection costs several times what the documents need.
// So a hand-written parser reads the documents as this store writes them
// (the exact field names, strings, integers, tag values as strings, numbers
// or booleans); anything else (an unknown or repeated field, a null, a
// "tag" object, a number that is not a plain integer where one is
// expected, ...) makes it give up and json.Unmarshal decodes the whole
// array, so documents of other shapes (older stores, hand edits) still
// read exactly as before. FuzzDecodeSpans checks that whenever the parser
// succeeds json.Unmarshal succeeds with an equal result.
func decodeSpans(b []byte) ([]dbmodel.Span, error) {
	p := spanParser{b: b}
	if spans, ok := p.spans(); ok {
		return spans, nil
	}
	var spans []dbmodel.Span
	err := json.Unmarshal(b, &spans)
	return spans, err
}

// spanParser reads b from i; every method returns ok=false on anything it
// does not take.
type spanParser struct {
	b []byte
	i int
	// strs interns short strings: a trace repeats its trace ID, tag keys,
	// type names, services and many values in every span.
	strs map[string]string
}

// intern returns b as a string, the same string for the same short bytes.
func (p *spanParser) intern(b []byte) string {
	if len(b) > 64 {
		return string(b)
	}
	if s, ok := p.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if p.strs == nil {
		p.strs = make(map[string]string, 256)
	}
	if len(p.strs) < 4096 {
		p.strs[s] = s
	}
	return s
}

func (p *spanParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips white space and takes c.
func (p *spanParser) next(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *spanParser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *spanParser) spans() ([]dbmodel.Span, bool) {
	// Room for every span as written (traceID first; a reference starts
	// with refType), so the big structs are not copied as the slice grows.
	out := make([]dbmodel.Span, 0, bytes.Count(p.b, []byte(`{"traceID":`)))
	if !p.next('[') {
		return nil, false
	}
	if !p.next(']') {
		for {
			out = append(out, dbmodel.Span{})
			if !p.span(&out[len(out)-1]) {
				return nil, false
			}
			if p.next(',') {
				continue
			}
			if !p.next(']') {
				return nil, false
			}
			break
		}
	}
	p.ws()
	return out, p.i == len(p.b)
}

// object reads {"k": v, ...}, calling field for each key, which reads the
// value; a repeated key gives up (bit is the key's bit in a 64-bit set).
func (p *spanParser) object(field func(key []byte) (bit uint, ok bool)) bool {
	if !p.next('{') {
		return false
	}
	if p.next('}') {
		return true
	}
	var seen uint64
	for {
		key, ok := p.rawString()
		if !ok || !p.next(':') {
			return false
		}
		bit, ok := field(key)
		if !ok || seen&(1<<bit) != 0 {
			return false
		}
		seen |= 1 << bit
		if p.next(',') {
			continue
		}
		return p.next('}')
	}
}

// array reads [e, ...], calling elem for each element.
func (p *spanParser) array(elem func() bool) bool {
	if !p.next('[') {
		return false
	}
	if p.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if p.next(',') {
			continue
		}
		return p.next(']')
	}
}

// rawString reads a string without escapes, of valid UTF-8 and no control
// characters, and returns its bytes (inside b).
func (p *spanParser) rawString() ([]byte, bool) {
	if !p.next('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false // json.Unmarshal replaces invalid bytes
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		p.i++
	}
	return nil, false
}

// str reads a string; one with escapes is decoded by json.Unmarshal.
func (p *spanParser) str(dst *string) bool {
	p.ws()
	save := p.i
	if s, ok := p.rawString(); ok {
		*dst = p.intern(s)
		return true
	}
	// Find the end of the quoted string and let encoding/json unescape it.
	p.i = save
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return false
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch p.b[j] {
		case '\\':
			j++
		case '"':
			if json.Unmarshal(p.b[p.i:j+1], dst) != nil {
				return false
			}
			p.i = j + 1
			return true
		}
	}
	return false
}

// number reads a JSON number's bytes.
func (p *spanParser) number() ([]byte, bool) {
	p.ws()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	n := p.i - digits
	if n == 0 || (n > 1 && p.b[digits] == '0') {
		return nil, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return nil, false // not an integer: json.Unmarshal decides
		}
	}
	return p.b[start:p.i], true
}

func (p *spanParser) int64(dst *int64) bool {
	s, ok := p.number()
	if !ok {
		return false
	}
	v, err := strconv.ParseInt(string(s), 10, 64)
	*dst = v
	return err == nil
}

func (p *spanParser) uint32(dst *uint32) bool {
	s, ok := p.number()
	if !ok || s[0] == '-' {
		return false
	}
	v, err := strconv.ParseUint(string(s), 10, 32)
	*dst = uint32(v)
	return err == nil
}

func (p *spanParser) span(d *dbmodel.Span) bool {
	return p.object(func(key []byte) (uint, bool) {
		switch string(key) {
		case "traceID":
			return 0, p.str(&d.TraceID)
		case "spanID":
			return 1, p.str(&d.SpanID)
		case "parentSpanID":
			return 2, p.str(&d.ParentSpanID)
		case "flags":
			return 3, p.uint32(&d.Flags)
		case "operationName":
			return 4, p.str(&d.OperationName)
		case "references":
			d.References = []dbmodel.Reference{}
			return 5, p.array(func() bool {
				d.References = append(d.References, dbmodel.Reference{})
				return p.reference(&d.References[len(d.References)-1])
			})
		case "startTime":
			return 6, p.int64(&d.StartTime)
		case "startTimeMillis":
			return 7, p.int64(&d.StartTimeMillis)
		case "duration":
			return 8, p.int64(&d.Duration)
		case "tags":
			return 9, p.keyValues(&d.Tags)
		case "logs":
			d.Logs = []dbmodel.Log{}
			return 10, p.array(func() bool {
				d.Logs = append(d.Logs, dbmodel.Log{})
				return p.log(&d.Logs[len(d.Logs)-1])
			})
		case "process":
			return 11, p.process(&d.Process)
		}
		return 0, false
	})
}

func (p *spanParser) reference(r *dbmodel.Reference) bool {
	return p.object(func(key []byte) (uint, bool) {
		switch string(key) {
		case "refType":
			return 0, p.str(&r.RefType)
		case "traceID":
			return 1, p.str(&r.TraceID)
		case "spanID":
			return 2, p.str(&r.SpanID)
		}
		return 0, false
	})
}

func (p *spanParser) log(l *dbmodel.Log) bool {
	return p.object(func(key []byte) (uint, bool) {
		switch string(key) {
		case "timestamp":
			return 0, p.int64(&l.Timestamp)
		case "fields":
			return 1, p.keyValues(&l.Fields)
		}
		return 0, false
	})
}

func (p *spanParser) process(pr *dbmodel.Process) bool {
	return p.object(func(key []byte) (uint, bool) {
		switch string(key) {
		case "serviceName":
			return 0, p.str(&pr.ServiceName)
		case "tags":
			return 1, p.keyValues(&pr.Tags)
		}
		return 0, false
	})
}

func (p *spanParser) keyValues(dst *[]dbmodel.KeyValue) bool {
	kvs := make([]dbmodel.KeyValue, 0, 8)
	ok := p.array(func() bool {
		kvs = append(kvs, dbmodel.KeyValue{})
		kv := &kvs[len(kvs)-1]
		return p.object(func(key []byte) (uint, bool) {
			switch string(key) {
			case "key":
				return 0, p.str(&kv.Key)
			case "type":
				return 1, p.str(&kv.Type)
			case "value":
				return 2, p.value(&kv.Value)
			}
			return 0, false
		})
	})
	*dst = kvs
	return ok
}

// value reads a tag value as json.Unmarshal into an any: a string, a
// float64, a bool or nil (objects and arrays give up).
func (p *spanParser) value(dst *any) bool {
	switch c := p.peek(); {
	case c == '"':
		var s string
		if !p.str(&s) {
			return false
		}
		*dst = s
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		s, ok := p.number()
		if !ok {
			return false
		}
		f, err := strconv.ParseFloat(string(s), 64)
		if err != nil {
			return false
		}
		*dst = f
		return true
	}
	for _, lit := range []struct {
		text string
		v    any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if len(p.b)-p.i >= len(lit.text) && string(p.b[p.i:p.i+len(lit.text)]) == lit.text {
			p.i += len(lit.text)
			*dst = lit.v
			return true
		}
	}
	return false
}

// decodeDetail decodes the analysis column's JSON (a detail) with the same
// result as json.Unmarshal, by the same hand-written parser when the
// document has the shape this store writes (its per-span statistics are
// most of a big trace's analysis), else by json.Unmarshal.
func decodeDetail(b []byte, det *detail) error {
	p := spanParser{b: b}
	var d detail
	if p.detail(&d) {
		if p.ws(); p.i == len(b) {
			*det = d
			return nil
		}
	}
	return json.Unmarshal(b, det)
}

func (p *spanParser) detail(d *detail) bool {
	return p.object(func(key []byte) (uint, bool) {
		switch string(key) {
		case "operations":
			d.Operations = []dbmodel.Operation{}
			return 0, p.array(func() bool {
				d.Operations = append(d.Operations, dbmodel.Operation{})
				return p.operation(&d.Operations[len(d.Operations)-1])
			})
		case "analysis":
			return 1, p.analysis(&d.Analysis)
		}
		return 0, false
	})
}

func (p *spanParser) operation(o *dbmodel.Operation) bool {
	return p.object(func(key []byte) (uint, bool) {
		switch string(key) {
		case "key":
			return 0, p.str(&o.Key)
		case "service":
			return 1, p.str(&o.Service)
		case "operation":
			return 2, p.str(&o.Operation)
		case "count":
			return 3, p.int(&o.Count)
		case "errors":
			return 4, p.int(&o.Errors)
		case "durationNanos":
			return 5, p.int64(&o.DurationNanos)
		case "selfNanos":
			return 6, p.int64(&o.SelfNanos)
		case "criticalPathNanos":
			return 7, p.int64(&o.CriticalPathNanos)
		}
		return 0, false
	})
}

func (p *spanParser) int(dst *int) bool {
	var v int64
	if !p.int64(&v) || int64(int(v)) != v {
		return false
	}
	*dst = int(v)
	return true
}

func (p *spanParser) analysis(a *dbmodel.Analysis) bool {
	return p.object(func(key []byte) (uint, bool) {
		switch string(key) {
		case "rootSpanID":
			return 0, p.str(&a.RootSpanID)
		case "criticalPath":
			a.CriticalPath = []dbmodel.CriticalSection{}
			return 1, p.array(func() bool {
				a.CriticalPath = append(a.CriticalPath, dbmodel.CriticalSection{})
				c := &a.CriticalPath[len(a.CriticalPath)-1]
				return p.object(func(key []byte) (uint, bool) {
					switch string(key) {
					case "spanID":
						return 0, p.str(&c.SpanID)
					case "startNanos":
						return 1, p.int64(&c.StartNanos)
					case "endNanos":
						return 2, p.int64(&c.EndNanos)
					}
					return 0, false
				})
			})
		case "spans":
			a.Spans = []dbmodel.SpanStats{}
			return 2, p.array(func() bool {
				a.Spans = append(a.Spans, dbmodel.SpanStats{})
				s := &a.Spans[len(a.Spans)-1]
				return p.object(func(key []byte) (uint, bool) {
					switch string(key) {
					case "spanID":
						return 0, p.str(&s.SpanID)
					case "selfNanos":
						return 1, p.int64(&s.SelfNanos)
					case "criticalPathNanos":
						return 2, p.int64(&s.CriticalPathNanos)
					}
					return 0, false
				})
			})
		case "warnings":
			a.Warnings = []dbmodel.Warning{}
			return 3, p.array(func() bool {
				a.Warnings = append(a.Warnings, dbmodel.Warning{})
				w := &a.Warnings[len(a.Warnings)-1]
				return p.object(func(key []byte) (uint, bool) {
					switch string(key) {
					case "kind":
						return 0, p.str(&w.Kind)
					case "spanID":
						return 1, p.str(&w.SpanID)
					case "message":
						return 2, p.str(&w.Message)
					}
					return 0, false
				})
			})
		}
		return 0, false
	})
}
