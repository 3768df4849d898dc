package dag

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/tracepipe/tracepipe/model"
)

// Per-host clock offsets (ClockSkewHostOffsets, the default): see the
// package documentation and docs/clock-skew.md.
//
// Every blocking parent→child edge between two hosts P and C bounds the
// offset between their clocks: the child ran inside its parent, so
// x_C − x_P ∈ [child end − parent end, child start − parent start], where x_H
// is how far host H's clock is ahead. These are difference constraints: the
// shortest distances from and to the reference host (the main root's) in
// their graph give each host's feasible offset interval relative to it. Hosts
// linked to the reference host are fixed one at a time, in host-name order,
// each at a point of its current feasible interval, which keeps the system
// feasible for the hosts after it. The same distances over the
// client→server pairs alone give the interval whose centre is the estimate
// when a host has such pairs.
//
// solveSparse keeps only those distances, relaxing from each fixed host (the
// graph has about as many pairs as hosts, so this is near linear). When the
// system has no solution (a negative cycle), solveDense keeps all-pairs
// distances instead, O(h²) per edge for h hosts, adds the pairs tightest
// first and leaves out those contradicting the ones before them.

// forceDense makes hostOffsets use solveDense only (tests compare both).
var forceDense = false

// maxSkewHosts bounds the hosts of one trace solved for offsets (the solver is
// cubic in hosts); a trace with more distinct hosts falls back to per-span
// repair.
const maxSkewHosts = 96

const inf = int64(math.MaxInt64 / 4)

// minHop is the least distance kept between a host's spans and their parents'
// edges when the host's offset is only bounded, not estimated: about one
// network hop.
const minHop = int64(100 * time.Microsecond)

type hostKey struct {
	kind uint8 // 0 none, 1 name, 2 ip
	id   hostID
}

func keyOf(h *hostID) hostKey {
	switch {
	case h.hasName:
		return hostKey{kind: 1, id: hostID{name: h.name}}
	case h.hasIP:
		return hostKey{kind: 2, id: hostID{ip: h.ip, ipRaw: h.ipRaw}}
	}
	return hostKey{}
}

// skewSolver is the scratch state of the per-host solver, kept in Analyzer.
type skewSolver struct {
	hostOf  []int32   // span -> host index
	keys    []hostKey // host index -> key
	first   []int32   // host index -> a span on it (for names in messages)
	h       int
	all     []int64 // h*h shortest distances, every constraint
	rpc     []int64 // h*h shortest distances, client→server constraints only
	lo, hi  []int64 // h*h aggregated interval of x_v − x_u per pair (u < v)
	isRPC   []bool  // h*h: pair has client→server evidence
	pairs   []int32 // h*h: number of edges on the pair
	order   []int32
	remap   []int32
	tagPtr  []*model.KeyValue // process tag arrays seen, with their host
	tagIdx  []int32
	sorted  []hostKey
	notes   []string
	count   []int32
	offset  []int64
	visited []bool
	edges   []wedge
	fwd     adjacency // out-edges
	bwd     adjacency // in-edges
	dFrom   []int64   // shortest distance from the reference host, every pair
	dTo     []int64   // shortest distance to the reference host, every pair
	rFrom   []int64   // the same over client→server pairs and fixed hosts
	rTo     []int64
	queue   []int32
	inQueue []bool
	pushes  []int32
	rank    []sortPair
}

type sortPair struct {
	u, v  int32
	width int64
}

