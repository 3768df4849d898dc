package dbmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tracepipe/tracepipe/model"
)

// The compact summary: how the Elasticsearch store writes a summary since
// template version 5, so that the search engine indexes one Lucene document
// per trace and parses a short _source:
//
//   - the per-operation totals become OperationStats, one record per
//     operation ("<criticalPathNanos> <count> <errors> <selfNanos>
//     <durationNanos> <service>\x1f<operation>", see OperationStat), the
//     records separated by \x1e, in one binary field (base64 in JSON) that
//     the engine keeps as a single binary doc value and a script sums; plus
//     OperationKeys and OperationNames (searched, and left out of _source by
//     the mapping) — instead of one nested document per operation. A
//     summary with a service or operation name holding \x1e or \x1f keeps
//     its nested Operations (the records could not be told apart);
//   - the analysis's per-span stats and critical path become Analysis.Packed
//     (binary: base64 in JSON), instead of three JSON fields per entry.
//
// Compact moves a summary into that form, Expand back; readers call Expand
// on every summary they read, so documents of either form read the same.

// Compact moves d's per-operation totals into OperationStats, OperationKeys
// and OperationNames and its per-span stats and critical path into
// Analysis.Packed. Span IDs that do not parse stay where they are (never
// the case for summaries FromDomainTrace builds).
func (d *Trace) Compact() {
	if len(d.Operations) > 0 && separable(d.Operations) {
		var stats []byte
		d.OperationKeys = make([]string, len(d.Operations))
		names := make([]string, 0, len(d.Operations))
		seen := make(map[string]bool, len(d.Operations))
		for i, o := range d.Operations {
			if i > 0 {
				stats = append(stats, statsSep)
			}
			stats = append(stats, OperationStat(o)...)
			d.OperationKeys[i] = o.Key
			if !seen[o.Operation] {
				seen[o.Operation] = true
				names = append(names, o.Operation)
			}
		}
		d.OperationStats, d.OperationNames, d.Operations = stats, names, nil
	}
	if p, ok := packAnalysis(&d.Analysis); ok {
		d.Analysis.Packed, d.Analysis.Spans, d.Analysis.CriticalPath = p, nil, nil
	}
}

// Expand restores what Compact moved: Operations from OperationStats and
// the per-span stats and critical path from Analysis.Packed. A summary in
// the full form is left as it is.
func (d *Trace) Expand() error {
	if len(d.Operations) == 0 && len(d.OperationStats) > 0 {
		records := strings.Split(string(d.OperationStats), string(rune(statsSep)))
		d.Operations = make([]Operation, len(records))
		for i, s := range records {
			o, err := ParseOperationStat(s)
			if err != nil {
				return fmt.Errorf("trace summary %s: %w", d.TraceID, err)
			}
			d.Operations[i] = o
		}
	}
	d.OperationStats, d.OperationKeys, d.OperationNames = nil, nil, nil
	if len(d.Analysis.Packed) > 0 {
		if err := unpackAnalysis(d.Analysis.Packed, &d.Analysis); err != nil {
			return fmt.Errorf("trace summary %s: analysis: %w", d.TraceID, err)
		}
		d.Analysis.Packed = nil
	}
	return nil
}

// statsSep separates the records of OperationStats.
const statsSep = '\x1e'

// separable says whether the operations' records can be told apart in
// OperationStats: no service or operation name holds a separator.
func separable(ops []Operation) bool {
	for _, o := range ops {
		if strings.ContainsAny(o.Service, "\x1e\x1f") || strings.ContainsAny(o.Operation, "\x1e\x1f") {
			return false
		}
	}
	return true
}

// OperationStat renders one operation's totals as an OperationStats record.
func OperationStat(o Operation) string {
	b := make([]byte, 0, 48+len(o.Key))
	b = strconv.AppendInt(b, o.CriticalPathNanos, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(o.Count), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(o.Errors), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, o.SelfNanos, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, o.DurationNanos, 10)
	b = append(b, ' ')
	b = append(b, o.Service...)
	b = append(b, '\x1f')
	b = append(b, o.Operation...)
	return string(b)
}

