// Package procset deduplicates model.Process values: the Jaeger UI document
// names each distinct process of a trace once, and OTLP writes one
// ResourceSpans per distinct process. Lookups hash the process, so adding n
// spans costs O(n) on average however many processes there are.
package procset

import (
	"hash/maphash"

	"github.com/tracepipe/tracepipe/model"
)

// Set numbers distinct processes 0, 1, 2, ... in order of first Add. The
// zero Set is not usable; use New. A Set keeps pointers to the processes it
// was given, which must not change while it is in use.
type Set struct {
	seed  maphash.Seed
	byKey map[uint64][]int
	procs []*model.Process
	last  int // index of the last process added, for runs of spans of one process
}

// New returns an empty set.
func New() *Set {
	return &Set{seed: maphash.MakeSeed(), byKey: map[uint64][]int{}, last: -1}
}

// Add returns the index of p's process, adding it if no equal process is
// in the set yet.
func (s *Set) Add(p *model.Process) (index int, added bool) {
	if s.last >= 0 && (s.procs[s.last] == p || Equal(s.procs[s.last], p)) {
		return s.last, false
	}
	h := s.hash(p)
	for _, i := range s.byKey[h] {
		if Equal(s.procs[i], p) {
			s.last = i
			return i, false
		}
	}
	s.procs = append(s.procs, p)
	i := len(s.procs) - 1
	s.byKey[h] = append(s.byKey[h], i)
	s.last = i
	return i, true
}

// Len is the number of distinct processes.
func (s *Set) Len() int { return len(s.procs) }

// Get returns process i.
func (s *Set) Get(i int) *model.Process { return s.procs[i] }

func (s *Set) hash(p *model.Process) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(p.ServiceName)
	for i := range p.Tags {
		kv := &p.Tags[i]
		h.WriteByte(0)
		h.WriteString(kv.Key)
		h.WriteByte(byte(kv.Type))
		h.WriteString(kv.Str)
		var n [8]byte
		for j := range n {
			n[j] = byte(uint64(kv.Num) >> (8 * j))
		}
		h.Write(n[:])
	}
	return h.Sum64()
}

// Equal reports whether two processes have the same service and the same
// tags in the same order.
func Equal(a, b *model.Process) bool {
	if a.ServiceName != b.ServiceName || len(a.Tags) != len(b.Tags) {
		return false
	}
	for i := range a.Tags {
		x, y := &a.Tags[i], &b.Tags[i]
		if x.Key != y.Key || x.Type != y.Type || x.Str != y.Str || x.Num != y.Num {
			return false
		}
	}
	return true
}