// internHosts gives every span a host index, hosts being numbered in the
// order of their keys (so the result does not depend on the order of the
// spans). It reports the number of hosts.
func (a *Analyzer) internHosts() int {
	s := &a.sk
	s.hostOf = grow(s.hostOf, a.n)
	s.keys = s.keys[:0]
	s.tagPtr = s.tagPtr[:0]
	for i := range a.n {
		// Spans of one process usually share its tag array: recognise it
		// before parsing the tags.
		tp := unsafe.SliceData(a.spans[i].Process.Tags)
		idx := int32(-1)
		if tp != nil {
			for j, p := range s.tagPtr {
				if p == tp {
					idx = s.tagIdx[j]
					break
				}
			}
		}
		if idx >= 0 {
			s.hostOf[i] = idx
			continue
		}
		k := keyOf(a.host(int32(i)))
		for j := range s.keys {
			if s.keys[j] == k {
				idx = int32(j)
				break
			}
		}
		if idx < 0 {
			idx = int32(len(s.keys))
			s.keys = append(s.keys, k)
		}
		if tp != nil && len(s.tagPtr) < 64 {
			s.tagPtr = append(s.tagPtr, tp)
			s.tagIdx = append(s.tagIdx[:len(s.tagPtr)-1], idx)
		}
		s.hostOf[i] = idx
	}
	clear(s.tagPtr)
	h := len(s.keys)
	// Renumber by key order.
	s.order = grow(s.order, h)
	for i := range s.order {
		s.order[i] = int32(i)
	}
	slices.SortFunc(s.order, func(x, y int32) int { return compareHostKeys(&s.keys[x], &s.keys[y]) })
	s.remap = grow(s.remap, h)
	for newIdx, old := range s.order {
		s.remap[old] = int32(newIdx)
	}
	sorted := grow(s.sorted, h)
	for old := range h {
		sorted[s.remap[old]] = s.keys[old]
	}
	s.keys, s.sorted = sorted, s.keys
	s.first = grow(s.first, h)
	for i := range s.first {
		s.first[i] = -1
	}
	for i := range a.n {
		v := s.remap[s.hostOf[i]]
		s.hostOf[i] = v
		if f := s.first[v]; f < 0 || a.spans[i].SpanID < a.spans[f].SpanID {
			s.first[v] = int32(i)
		}
	}
	return h
}

func compareHostKeys(x, y *hostKey) int {
	if x.kind != y.kind {
		return int(x.kind) - int(y.kind)
	}
	if c := strings.Compare(x.id.name, y.id.name); c != 0 {
		return c
	}
	if c := x.id.ip.Compare(y.id.ip); c != 0 {
		return c
	}
	return strings.Compare(x.id.ipRaw, y.id.ipRaw)
}

// hostOffsets estimates and applies per-host offsets. It reports false when
// the trace has too many hosts for the solver (nothing was changed).
func (a *Analyzer) hostOffsets(ref int32) bool {
	n := a.n
	s := &a.sk
	// Cheap exit: when every blocking child fits its parent (most traces,
	// and every re-analysis), offset 0 for every host satisfies every
	// constraint, and the solver would fix every host at 0.
	misfit := false
	for i := range n {
		p := a.parent[i]
		if p < 0 || a.flag[i]&fBlocking == 0 || (a.start[i] >= a.start[p] && a.end[i] <= a.end[p]) {
			continue
		}
		if !a.sameHost(int32(i), p) {
			misfit = true
			break
		}
	}
	if !misfit {
		return true
	}
	h := a.internHosts()
	if h > maxSkewHosts {
		return false
	}
	s.h = h
	hh := h * h
	s.lo, s.hi = grow(s.lo, hh), grow(s.hi, hh)
	s.isRPC, s.pairs = grow(s.isRPC, hh), grow(s.pairs, hh)
	clear(s.pairs)
	clear(s.isRPC)
	for i := range n {
		p := a.parent[i]
		if p < 0 || a.flag[i]&fBlocking == 0 {
			continue
		}
		u, v := s.hostOf[p], s.hostOf[i]
		if u == v {
			continue
		}
		// x_v − x_u ∈ [lo, hi]. A child longer than its parent cannot fit
		// it: only its start bounds the offset.
		lo, hi := subSat(a.end[i], a.end[p]), subSat(a.start[i], a.start[p])
		if subSat(a.end[i], a.start[i]) > subSat(a.end[p], a.start[p]) {
			lo = -inf
		}
		if u > v {
			u, v, lo, hi = v, u, negSat(hi), negSat(lo)
		}
		k := int(u)*h + int(v)
		if s.pairs[k] == 0 {
			s.lo[k], s.hi[k] = lo, hi
		} else {
			s.lo[k], s.hi[k] = max(s.lo[k], lo), min(s.hi[k], hi)
		}
		s.pairs[k]++
		if a.spans[i].Kind == model.KindServer && a.spans[p].Kind == model.KindClient {
			s.isRPC[k] = true
		}
	}
	for u := range h {
		for v := u + 1; v < h; v++ {
			if k := u*h + v; s.pairs[k] > 0 && s.lo[k] > s.hi[k] {
				a.warnf(model.WarnClockSkew, a.spans[s.first[v]].SpanID,
					"clock offset of host %s relative to %s: its %d parent/child pairs conflict (no offset fits them all); spans repaired one by one",
					a.host(s.first[v]), a.host(s.first[u]), s.pairs[k])
			}
		}
	}
	// The hosts linked to the reference host by pairs are fixed in order.
	s.offset = grow(s.offset, h)
	s.visited = grow(s.visited, h)
	clear(s.offset)
	clear(s.visited)
	r := int(s.hostOf[ref])
	s.order = append(s.order[:0], int32(r))
	s.visited[r] = true
	for q := 0; q < len(s.order); q++ {
		u := int(s.order[q])
		for v := range h {
			if !s.visited[v] && s.pairs[pairIndex(u, v, h)] > 0 {
				s.visited[v] = true
				s.order = append(s.order, int32(v))
			}
		}
	}
	// The reference host's component in host-name order (measured better
	// than breadth-first order: docs/clock-skew.md).
	slices.Sort(s.order[1:])
	if forceDense || !a.solveSparse(r) {
		a.solveDense(r)
	}
	// Apply: one shift per host.
	s.count = grow(s.count, h)
	clear(s.count)
	for i := range n {
		s.count[s.hostOf[i]]++
	}
	s.notes = grow(s.notes, h)
	for v := range h {
		x := s.offset[v]
		s.notes[v] = ""
		if x == 0 {
			continue
		}
		// One message serves as the warning and as the note on every
		// moved span.
		s.notes[v] = "clock skew: host " + a.host(s.first[v]).String() + "'s clock offset estimated at " + time.Duration(x).String() +
			" relative to host " + a.host(s.first[r]).String() + " from the trace's cross-host parent/child pairs; its " +
			strconv.Itoa(int(s.count[v])) + " spans shifted by " + time.Duration(-x).String()
		a.warn(model.WarnClockSkew, a.spans[s.first[v]].SpanID, s.notes[v])
	}
	for i := range n {
		v := s.hostOf[i]
		if x := s.offset[v]; x != 0 {
			a.shiftSpan(int32(i), -x, s.notes[v])
		}
	}
	clear(s.notes)
	return true
}

