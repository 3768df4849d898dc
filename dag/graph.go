package dag

import (
	"cmp"
	"slices"

	"github.com/tracepipe/tracepipe/model"
)

// link resolves every span's parent and classifies the edge.
func (a *Analyzer) link() {
	a.parent = grow(a.parent, a.n)
	for i, s := range a.spans {
		a.parent[i] = -1
		pid, blocking, ok := s.ParentSpanID()
		if !ok || pid == 0 {
			continue
		}
		a.flag[i] |= fHasRef
		p := a.lookup(pid)
		if p < 0 {
			a.flag[i] |= fOrphan
			a.warnf(model.WarnOrphan, s.SpanID, "parent %s is not in the trace; the span is a root of its own subtree", pid)
			continue
		}
		a.parent[i] = p
		if blocking && !(s.Kind == model.KindConsumer && a.spans[p].Kind == model.KindProducer) {
			a.flag[i] |= fBlocking
		}
	}
}

// breakCycles finds every cycle of parent links (self-loops included) and
// cuts each at the member that starts first (then has the smallest span ID),
// which becomes a root. Linear time: each span is walked once.
func (a *Analyzer) breakCycles() {
	walk := grow(a.walk, a.n)
	clear(walk)
	a.walk = walk
	parent := a.parent
	w := int32(0)
	for i := range a.n {
		if walk[i] != 0 {
			continue
		}
		w++
		j := int32(i)
		for j >= 0 && walk[j] == 0 {
			walk[j] = w
			j = parent[j]
		}
		if j < 0 || walk[j] != w {
			continue
		}
		// j is on a cycle found by this walk.
		cut, length := j, 1
		for k := parent[j]; k != j; k = parent[k] {
			length++
			if a.start[k] < a.start[cut] || (a.start[k] == a.start[cut] && a.spans[k].SpanID < a.spans[cut].SpanID) {
				cut = k
			}
		}
		a.warnf(model.WarnCycle, a.spans[cut].SpanID, "parent link to %s closes a cycle of %d spans; ignored, the span is a root",
			a.spans[parent[cut]].SpanID, length)
		parent[cut] = -1
		a.flag[cut] = (a.flag[cut] | fCycle) &^ fBlocking
	}
}

// buildChildren builds the CSR child lists, the roots being the children of
// the virtual node n. Within a segment, blocking children come first; both
// groups are in index order until sortChildren.
func (a *Analyzer) buildChildren() {
	n := a.n
	off := grow(a.off, n+2)
	clear(off)
	nblk := grow(a.nblk, n+1)
	clear(nblk)
	for i := range n {
		p := a.parent[i]
		if p < 0 {
			p = int32(n)
		}
		off[p+1]++
		if a.flag[i]&fBlocking != 0 {
			nblk[p]++
		}
	}
	for p := 1; p < n+2; p++ {
		off[p] += off[p-1]
	}
	curB := grow(a.cur, 2*(n+1))
	curN := curB[n+1:]
	for p := range n + 1 {
		curB[p] = off[p]
		curN[p] = off[p] + nblk[p]
	}
	kids := grow(a.kids, n)
	for i := range n {
		p := a.parent[i]
		if p < 0 {
			p = int32(n)
		}
		if a.flag[i]&fBlocking != 0 {
			kids[curB[p]] = int32(i)
			curB[p]++
		} else {
			kids[curN[p]] = int32(i)
			curN[p]++
		}
	}
	// Every root counts as a blocking child of the virtual node.
	nblk[n] = off[n+1] - off[n]
	a.off, a.nblk, a.cur, a.kids = off, nblk, curB, kids
}

// sortKey orders blocking siblings for the critical path: end ascending, then
// start descending, then span ID descending, so the preferred child among
// equal ends (earliest start, then smallest ID) is the last. Children whose
// ends tie only after truncation to the parent are settled by the walk.
type sortKey struct {
	end, start int64
	id         model.SpanID
	idx        int32
}

func compareKeys(x, y sortKey) int {
	if x.end != y.end {
		return cmp.Compare(x.end, y.end)
	}
	if x.start != y.start {
		return cmp.Compare(y.start, x.start)
	}
	return cmp.Compare(y.id, x.id)
}

// sortChildren sorts the blocking children of every span (and of the virtual
// node when virtual is set) by sortKey, using the post-skew intervals.
// Truncating siblings to a common parent interval is monotone in their ends and
// starts, so this single order serves the critical path at every depth.
func (a *Analyzer) sortChildren(n int, virtual bool) {
	last := n
	if virtual {
		last = n + 1
	}
	for p := range last {
		lo, k := a.off[p], a.nblk[p]
		if k < 2 {
			continue
		}
		seg := a.kids[lo : lo+k]
		if k == 2 {
			x, y := a.key(seg[0]), a.key(seg[1])
			if compareKeys(x, y) > 0 {
				seg[0], seg[1] = seg[1], seg[0]
			}
			continue
		}
		buf := grow(a.sortBuf, int(k))
		for j, c := range seg {
			buf[j] = a.key(c)
		}
		slices.SortFunc(buf, compareKeys)
		for j := range buf {
			seg[j] = buf[j].idx
		}
		a.sortBuf = buf
	}
}

func (a *Analyzer) key(c int32) sortKey {
	return sortKey{end: a.end[c], start: a.start[c], id: a.spans[c].SpanID, idx: c}
}
