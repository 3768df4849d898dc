package rollup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/pb/sketchpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// RelativeAccuracy is the sketches' guaranteed relative accuracy: a quantile
// read from a sketch is within 1% of the exact quantile of the values added.
const RelativeAccuracy = 0.01

// sketchMapping is DDSketch's logarithmic index mapping, shared with
// sketches-go so that serialized sketches decode there unchanged.
var sketchMapping = func() *mapping.LogarithmicMapping {
	m, err := mapping.NewLogarithmicMapping(RelativeAccuracy)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return m
}()

// maxCount bounds a sketch's counts: they must stay exact as float64 in the
// sketches-go form.
const maxCount = 1 << 53

// maxSketchBins bounds a decoded sketch's contiguous bins (values from 1ns to
// centuries need about 2,300).
const maxSketchBins = 1 << 14

// Sketch is a DDSketch of durations in nanoseconds with exact integer
// counts, so that it can subtract what it added: a partial aggregate drops a
// replaced trace version without recomputation. Values <= 0 count as zero.
//
// Small sketches keep their bins sparse (sorted index, count pairs) and turn
// dense (contiguous counts) when that is smaller: a key with a handful of
// spans costs a few dozen bytes, not one slot per bin of its value range.
//
// The zero value is an empty sketch. A Sketch is not safe for concurrent use.
type Sketch struct {
	zero  int64 // values <= 0
	n     int64 // total count, zero included
	dense bool
	sp    []bin   // sparse bins, sorted by index (may hold zero counts)
	off   int32   // dense: bin index of bins[0]
	bins  []int64 // dense counts for bin indexes off, off+1, ...
}

type bin struct {
	i int32
	n int64
}

// maxSparse is the most bins a sketch keeps sparse.
const maxSparse = 256

func sketchIndex(v int64) int32 { return int32(sketchMapping.Index(float64(v))) }

// sketchValue is the representative value of a bin, rounded to nanoseconds.
func sketchValue(i int32) int64 { return int64(math.Round(sketchMapping.Value(int(i)))) }

// Add counts v once.
func (s *Sketch) Add(v int64) { s.AddN(v, 1) }

// AddN counts v n times; a negative n removes earlier additions. Removing
// more than was added leaves negative counts, which Valid reports.
func (s *Sketch) AddN(v, n int64) {
	if n == 0 {
		return
	}
	s.n += n
	if v <= 0 {
		s.zero += n
		return
	}
	s.addIndex(sketchIndex(v), n)
}

func (s *Sketch) addIndex(i int32, n int64) {
	if s.dense {
		if i < s.off || int(i-s.off) >= len(s.bins) {
			s.ensure(i, i)
		}
		s.bins[i-s.off] += n
		return
	}
	j := sort.Search(len(s.sp), func(k int) bool { return s.sp[k].i >= i })
	if j < len(s.sp) && s.sp[j].i == i {
		s.sp[j].n += n
		return
	}
	s.sp = append(s.sp, bin{})
	copy(s.sp[j+1:], s.sp[j:])
	s.sp[j] = bin{i, n}
	if k := len(s.sp); k > 8 && (int64(s.sp[k-1].i)-int64(s.sp[0].i)+1 <= 2*int64(k) || k > maxSparse) {
		s.densify()
	}
}

func (s *Sketch) densify() {
	sp := s.sp
	s.dense, s.sp, s.bins = true, nil, nil
	if len(sp) > 0 {
		s.ensure(sp[0].i, sp[len(sp)-1].i)
		for _, b := range sp {
			s.bins[b.i-s.off] += b.n
		}
	}
}

// ensure makes dense bins cover indexes lo..hi, allocating at most once.
func (s *Sketch) ensure(lo, hi int32) {
	if len(s.bins) == 0 {
		n := int(hi-lo) + 1
		if cap(s.bins) >= n {
			s.bins = s.bins[:n]
			clear(s.bins)
		} else {
			s.bins = make([]int64, n, n+8)
		}
		s.off = lo
		return
	}
	curHi := s.off + int32(len(s.bins)) - 1
	if lo >= s.off && hi <= curHi {
		return
	}
	nlo, nhi := min(lo, s.off), max(hi, curHi)
	n := int(nhi-nlo) + 1
	if nlo == s.off && n <= cap(s.bins) {
		old := len(s.bins)
		s.bins = s.bins[:n]
		clear(s.bins[old:])
		return
	}
	nb := make([]int64, n, n+8)
	copy(nb[s.off-nlo:], s.bins)
	s.bins, s.off = nb, nlo
}

// each calls fn for every bin with a non-zero count, by increasing index.
func (s *Sketch) each(fn func(i int32, n int64)) {
	if s.dense {
		for j, c := range s.bins {
			if c != 0 {
				fn(s.off+int32(j), c)
			}
		}
		return
	}
	for _, b := range s.sp {
		if b.n != 0 {
			fn(b.i, b.n)
		}
	}
}