// choose picks host v's offset relative to the reference host from its
// feasible interval [lb, ub] and the interval [rl, ru] its client→server
// pairs allow (see the package documentation). It reports false when the
// host is to be left alone (its offset would exceed MaxClockSkewAdjust).
func (a *Analyzer) choose(lb, ub, rl, ru int64) (int64, bool) {
	if lb < 0 && 0 < ub {
		// The host's spans fit as they are: its clock is believed. (Flush
		// with a parent's edge is not believed: a request crossing hosts
		// takes time.)
		return 0, true
	}
	// Keep a network hop between the host's spans and their parents' edges
	// when there is room: a child flush with its parent's start or end would
	// erase the parent's section before or after it.
	g := int64(0)
	if lb > -inf && ub < inf {
		g = min((ub-lb)/2, minHop)
	}
	x := int64(0)
	if rl > -inf && ru < inf {
		// Client→server pairs: the centre of their interval.
		x = rl + (ru-rl)/2
	}
	// Else only bounds: the least shift that fits.
	x = a.grid(min(max(x, lb+g), ub-g))
	if x < lb {
		x = lb // lb is a multiple of the resolution
	}
	if max(x, -x) > int64(a.opts.MaxClockSkewAdjust) {
		return 0, false // left to the span-by-span repair, which warns
	}
	return x, true
}

// solveDense fixes the hosts in s.order with all-pairs shortest paths kept up
// to date edge by edge (O(h²) per edge): pairs are added tightest first and a
// pair contradicting the ones before it is left out with a warning. It is the
// fallback of solveSparse for systems with conflicts.
func (a *Analyzer) solveDense(r int) {
	s := &a.sk
	h := s.h
	hh := h * h
	s.all, s.rpc = grow(s.all, hh), grow(s.rpc, hh)
	for i := range hh {
		s.all[i], s.rpc[i] = inf, inf
	}
	for i := range h {
		s.all[i*h+i], s.rpc[i*h+i] = 0, 0
	}
	s.rank = s.rank[:0]
	for u := range h {
		for v := u + 1; v < h; v++ {
			if k := u*h + v; s.pairs[k] > 0 && s.lo[k] <= s.hi[k] {
				s.rank = append(s.rank, sortPair{int32(u), int32(v), subSat(s.hi[k], s.lo[k])})
			}
		}
	}
	slices.SortFunc(s.rank, func(x, y sortPair) int {
		if x.width != y.width {
			if x.width < y.width {
				return -1
			}
			return 1
		}
		if x.u != y.u {
			return int(x.u - y.u)
		}
		return int(x.v - y.v)
	})
	for _, pr := range s.rank {
		u, v := int(pr.u), int(pr.v)
		k := u*h + v
		if !s.addInterval(s.all, u, v, s.lo[k], s.hi[k]) {
			a.warnf(model.WarnClockSkew, a.spans[s.first[v]].SpanID,
				"clock offset of host %s relative to %s: its %d parent/child pairs conflict with the other hosts' pairs; left out",
				a.host(s.first[v]), a.host(s.first[u]), s.pairs[k])
			continue
		}
		if s.isRPC[k] {
			s.addInterval(s.rpc, u, v, s.lo[k], s.hi[k])
		}
	}
	for _, hv := range s.order[1:] {
		v := int(hv)
		lb, ub := negSat(s.all[v*h+r]), s.all[r*h+v]
		x, ok := a.choose(lb, ub, negSat(s.rpc[v*h+r]), s.rpc[r*h+v])
		if !ok {
			continue
		}
		s.fix(v, r, x)
		s.offset[v] = x
	}
}

