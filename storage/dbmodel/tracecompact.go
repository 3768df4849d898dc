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
//     <durationNanos> <service>\x1f<operation>", see appendOperationStat), the
//     records separated by \x1e, in one binary field (base64 in JSON) that
//     the engine keeps as a single binary doc value and a script sums; plus
//     OperationKeys and OperationNames (searched; readers ignore them) —
//     instead of one nested document per operation. A
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
			stats = appendOperationStat(stats, o)
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

// appendOperationStat appends one operation's totals to b as an
// OperationStats record.
func appendOperationStat(b []byte, o Operation) []byte {
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
	return append(b, o.Operation...)
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
	var err error
	for _, st := range a.Spans {
		if b, err = appendEntry(b, st.SpanID, st.SelfNanos, st.CriticalPathNanos); err != nil {
			return nil, false
		}
	}
	b = binary.AppendUvarint(b, uint64(len(a.CriticalPath)))
	var prev int64
	for _, c := range a.CriticalPath {
		if b, err = appendEntry(b, c.SpanID, c.StartNanos-prev, c.EndNanos-c.StartNanos); err != nil {
			return nil, false
		}
		prev = c.EndNanos
	}
	return b, true
}

// appendEntry appends one entry of a packed section: the span ID's 8 bytes
// and two varints.
func appendEntry(b []byte, spanID string, x, y int64) ([]byte, error) {
	id, err := model.ParseSpanID(spanID)
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	b = binary.AppendVarint(b, x)
	return binary.AppendVarint(b, y), nil
}

var errPacked = errors.New("packed analysis is cut short or malformed")

// unpackAnalysis decodes packAnalysis's form into a's Spans and
// CriticalPath.
func unpackAnalysis(b []byte, a *Analysis) error {
	if len(b) == 0 || b[0] != packedVersion {
		return fmt.Errorf("packed analysis: unknown version")
	}
	r := packedReader{b: b[1:]}
	a.Spans = make([]SpanStats, r.count())
	for i := range a.Spans {
		s := &a.Spans[i]
		s.SpanID, s.SelfNanos, s.CriticalPathNanos = r.entry()
	}
	a.CriticalPath = make([]CriticalSection, r.count())
	var prev int64
	for i := range a.CriticalPath {
		c := &a.CriticalPath[i]
		id, gap, length := r.entry()
		c.SpanID, c.StartNanos = id, prev+gap
		c.EndNanos = c.StartNanos + length
		prev = c.EndNanos
	}
	if r.bad || len(r.b) != 0 {
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

// packedReader reads a packed analysis; once anything is cut short or
// malformed it sets bad and reads nothing more.
type packedReader struct {
	b   []byte
	bad bool
}

// count reads a section's entry count, bounded by the bytes left (an entry
// takes at least 10).
func (r *packedReader) count() int {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > uint64(len(r.b)-n)/10 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

// entry reads one entry: a span ID and two varints.
func (r *packedReader) entry() (spanID string, x, y int64) {
	if r.bad || len(r.b) < 8 {
		r.bad = true
		return "", 0, 0
	}
	spanID = model.SpanID(binary.BigEndian.Uint64(r.b)).String()
	r.b = r.b[8:]
	x, y = r.varint(), r.varint()
	return spanID, x, y
}

func (r *packedReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}