// Count is the number of values counted.
func (s *Sketch) Count() int64 { return s.n }

// Merge adds every value of o.
func (s *Sketch) Merge(o *Sketch) { s.combine(o, 1) }

// Sub removes every value of o (which must have been added before).
func (s *Sketch) Sub(o *Sketch) { s.combine(o, -1) }

func (s *Sketch) combine(o *Sketch, sign int64) {
	s.n += sign * o.n
	s.zero += sign * o.zero
	if o.dense && len(o.bins) > 0 {
		if !s.dense {
			s.densify()
		}
		s.ensure(o.off, o.off+int32(len(o.bins))-1)
		d := int(o.off - s.off)
		for j, c := range o.bins {
			s.bins[d+j] += sign * c
		}
		return
	}
	for _, b := range o.sp {
		if b.n != 0 {
			s.addIndex(b.i, sign*b.n)
		}
	}
}

// Reset empties s, keeping its memory.
func (s *Sketch) Reset() {
	s.zero, s.n = 0, 0
	s.bins = s.bins[:0]
	s.sp = s.sp[:0]
	s.dense = false
}

// Clone returns an independent copy.
func (s *Sketch) Clone() Sketch {
	c := *s
	c.bins = append([]int64(nil), s.bins...)
	c.sp = append([]bin(nil), s.sp...)
	return c
}

// nonZero lists the bins with non-zero counts.
func (s *Sketch) nonZero() []bin {
	var out []bin
	s.each(func(i int32, n int64) { out = append(out, bin{i, n}) })
	return out
}

// Valid reports whether every count is non-negative and they add up.
func (s *Sketch) Valid() bool {
	if s.zero < 0 {
		return false
	}
	t, ok := s.zero, true
	s.each(func(_ int32, n int64) {
		if n < 0 {
			ok = false
		}
		t += n
	})
	return ok && t == s.n
}

// Equal reports whether s and o count the same values.
func (s *Sketch) Equal(o *Sketch) bool {
	if s.n != o.n || s.zero != o.zero {
		return false
	}
	a, b := s.nonZero(), o.nonZero()
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Quantile returns the q-quantile (0 <= q <= 1) in nanoseconds: within
// RelativeAccuracy of the value of rank floor(q*(n-1)) among the counted
// values in ascending order (0 for an empty sketch).
func (s *Sketch) Quantile(q float64) int64 {
	if s.n <= 0 {
		return 0
	}
	q = math.Max(0, math.Min(1, q))
	rank := int64(q * float64(s.n-1)) // the element of 0-based rank floor(q*(n-1))
	cum := s.zero
	if rank < cum {
		return 0
	}
	last := int32(0)
	if s.dense {
		for j, c := range s.bins {
			if c == 0 {
				continue
			}
			cum += c
			last = s.off + int32(j)
			if rank < cum {
				return sketchValue(last)
			}
		}
	} else {
		for _, b := range s.sp {
			if b.n == 0 {
				continue
			}
			cum += b.n
			last = b.i
			if rank < cum {
				return sketchValue(last)
			}
		}
	}
	return sketchValue(last)
}

// AppendBinary appends a compact encoding: the zero count, then either the
// contiguous counts from the first to the last non-empty bin (dense form) or
// (index delta, count) pairs (sparse form), whichever is shorter.
func (s *Sketch) AppendBinary(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(s.zero))
	lo, hi, k := s.nonZeroRange()
	if k == 0 {
		return append(dst, 0, 0, 0) // dense, offset 0, no bins
	}
	span := int64(hi) - int64(lo) + 1
	if span <= 3*int64(k) {
		dst = append(dst, 0)
		dst = binary.AppendVarint(dst, int64(lo))
		dst = binary.AppendUvarint(dst, uint64(span))
		if s.dense {
			for _, c := range s.bins[lo-s.off : hi-s.off+1] {
				dst = binary.AppendUvarint(dst, uint64(c))
			}
			return dst
		}
		next := lo
		for _, b := range s.sp {
			if b.n == 0 {
				continue
			}
			for ; next < b.i; next++ {
				dst = append(dst, 0) // an empty bin: uvarint 0
			}
			dst = binary.AppendUvarint(dst, uint64(b.n))
			next = b.i + 1
		}
		return dst
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(k))
	prev := int64(0)
	s.each(func(i int32, n int64) {
		dst = binary.AppendVarint(dst, int64(i)-prev)
		prev = int64(i)
		dst = binary.AppendUvarint(dst, uint64(n))
	})
	return dst
}

var errSketch = errors.New("malformed sketch")