// solveSparse fixes the hosts in s.order keeping only the shortest distances
// from and to the reference host, updated by relaxation from each fixed host
// (the constraint graph has about as many pairs as hosts). It gives the same
// offsets as solveDense when no pair conflicts with the others, and reports
// false, having changed nothing but scratch, when one does (a negative
// cycle).
func (a *Analyzer) solveSparse(r int) bool {
	s := &a.sk
	h := s.h
	// Edges: for each pair u < v with x_v − x_u ∈ [lo, hi], u→v of weight
	// hi and v→u of weight −lo (edge u→v of weight w: x_v − x_u ≤ w).
	s.edges = s.edges[:0]
	for u := range h {
		for v := u + 1; v < h; v++ {
			k := u*h + v
			if s.pairs[k] == 0 || s.lo[k] > s.hi[k] {
				continue
			}
			if s.hi[k] < inf {
				s.edges = append(s.edges, wedge{int32(u), int32(v), s.hi[k], s.isRPC[k]})
			}
			if s.lo[k] > -inf {
				s.edges = append(s.edges, wedge{int32(v), int32(u), negSat(s.lo[k]), s.isRPC[k]})
			}
		}
	}
	s.fwd.build(s.edges, h, false)
	s.bwd.build(s.edges, h, true)
	s.dFrom, s.dTo = grow(s.dFrom, h), grow(s.dTo, h)
	s.rFrom, s.rTo = grow(s.rFrom, h), grow(s.rTo, h)
	for i := range h {
		s.dFrom[i], s.dTo[i], s.rFrom[i], s.rTo[i] = inf, inf, inf, inf
	}
	s.dFrom[r], s.dTo[r], s.rFrom[r], s.rTo[r] = 0, 0, 0, 0
	if !s.relax(&s.fwd, s.dFrom, r, false) || !s.relax(&s.bwd, s.dTo, r, false) {
		return false
	}
	s.relax(&s.fwd, s.rFrom, r, true)
	s.relax(&s.bwd, s.rTo, r, true)
	for _, hv := range s.order[1:] {
		v := int(hv)
		x, ok := a.choose(negSat(s.dTo[v]), s.dFrom[v], negSat(s.rTo[v]), s.rFrom[v])
		if !ok {
			continue
		}
		s.offset[v] = x
		// x_v − x_r = x: edges r→v (x) and v→r (−x).
		if x < s.dFrom[v] {
			s.dFrom[v] = x
			s.relax(&s.fwd, s.dFrom, v, false)
		}
		if -x < s.dTo[v] {
			s.dTo[v] = -x
			s.relax(&s.bwd, s.dTo, v, false)
		}
		if x < s.rFrom[v] {
			s.rFrom[v] = x
			s.relax(&s.fwd, s.rFrom, v, true)
		}
		if -x < s.rTo[v] {
			s.rTo[v] = -x
			s.relax(&s.bwd, s.rTo, v, true)
		}
	}
	return true
}

// wedge is a weighted constraint edge.
type wedge struct {
	from, to int32
	w        int64
	rpc      bool
}

// adjacency is a CSR adjacency list of constraint edges.
type adjacency struct {
	off []int32
	to  []int32
	w   []int64
	rpc []bool
	pos []int32 // scratch
}

