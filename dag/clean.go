package dag

import (
	"cmp"
	"slices"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// clean removes nil and foreign spans and duplicate span IDs from t.Spans (see
// Analyze) and leaves the span-ID index built for the remaining spans.
func (a *Analyzer) clean(t *model.Trace) {
	if t.TraceID.IsZero() {
		for _, s := range t.Spans {
			if s != nil {
				t.TraceID = s.TraceID
				break
			}
		}
	}
	w := 0
	for _, s := range t.Spans {
		if s == nil {
			continue
		}
		if s.TraceID != t.TraceID {
			a.warnf(model.WarnForeignTrace, s.SpanID, "span belongs to trace %s, not %s; removed", s.TraceID, t.TraceID)
			continue
		}
		t.Spans[w] = s
		w++
	}
	clear(t.Spans[w:])
	t.Spans = t.Spans[:w]
	if !a.index(t.Spans) {
		a.dedup(t)
		a.index(t.Spans)
	}
}

// index builds the open-addressing table from span ID to index. It reports
// false, leaving the table incomplete, if two spans share an ID.
func (a *Analyzer) index(spans []*model.Span) bool {
	size := 8
	for size < 2*len(spans) {
		size *= 2
	}
	a.table = grow(a.table, size)
	clear(a.table)
	a.tableMask = uint64(size - 1)
	for i, s := range spans {
		for h := hashID(s.SpanID) & a.tableMask; ; h = (h + 1) & a.tableMask {
			e := a.table[h]
			if e == 0 {
				a.table[h] = int32(i) + 1
				break
			}
			if spans[e-1].SpanID == s.SpanID {
				return false
			}
		}
	}
	return true
}

// lookup returns the index of the span with ID id, or -1.
func (a *Analyzer) lookup(id model.SpanID) int32 {
	for h := hashID(id) & a.tableMask; ; h = (h + 1) & a.tableMask {
		e := a.table[h]
		if e == 0 {
			return -1
		}
		if a.spans[e-1].SpanID == id {
			return e - 1
		}
	}
}

// hashID mixes a span ID (which may be sequential) into table positions.
func hashID(id model.SpanID) uint64 {
	x := uint64(id)
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return x
}

// dedup reduces each group of spans sharing an ID to one span, kept at the
// position of the group's first copy, and compacts t.Spans. It sorts (ID,
// index) pairs to find the groups; duplicates are rare, so the common path
// never sorts.
func (a *Analyzer) dedup(t *model.Trace) {
	spans := t.Spans
	// keep[i] is 1 for spans that stay; reuse cur as scratch.
	keep := grow(a.cur, len(spans))
	for i := range keep {
		keep[i] = 1
	}
	maxDur := a.opts.MaxSpanDuration
	ids := grow(a.ids, len(spans))
	for i, s := range spans {
		ids[i] = idEntry{s.SpanID, int32(i)}
	}
	slices.SortFunc(ids, func(x, y idEntry) int {
		if c := cmp.Compare(x.id, y.id); c != 0 {
			return c
		}
		return cmp.Compare(x.idx, y.idx)
	})
	a.ids = ids
	for g := 0; g < len(ids); {
		e := g + 1
		for e < len(ids) && ids[e].id == ids[g].id {
			e++
		}
		if e-g > 1 {
			first := ids[g].idx
			best := spans[first]
			identical := true
			for _, x := range ids[g+1 : e] {
				s := spans[x.idx]
				keep[x.idx] = 0
				if !spanEqual(spans[first], s) {
					identical = false
				}
				if betterCopy(s, best, maxDur) {
					best = s
				}
			}
			spans[first] = best
			if identical {
				a.warnf(model.WarnDuplicateSpan, ids[g].id, "%d identical copies merged", e-g)
			} else {
				a.warnf(model.WarnConflictingSpan, ids[g].id,
					"%d differing copies; kept one (valid duration, then longest, then most references, tags and logs, then first received)", e-g)
			}
		}
		g = e
	}
	// Compact spans.
	w := 0
	for i, s := range spans {
		if keep[i] != 0 {
			spans[w] = s
			w++
		}
	}
	clear(spans[w:])
	t.Spans = spans[:w]
	a.cur = keep
}

// betterCopy reports whether duplicate copy s should be kept rather than the
// current choice b: a valid duration beats an invalid one, then the longer,
// then the one with more references, tags and logs. Equal copies keep b (the
// earlier in t.Spans).
func betterCopy(s, b *model.Span, maxDur time.Duration) bool {
	valid := func(x *model.Span) bool { return x.Duration >= 0 && x.Duration <= maxDur }
	if vs, vb := valid(s), valid(b); vs != vb {
		return vs
	}
	if s.Duration != b.Duration {
		return s.Duration > b.Duration
	}
	size := func(x *model.Span) int { return len(x.References) + len(x.Tags) + len(x.Logs) + len(x.Process.Tags) }
	return size(s) > size(b)
}

// spanEqual compares two spans field by field, ignoring Warnings (annotations
// added by processing, not part of what the span recorded).
func spanEqual(x, y *model.Span) bool {
	if x == y {
		return true
	}
	if x.TraceID != y.TraceID || x.SpanID != y.SpanID || x.Operation != y.Operation ||
		x.Flags != y.Flags || x.Start != y.Start || x.Duration != y.Duration ||
		x.Kind != y.Kind || x.Status != y.Status || x.StatusMessage != y.StatusMessage ||
		x.Process.ServiceName != y.Process.ServiceName {
		return false
	}
	if !slices.Equal(x.References, y.References) || !kvsEqual(x.Tags, y.Tags) || !kvsEqual(x.Process.Tags, y.Process.Tags) {
		return false
	}
	return slices.EqualFunc(x.Logs, y.Logs, func(l, m model.Log) bool {
		return l.Timestamp == m.Timestamp && kvsEqual(l.Fields, m.Fields)
	})
}

func kvsEqual(x, y model.KeyValues) bool {
	return slices.EqualFunc(x, y, func(a, b model.KeyValue) bool {
		return a.Key == b.Key && a.Type == b.Type && a.Str == b.Str && a.Num == b.Num
	})
}