// decodeSketch reads AppendBinary's form from r. Counts must be positive
// (the encoder writes no empty bins, except inside the dense form).
func decodeSketch(r *reader) (Sketch, error) {
	var s Sketch
	s.zero = r.count()
	mode := r.byte1()
	if r.err != nil {
		return s, r.err
	}
	if s.zero > maxCount {
		return s, fmt.Errorf("%w: count overflow", errSketch)
	}
	s.n = s.zero
	add := func(i int64, c int64) error {
		if i < math.MinInt32 || i > math.MaxInt32 {
			return fmt.Errorf("%w: bin index %d", errSketch, i)
		}
		if c > maxCount || s.n+c > maxCount {
			return fmt.Errorf("%w: count overflow", errSketch)
		}
		if c > 0 {
			s.addIndex(int32(i), c)
			s.n += c
		}
		return nil
	}
	switch mode {
	case 0:
		off := r.varint()
		nb := r.uvarint()
		if r.err != nil {
			return s, r.err
		}
		if nb > maxSketchBins {
			return s, fmt.Errorf("%w: %d bins", errSketch, nb)
		}
		for j := uint64(0); j < nb && r.err == nil; j++ {
			c := r.count()
			if (j == 0 || j == nb-1) && c == 0 {
				return s, fmt.Errorf("%w: empty edge bin", errSketch)
			}
			if err := add(off+int64(j), c); err != nil {
				return s, err
			}
		}
	case 1:
		k := r.uvarint()
		if k > maxSketchBins {
			return s, fmt.Errorf("%w: %d bins", errSketch, k)
		}
		prev := int64(0)
		for j := uint64(0); j < k && r.err == nil; j++ {
			d := r.varint()
			c := r.count()
			if j > 0 && d <= 0 || c == 0 {
				return s, fmt.Errorf("%w: unsorted or empty sparse bin", errSketch)
			}
			prev += d
			if err := add(prev, c); err != nil {
				return s, err
			}
		}
	default:
		return s, fmt.Errorf("%w: form %d", errSketch, mode)
	}
	return s, r.err
}

// ProtoBytes serializes s as a sketches-go DDSketch protobuf message (the
// form model.Distribution.Sketch documents): the bytes the protobuf
// runtime's deterministic marshalling gives (protoBytesReflect, which the
// tests compare it with), written directly, without building the message
// and its bin map (the reduce stage writes one per distribution of every
// rollup it writes).
func (s *Sketch) ProtoBytes() []byte {
	lo, hi, k := s.nonZeroRange()
	dense := k > 0 && int(hi-lo)+1 <= 2*k
	// The positive store's body: sparse map entries (key: zigzag32, field
	// 1; value: double, field 2; 2+5+9 bytes at most each) or the packed
	// contiguous counts (field 2) and their offset (field 3).
	var body int
	switch {
	case k == 0:
	case dense:
		n := 8 * (int(hi-lo) + 1)
		body = 1 + protowire.SizeVarint(uint64(n)) + n
		if lo != 0 {
			body += 1 + protowire.SizeVarint(protowire.EncodeZigZag(int64(lo)))
		}
	default:
		s.each(func(i int32, _ int64) {
			e := 1 + protowire.SizeVarint(protowire.EncodeZigZag(int64(i))) + 1 + 8
			body += 1 + protowire.SizeVarint(uint64(e)) + e
		})
	}
	size := len(sketchMappingProto) + 1 + protowire.SizeVarint(uint64(body)) + body + 2
	if s.zero != 0 {
		size += 9
	}
	b := make([]byte, 0, size)
	b = append(b, sketchMappingProto...)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(body))
	switch {
	case k == 0:
	case dense:
		n := int(hi-lo) + 1
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(8*n))
		next := lo
		s.each(func(i int32, c int64) {
			for ; next < i; next++ {
				b = protowire.AppendFixed64(b, 0)
			}
			b = protowire.AppendFixed64(b, math.Float64bits(float64(c)))
			next = i + 1
		})
		if lo != 0 {
			b = protowire.AppendTag(b, 3, protowire.VarintType)
			b = protowire.AppendVarint(b, protowire.EncodeZigZag(int64(lo)))
		}
	default:
		s.each(func(i int32, c int64) {
			zz := protowire.EncodeZigZag(int64(i))
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(1+protowire.SizeVarint(zz)+1+8))
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, zz)
			b = protowire.AppendTag(b, 2, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(float64(c)))
		})
	}
	b = append(b, 3<<3|byte(protowire.BytesType), 0) // empty negative store
	if s.zero != 0 {
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(float64(s.zero)))
	}
	return b
}