// ParseOperationStat reads an OperationStats record.
func ParseOperationStat(s string) (Operation, error) {
	var n [5]int64
	rest := s
	for i := range n {
		sp := strings.IndexByte(rest, ' ')
		if sp < 0 {
			return Operation{}, fmt.Errorf("operation stats %q: %d numbers, want 5", s, i)
		}
		v, err := strconv.ParseInt(rest[:sp], 10, 64)
		if err != nil {
			return Operation{}, fmt.Errorf("operation stats %q: %w", s, err)
		}
		n[i], rest = v, rest[sp+1:]
	}
	svc, op, ok := strings.Cut(rest, "\x1f")
	if !ok {
		return Operation{}, fmt.Errorf("operation stats %q: no service\\x1foperation key", s)
	}
	return Operation{Key: rest, Service: svc, Operation: op,
		CriticalPathNanos: n[0], Count: int(n[1]), Errors: int(n[2]), SelfNanos: n[3], DurationNanos: n[4]}, nil
}

// packedVersion is the first byte of Analysis.Packed.
const packedVersion = 1

// packAnalysis encodes a's per-span stats and critical path:
//
//	version (1 byte) | uvarint n | n × (span ID 8 bytes, varint self, varint critical path)
//	| uvarint m | m × (span ID 8 bytes, varint start − previous end, varint end − start)
//
// with the first section's previous end 0. It fails (ok false) when a span
// ID does not parse.
func packAnalysis(a *Analysis) (_ []byte, ok bool) {
	if len(a.Spans) == 0 && len(a.CriticalPath) == 0 {
		return nil, false
	}
	b := make([]byte, 0, 1+len(a.Spans)*14+len(a.CriticalPath)*16)
	b = append(b, packedVersion)
	b = binary.AppendUvarint(b, uint64(len(a.Spans)))
	for _, s := range a.Spans {
		id, err := model.ParseSpanID(s.SpanID)
		if err != nil {
			return nil, false
		}
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.AppendVarint(b, s.SelfNanos)
		b = binary.AppendVarint(b, s.CriticalPathNanos)
	}
	b = binary.AppendUvarint(b, uint64(len(a.CriticalPath)))
	var prev int64
	for _, c := range a.CriticalPath {
		id, err := model.ParseSpanID(c.SpanID)
		if err != nil {
			return nil, false
		}
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.AppendVarint(b, c.StartNanos-prev)
		b = binary.AppendVarint(b, c.EndNanos-c.StartNanos)
		prev = c.EndNanos
	}
	return b, true
}

var errPacked = errors.New("packed analysis is cut short or malformed")

// unpackAnalysis decodes packAnalysis's form into a's Spans and
// CriticalPath.
func unpackAnalysis(b []byte, a *Analysis) error {
	if len(b) == 0 || b[0] != packedVersion {
		return fmt.Errorf("packed analysis: unknown version")
	}
	b = b[1:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	sv := func() (int64, bool) {
		v, n := binary.Varint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	id := func() (string, bool) {
		if len(b) < 8 {
			return "", false
		}
		v := binary.BigEndian.Uint64(b)
		b = b[8:]
		return model.SpanID(v).String(), true
	}
	n, ok := uv()
	if !ok || n > uint64(len(b))/10 { // each entry takes at least 10 bytes
		return errPacked
	}
	a.Spans = make([]SpanStats, n)
	for i := range a.Spans {
		s := &a.Spans[i]
		var ok1, ok2, ok3 bool
		s.SpanID, ok1 = id()
		s.SelfNanos, ok2 = sv()
		s.CriticalPathNanos, ok3 = sv()
		if !ok1 || !ok2 || !ok3 {
			return errPacked
		}
	}
	m, ok := uv()
	if !ok || m > uint64(len(b))/10 {
		return errPacked
	}
	a.CriticalPath = make([]CriticalSection, m)
	var prev int64
	for i := range a.CriticalPath {
		c := &a.CriticalPath[i]
		var ok1, ok2, ok3 bool
		var d1, d2 int64
		c.SpanID, ok1 = id()
		d1, ok2 = sv()
		d2, ok3 = sv()
		if !ok1 || !ok2 || !ok3 {
			return errPacked
		}
		c.StartNanos = prev + d1
		c.EndNanos = c.StartNanos + d2
		prev = c.EndNanos
	}
	if len(b) != 0 {
		return errPacked
	}
	if len(a.Spans) == 0 {
		a.Spans = nil
	}
	if len(a.CriticalPath) == 0 {
		a.CriticalPath = nil
	}
	return nil
}