// build fills g with edges (reversed when rev: in-edges).
func (g *adjacency) build(edges []wedge, h int, rev bool) {
	g.off = grow(g.off, h+1)
	clear(g.off)
	for _, e := range edges {
		f := e.from
		if rev {
			f = e.to
		}
		g.off[f+1]++
	}
	for i := 1; i <= h; i++ {
		g.off[i] += g.off[i-1]
	}
	g.to, g.w, g.rpc = grow(g.to, len(edges)), grow(g.w, len(edges)), grow(g.rpc, len(edges))
	g.pos = grow(g.pos, h)
	pos := g.pos
	copy(pos, g.off[:h])
	for _, e := range edges {
		f, t := e.from, e.to
		if rev {
			f, t = t, f
		}
		g.to[pos[f]], g.w[pos[f]], g.rpc[pos[f]] = t, e.w, e.rpc
		pos[f]++
	}
}

// relax propagates improved distances d from node src along g's edges (only
// the client→server ones when rpcOnly), breadth first with a queue. It
// reports false if a node is improved more than h times: a negative cycle.
func (s *skewSolver) relax(g *adjacency, d []int64, src int, rpcOnly bool) bool {
	h := s.h
	s.queue = append(s.queue[:0], int32(src))
	s.inQueue = grow(s.inQueue, h)
	clear(s.inQueue)
	s.pushes = grow(s.pushes, h)
	clear(s.pushes)
	s.inQueue[src] = true
	for q := 0; q < len(s.queue); q++ {
		u := s.queue[q]
		s.inQueue[u] = false
		du := d[u]
		for k := g.off[u]; k < g.off[u+1]; k++ {
			if rpcOnly && !g.rpc[k] {
				continue
			}
			v := g.to[k]
			if c := sat(du + g.w[k]); c < d[v] {
				d[v] = c
				if !s.inQueue[v] {
					if s.pushes[v]++; int(s.pushes[v]) > h {
						return false
					}
					s.inQueue[v] = true
					s.queue = append(s.queue, v)
				}
			}
		}
	}
	return true
}

// addInterval adds x_v − x_u ∈ [lo, hi] to the distance matrix d and updates
// the shortest paths. It reports false, leaving d as it was, if the interval
// contradicts d.
func (s *skewSolver) addInterval(d []int64, u, v int, lo, hi int64) bool {
	h := s.h
	// Current implied interval of x_v − x_u is [−d[v][u], d[u][v]].
	if hi < negSat(d[v*h+u]) || lo > d[u*h+v] {
		return false
	}
	s.addEdge(d, u, v, hi)
	s.addEdge(d, v, u, negSat(lo))
	return true
}

// addEdge adds x_v − x_u ≤ w (edge u→v of weight w) and updates the all-pairs
// shortest paths in O(h²).
func (s *skewSolver) addEdge(d []int64, u, v int, w int64) {
	h := s.h
	w = max(w, -inf)
	if w >= d[u*h+v] {
		return
	}
	for i := range h {
		diu := d[i*h+u]
		if diu >= inf {
			continue
		}
		base := diu + w
		row := d[i*h : i*h+h]
		vrow := d[v*h : v*h+h]
		for j, dvj := range vrow {
			if dvj >= inf {
				continue
			}
			if c := max(base+dvj, -inf); c < row[j] {
				row[j] = c
			}
		}
	}
}

// fix sets x_v − x_r = x in both systems.
func (s *skewSolver) fix(v, r int, x int64) {
	s.addEdge(s.all, r, v, x)
	s.addEdge(s.all, v, r, -x)
	s.addEdge(s.rpc, r, v, x)
	s.addEdge(s.rpc, v, r, -x)
}

// pairIndex is the index of the pair of hosts u and v in the h×h matrices
// (upper triangle).
func pairIndex(u, v, h int) int {
	if u > v {
		u, v = v, u
	}
	return u*h + v
}

// sat clamps x to [−inf, inf].
func sat(x int64) int64 { return min(max(x, -inf), inf) }

func negSat(x int64) int64 {
	if x <= -inf {
		return inf
	}
	if x >= inf {
		return -inf
	}
	return -x
}

// shiftSpan moves span c (its times and its logs') by delta and records the
// note on it; moveSpan also remembers the shift for the span's children.
func (a *Analyzer) shiftSpan(c int32, delta int64, note string) {
	a.start[c] = addSat(a.start[c], delta)
	a.end[c] = addSat(a.end[c], delta)
	s := a.spans[c]
	s.Start = model.Timestamp(addSat(int64(s.Start), delta))
	for k := range s.Logs {
		s.Logs[k].Timestamp = model.Timestamp(addSat(int64(s.Logs[k].Timestamp), delta))
	}
	s.Warnings = append(s.Warnings, note)
}