// sketchMappingProto is the DDSketch message's mapping field (1) as the
// protobuf runtime writes it.
var sketchMappingProto = func() []byte {
	m, err := proto.MarshalOptions{Deterministic: true}.Marshal(sketchMapping.ToProto())
	if err != nil {
		panic("BUG: marshal sketch mapping: " + err.Error())
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(m)))
	return append(b, m...)
}()

// nonZeroRange returns the lowest and highest index of the bins with
// non-zero counts and their number (0: none).
func (s *Sketch) nonZeroRange() (lo, hi int32, k int) {
	s.each(func(i int32, _ int64) {
		if k == 0 {
			lo = i
		}
		hi = i
		k++
	})
	return lo, hi, k
}

// protoBytesReflect is ProtoBytes through the protobuf runtime: the
// reference the tests compare ProtoBytes with.
func (s *Sketch) protoBytesReflect() []byte {
	pb := &sketchpb.DDSketch{
		Mapping:        sketchMapping.ToProto(),
		PositiveValues: &sketchpb.Store{},
		NegativeValues: &sketchpb.Store{},
		ZeroCount:      float64(s.zero),
	}
	if nz := s.nonZero(); len(nz) > 0 {
		if span := int(nz[len(nz)-1].i-nz[0].i) + 1; span <= 2*len(nz) {
			st := pb.PositiveValues
			st.ContiguousBinIndexOffset = nz[0].i
			st.ContiguousBinCounts = make([]float64, span)
			for _, b := range nz {
				st.ContiguousBinCounts[b.i-nz[0].i] = float64(b.n)
			}
		} else {
			pb.PositiveValues.BinCounts = make(map[int32]float64, len(nz))
			for _, b := range nz {
				pb.PositiveValues.BinCounts[b.i] = float64(b.n)
			}
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	if err != nil {
		panic("BUG: marshal sketch: " + err.Error())
	}
	return b
}

// SketchFromProto reads ProtoBytes's form. It rejects sketches with another
// mapping, negative values, or counts that are not whole numbers.
func SketchFromProto(b []byte) (Sketch, error) {
	var s Sketch
	if len(b) == 0 {
		return s, nil
	}
	var pb sketchpb.DDSketch
	if err := proto.Unmarshal(b, &pb); err != nil {
		return s, fmt.Errorf("%w: %v", errSketch, err)
	}
	if pb.Mapping != nil {
		m, err := mapping.FromProto(pb.Mapping)
		if err != nil || !m.Equals(sketchMapping) {
			return s, fmt.Errorf("%w: unsupported index mapping", errSketch)
		}
	}
	if st := pb.NegativeValues; st != nil && (len(st.BinCounts) > 0 || len(st.ContiguousBinCounts) > 0) {
		return s, fmt.Errorf("%w: negative values", errSketch)
	}
	whole := func(f float64) (int64, error) {
		if f < 0 || f != math.Trunc(f) || f > maxCount {
			return 0, fmt.Errorf("%w: count %v", errSketch, f)
		}
		return int64(f), nil
	}
	z, err := whole(pb.ZeroCount)
	if err != nil {
		return s, err
	}
	s.zero, s.n = z, z
	if st := pb.PositiveValues; st != nil {
		if len(st.ContiguousBinCounts) > maxSketchBins || len(st.BinCounts) > maxSketchBins {
			return s, fmt.Errorf("%w: too many bins", errSketch)
		}
		// Bound the index range before allocating dense bins for it.
		lo, hi := int64(math.MaxInt32), int64(math.MinInt32)
		if n := len(st.ContiguousBinCounts); n > 0 {
			lo = int64(st.ContiguousBinIndexOffset)
			hi = lo + int64(n) - 1
		}
		for i := range st.BinCounts {
			lo, hi = min(lo, int64(i)), max(hi, int64(i))
		}
		if hi >= lo && (hi-lo >= maxSketchBins || hi > math.MaxInt32) {
			return s, fmt.Errorf("%w: bins span too wide", errSketch)
		}
		for j, f := range st.ContiguousBinCounts {
			c, err := whole(f)
			if err != nil {
				return s, err
			}
			if c > 0 {
				s.addIndex(st.ContiguousBinIndexOffset+int32(j), c)
				s.n += c
			}
		}
		for i, f := range st.BinCounts {
			c, err := whole(f)
			if err != nil {
				return s, err
			}
			if c > 0 {
				s.addIndex(i, c)
				s.n += c
			}
		}
	}
	return s, nil
}

// durQuantiles reads the standard quantiles of a distribution.
func durQuantiles(s *Sketch, max int64) (p50, p90, p95, p99, mx time.Duration) {
	return time.Duration(s.Quantile(0.5)), time.Duration(s.Quantile(0.9)),
		time.Duration(s.Quantile(0.95)), time.Duration(s.Quantile(0.99)), time.Duration(max)
}
