package rollup

import (
	"encoding/binary"
	"hash/fnv"
	"sort"

	"github.com/tracepipe/tracepipe/model"
)

// Family is a group of rollup keys that differ only in dimension values: an
// operation of a service with its span kind, or a service edge.
type Family struct {
	Edge      bool
	Service   string // edges: the caller service
	Operation string // edges: the callee service
	Kind      model.SpanKind
}

// familyLess is the order of families in outputs.
func familyLess(a, b Family) bool {
	if a.Edge != b.Edge {
		return !a.Edge
	}
	if a.Service != b.Service {
		return a.Service < b.Service
	}
	if a.Operation != b.Operation {
		return a.Operation < b.Operation
	}
	return a.Kind < b.Kind
}

// Key is a family plus one value per configured dimension (Config order),
// encoded in Dims as length-prefixed strings so that Key is comparable.
// Edges have no dimensions.
type Key struct {
	Family
	Dims string
}

// appendDimValue appends one value to a Dims encoding.
func appendDimValue(dst []byte, v string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

// dimValues decodes a Dims string into dst (reused).
func dimValues(dims string, dst []string) []string {
	dst = dst[:0]
	for len(dims) > 0 {
		var n uint64
		k, shift := 0, uint(0)
		for k < len(dims) && k < binary.MaxVarintLen64 {
			c := dims[k]
			k++
			n |= uint64(c&0x7f) << shift
			if c < 0x80 {
				break
			}
			shift += 7
		}
		if uint64(len(dims)-k) < n {
			break // cannot happen: Dims are built by encodeDims
		}
		dst = append(dst, dims[k:k+int(n)])
		dims = dims[k+int(n):]
	}
	return dst
}

// encodeDims builds a Dims string from values.
func encodeDims(values []string) string {
	var b []byte
	for _, v := range values {
		b = appendDimValue(b, v)
	}
	return string(b)
}

// valueHash ranks dimension values for the cardinality limit.
func valueHash(v string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(v))
	return h.Sum64()
}

// folder applies the cardinality limit to the keys of one family in one
// window: per dimension, the limit values with the smallest (hash, value)
// keep their own keys and the others become Overflow; "" always keeps its
// own key.
//
// Ranking by hash makes the admitted set a bottom-k sample, which composes:
// the values admitted in a union of trace sets are exactly the bottom-k of
// the values admitted in each part (a value among the union's k smallest is
// among each part's k smallest). So partitions, partials and coarser windows
// can each fold locally and the merge still equals folding all the data at
// once, whatever the split.
type folder struct {
	ndims, limit int
	vals         []string
	sets         []map[string]struct{}
	admit        []map[string]bool
}

func newFolder(ndims, limit int) *folder {
	f := &folder{ndims: ndims, limit: limit}
	f.sets = make([]map[string]struct{}, ndims)
	f.admit = make([]map[string]bool, ndims)
	return f
}

// reset prepares for a new family.
func (f *folder) reset() {
	for i := range f.sets {
		if f.sets[i] == nil {
			f.sets[i] = map[string]struct{}{}
			f.admit[i] = map[string]bool{}
		}
		clear(f.sets[i])
		clear(f.admit[i])
	}
}

// observe records the values of one key's Dims.
func (f *folder) observe(dims string) {
	f.vals = dimValues(dims, f.vals)
	for i, v := range f.vals {
		if i < f.ndims && v != "" && v != Overflow {
			f.sets[i][v] = struct{}{}
		}
	}
}

type rankedValue struct {
	h uint64
	v string
}

// decide computes the admitted sets after every observe.
func (f *folder) decide() {
	var rs []rankedValue
	for i, set := range f.sets[:f.ndims] {
		if len(set) <= f.limit {
			for v := range set {
				f.admit[i][v] = true
			}
			continue
		}
		rs = rs[:0]
		for v := range set {
			rs = append(rs, rankedValue{valueHash(v), v})
		}
		sort.Slice(rs, func(a, b int) bool {
			if rs[a].h != rs[b].h {
				return rs[a].h < rs[b].h
			}
			return rs[a].v < rs[b].v
		})
		for _, r := range rs[:f.limit] {
			f.admit[i][r.v] = true
		}
	}
}

// fold maps a Dims string to its folded form; the bool reports whether some
// value overflowed.
func (f *folder) fold(dims string) (string, bool) {
	if f.ndims == 0 {
		return dims, false
	}
	f.vals = dimValues(dims, f.vals)
	changed := false
	for i, v := range f.vals {
		if i < f.ndims && v != "" && !f.admit[i][v] {
			if v != Overflow {
				changed = true
			}
			f.vals[i] = Overflow
		}
	}
	if !changed {
		return dims, false
	}
	return encodeDims(f.vals), true
}

// foldStats folds a family's stats (Dims -> stats) into a new map, merging
// keys that fold together. overflowed counts source keys that overflowed.
// With owned, the stats of in may be reused and changed; otherwise they
// are copied.
func (f *folder) foldStats(in map[string]*Stats, k int, owned bool) (out map[string]*Stats, overflowed int) {
	f.reset()
	for dims, s := range in {
		if !s.IsZero() {
			f.observe(dims)
		}
	}
	f.decide()
	out = make(map[string]*Stats, len(in))
	for dims, s := range in {
		if s.IsZero() {
			continue
		}
		fd, of := f.fold(dims)
		if of {
			overflowed++
		}
		if t := out[fd]; t != nil {
			t.Merge(s, k)
		} else if owned {
			out[fd] = s
		} else {
			c := s.Clone()
			out[fd] = &c
		}
	}
	return out, overflowed
}

// dimensionsOf renders a key's dimensions sorted by name, as model.Rollup
// wants them.
func dimensionsOf(names []string, dims string) []model.Dimension {
	if len(names) == 0 {
		return nil
	}
	vals := dimValues(dims, nil)
	out := make([]model.Dimension, 0, len(names))
	for i, n := range names {
		v := ""
		if i < len(vals) {
			v = vals[i]
		}
		out = append(out, model.Dimension{Name: n, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// dimsFromModel is dimensionsOf's inverse: values in names order.
func dimsFromModel(names []string, ds []model.Dimension) string {
	vals := make([]string, len(names))
	for i, n := range names {
		for _, d := range ds {
			if d.Name == n {
				vals[i] = d.Value
			}
		}
	}
	return encodeDims(vals)
}
