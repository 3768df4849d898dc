package dag

import "github.com/tracepipe/tracepipe/model"

// frame is one level of the critical-path walk.
type frame struct {
	node   int32 // span index, or n for the virtual root
	lo     int32 // first blocking child in kids
	ptr    int32 // children at kids[lo:ptr] are still candidates
	p0, p1 int64 // the node's interval, truncated to its parent's
	point  int64 // the walk's current time within the node
}

// criticalPath walks from node (a span, or n for the virtual root) over the
// interval [p0, p1] and fills a.sections (earliest first) and a.cp.
//
// Each child is examined once per walk: children are sorted by end, the
// current point only moves backwards, so a child ending after the point can be
// passed over for good. The walk is linear after sortChildren.
func (a *Analyzer) criticalPath(node int32, p0, p1 int64) {
	a.cp = grow(a.cp, a.n)
	clear(a.cp)
	a.sections = a.sections[:0]
	stack := append(a.stack[:0], frame{node: node, lo: a.off[node], ptr: a.off[node] + a.nblk[node], p0: p0, p1: p1, point: p1})
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		found := int32(-1)
		var cs, ce int64
		for f.ptr > f.lo {
			f.ptr--
			c := a.kids[f.ptr]
			s, e := a.start[c], a.end[c]
			// Truncate to the parent's interval; drop children outside it.
			if s >= f.p0 {
				if s >= f.p1 {
					continue
				}
				cs = s
			} else {
				if e <= f.p0 {
					continue
				}
				cs = f.p0
			}
			ce = min(e, f.p1)
			if ce > f.point {
				continue
			}
			found = c
			if e > f.p1 {
				// Truncated to the parent's end: every later candidate
				// ending at or after it ties; the earliest start wins
				// (Jaeger UI's rule, see the package documentation).
				for k := f.ptr - 1; k >= f.lo; k-- {
					o := a.kids[k]
					if a.end[o] < f.p1 {
						break
					}
					f.ptr = k
					if a.start[o] >= f.p1 || (a.start[o] < f.p0 && a.end[o] <= f.p0) {
						continue
					}
					if a.start[o] < a.start[found] || (a.start[o] == a.start[found] && a.spans[o].SpanID < a.spans[found].SpanID) {
						found = o
					}
				}
				cs = max(a.start[found], f.p0)
			}
			break
		}
		if found < 0 {
			a.emit(f.node, f.p0, f.point)
			stack = stack[:len(stack)-1]
			continue
		}
		a.emit(f.node, ce, f.point)
		f.point = cs
		stack = append(stack, frame{node: found, lo: a.off[found], ptr: a.off[found] + a.nblk[found], p0: cs, p1: ce, point: ce})
	}
	a.stack = stack
	// Sections were produced latest first.
	sec := a.sections
	for i, j := 0, len(sec)-1; i < j; i, j = i+1, j-1 {
		sec[i], sec[j] = sec[j], sec[i]
	}
}

// emit records that node was critical over [s, e). Sections arrive latest
// first; one adjacent to the previous section of the same span extends it.
func (a *Analyzer) emit(node int32, s, e int64) {
	if s >= e || int(node) == a.n {
		return
	}
	a.cp[node] = addSat(a.cp[node], e-s)
	id := a.spans[node].SpanID
	if k := len(a.sections) - 1; k >= 0 && a.sections[k].SpanID == id && int64(a.sections[k].Start) == e {
		a.sections[k].Start = model.Timestamp(s)
		return
	}
	a.sections = append(a.sections, model.CriticalSection{SpanID: id, Start: model.Timestamp(s), End: model.Timestamp(e)})
}

// selfTimes computes each span's duration minus the union of its blocking
// children's intervals clipped to it. Children are visited by end descending,
// which lets the union be merged in one pass.
func (a *Analyzer) selfTimes() {
	a.self = grow(a.self, a.n)
	for p := range a.n {
		ps, pe := a.start[p], a.end[p]
		var covered, lo, hi int64
		have := false
		first := a.off[p]
		for k := first + a.nblk[p] - 1; k >= first; k-- {
			c := a.kids[k]
			cs, ce := max(a.start[c], ps), min(a.end[c], pe)
			if ce <= cs {
				continue
			}
			switch {
			case !have:
				lo, hi, have = cs, ce, true
			case ce >= lo:
				lo = min(lo, cs)
			default:
				covered += hi - lo
				lo, hi = cs, ce
			}
		}
		if have {
			covered += hi - lo
		}
		a.self[p] = (pe - ps) - covered
	}
}
