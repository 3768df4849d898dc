package rollup

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/pb/sketchpb"
	"google.golang.org/protobuf/proto"
)

// exactQuantile is the reference the sketch promises to approximate: the
// value of rank floor(q*(n-1)) in ascending order.
func exactQuantile(sorted []int64, q float64) int64 {
	return sorted[int(q*float64(len(sorted)-1))]
}

// withinAccuracy allows the sketch's relative error plus half a nanosecond
// of rounding.
func withinAccuracy(got, want int64) bool {
	return math.Abs(float64(got-want)) <= RelativeAccuracy*float64(want)+0.5
}

var quantilesToCheck = []float64{0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1}

func TestSketchAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := []struct {
		name string
		gen  func() int64
	}{
		{"uniform 1ms-100ms", func() int64 { return 1e6 + rng.Int64N(99e6) }},
		{"lognormal around 5ms", func() int64 { return int64(5e6 * math.Exp(rng.NormFloat64())) }},
		{"exponential mean 20ms", func() int64 { return int64(rng.ExpFloat64() * 20e6) }},
		{"pareto heavy tail", func() int64 { return int64(1e5 / math.Pow(1-rng.Float64(), 1/1.2)) }},
		{"bimodal fast cache, slow db", func() int64 {
			if rng.IntN(10) < 8 {
				return 200e3 + rng.Int64N(100e3)
			}
			return 50e6 + rng.Int64N(200e6)
		}},
		{"tiny values (ns) and zeros", func() int64 { return rng.Int64N(300) }},
		{"constant", func() int64 { return 42e6 }},
		{"nine decades", func() int64 { return int64(math.Pow(10, 1+9*rng.Float64())) }},
	}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			for _, n := range []int{1, 2, 10, 1000, 100000} {
				var s Sketch
				vals := make([]int64, n)
				for i := range vals {
					vals[i] = d.gen()
					s.Add(vals[i])
				}
				slices.Sort(vals)
				for _, q := range quantilesToCheck {
					got, want := s.Quantile(q), exactQuantile(vals, q)
					if !withinAccuracy(got, want) {
						t.Errorf("n=%d q=%v: sketch %d, exact %d (%.3f%% off)", n, q, got, want, 100*math.Abs(float64(got-want))/float64(want))
					}
				}
			}
		})
	}
}

func TestSketchMergeSubEqual(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b Sketch
	var av []int64
	for i := 0; i < 5000; i++ {
		v := int64(rng.ExpFloat64() * 1e7)
		all.Add(v)
		if i%3 == 0 {
			a.Add(v)
			av = append(av, v)
		} else {
			b.Add(v)
		}
	}
	m := a.Clone()
	m.Merge(&b)
	if !m.Equal(&all) {
		t.Fatal("a+b != all")
	}
	m.Sub(&b)
	if !m.Equal(&a) || !m.Valid() {
		t.Fatal("a+b-b != a")
	}
	for _, v := range av {
		m.AddN(v, -1)
	}
	if m.Count() != 0 || !m.Valid() || m.Quantile(0.5) != 0 {
		t.Fatalf("emptied sketch: count %d valid %v", m.Count(), m.Valid())
	}
	var empty Sketch
	if !m.Equal(&empty) {
		t.Fatal("emptied sketch differs from a new one")
	}
	m.AddN(5, -1)
	if m.Valid() {
		t.Fatal("over-removal not reported")
	}
}

func TestSketchBinaryRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 3000} {
		var s Sketch
		for i := 0; i < n; i++ {
			s.Add(rng.Int64N(1e9) - 1e6) // some zeros/negatives
		}
		b := s.AppendBinary(nil)
		got, err := decodeSketch(&reader{b: b})
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !got.Equal(&s) {
			t.Fatalf("n=%d: round trip differs", n)
		}
	}
}

// TestSketchProtoInterop checks that ProtoBytes is a sketches-go DDSketch:
// sketches-go decodes it and reads the same quantiles, and we read back
// what sketches-go itself serializes.
func TestSketchProtoInterop(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var s Sketch
	ref, err := ddsketch.LogUnboundedDenseDDSketch(RelativeAccuracy)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20000; i++ {
		v := int64(1e6 * math.Exp(2*rng.NormFloat64()))
		if i%100 == 0 {
			v = 0
		}
		s.Add(v)
		if err := ref.Add(float64(v)); err != nil {
			t.Fatal(err)
		}
	}
	var pb sketchpb.DDSketch
	if err := proto.Unmarshal(s.ProtoBytes(), &pb); err != nil {
		t.Fatal(err)
	}
	dd, err := ddsketch.FromProto(&pb)
	if err != nil {
		t.Fatal(err)
	}
	if dd.GetCount() != float64(s.Count()) {
		t.Fatalf("sketches-go counts %v, want %d", dd.GetCount(), s.Count())
	}
	for _, q := range quantilesToCheck {
		theirs, err := dd.GetValueAtQuantile(q)
		if err != nil {
			t.Fatal(err)
		}
		refq, _ := ref.GetValueAtQuantile(q)
		if ours := s.Quantile(q); math.Abs(float64(ours)-theirs) > 1 || math.Abs(theirs-refq) > 1e-6*refq+1e-9 {
			t.Errorf("q=%v: ours %d, sketches-go on our bytes %v, sketches-go reference %v", q, ours, theirs, refq)
		}
	}
	b, err := proto.Marshal(ref.ToProto())
	if err != nil {
		t.Fatal(err)
	}
	back, err := SketchFromProto(b)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(&s) {
		t.Fatal("sketch read from sketches-go's bytes differs")
	}
	if _, err := SketchFromProto([]byte{0xff, 0x01}); err == nil {
		t.Fatal("garbage accepted")
	}
}

func BenchmarkSketchAdd(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	vals := make([]int64, 1024)
	for i := range vals {
		vals[i] = int64(1e6 * math.Exp(rng.NormFloat64()))
	}
	var s Sketch
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.Add(vals[i&1023])
	}
}

// TestSketchProtoBytesExact checks that ProtoBytes writes exactly the bytes
// of the protobuf runtime's deterministic marshalling, in both store forms,
// with and without zero counts, offset 0 and sparse index 0 included.
func TestSketchProtoBytesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	cases := []struct {
		name string
		vals []int64
	}{
		{"empty", nil},
		{"only zeros", []int64{0, -3, 0}},
		{"one value", []int64{1234567}},
		{"index 0 and 1ns", []int64{1, 1, 2}},
		{"index 0, sparse", []int64{1, 1e12, 5e3}},
	}
	for n := 1; n <= 400; n = n*2 + 1 {
		for _, spread := range []float64{0.1, 2, 8} {
			vals := make([]int64, n)
			for i := range vals {
				vals[i] = int64(1e6 * math.Exp(spread*rng.NormFloat64()))
				if rng.IntN(20) == 0 {
					vals[i] = 0
				}
			}
			cases = append(cases, struct {
				name string
				vals []int64
			}{fmt.Sprintf("n=%d spread=%v", n, spread), vals})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s Sketch
			for _, v := range c.vals {
				s.Add(v)
			}
			// Counts above one and removals leave the forms' edge cases
			// (empty bins inside the dense range, zero sparse counts).
			for i, v := range c.vals {
				if i%3 == 0 {
					s.AddN(v, 2)
				}
				if i%7 == 1 {
					s.AddN(v, -1)
				}
			}
			got, want := s.ProtoBytes(), s.protoBytesReflect()
			if !bytes.Equal(got, want) {
				t.Fatalf("ProtoBytes:\n%x\nprotobuf runtime:\n%x", got, want)
			}
			back, err := SketchFromProto(got)
			if err != nil {
				t.Fatal(err)
			}
			if !back.Equal(&s) {
				t.Fatal("read back differs")
			}
		})
	}
}

// appendBinaryReference is AppendBinary as it was before it skipped
// listing the non-zero bins: what TestSketchAppendBinaryExact compares it
// with (the partials' bytes and snapshot digests must not change).
func (s *Sketch) appendBinaryReference(dst []byte) []byte {
	nz := s.nonZero()
	dst = binary.AppendUvarint(dst, uint64(s.zero))
	if len(nz) == 0 {
		return append(dst, 0, 0, 0)
	}
	span := int64(nz[len(nz)-1].i) - int64(nz[0].i) + 1
	if span <= 3*int64(len(nz)) {
		dst = append(dst, 0)
		dst = binary.AppendVarint(dst, int64(nz[0].i))
		dst = binary.AppendUvarint(dst, uint64(span))
		k := 0
		for i := nz[0].i; int64(i) <= int64(nz[len(nz)-1].i); i++ {
			var c int64
			if nz[k].i == i {
				c = nz[k].n
				k++
			}
			dst = binary.AppendUvarint(dst, uint64(c))
		}
		return dst
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(len(nz)))
	prev := int64(0)
	for _, b := range nz {
		dst = binary.AppendVarint(dst, int64(b.i)-prev)
		prev = int64(b.i)
		dst = binary.AppendUvarint(dst, uint64(b.n))
	}
	return dst
}

// TestSketchAppendBinaryExact: AppendBinary writes the reference's bytes for
// sparse and dense sketches of every shape, with removals leaving empty bins
// (inside and at the edges) and zero counts.
func TestSketchAppendBinaryExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for n := 0; n <= 600; n = n*2 + 1 {
		for _, spread := range []float64{0.05, 1, 6} {
			for _, remove := range []int{0, 2, 5} {
				var s Sketch
				vals := make([]int64, n)
				for i := range vals {
					vals[i] = int64(1e6 * math.Exp(spread*rng.NormFloat64()))
					if rng.IntN(15) == 0 {
						vals[i] = 0
					}
					s.Add(vals[i])
				}
				for i, v := range vals {
					if remove > 0 && i%remove == 0 {
						s.AddN(v, -1)
					}
				}
				got, want := s.AppendBinary([]byte{9}), s.appendBinaryReference([]byte{9})
				if !bytes.Equal(got, want) {
					t.Fatalf("n=%d spread=%v remove=%d dense=%v: AppendBinary\n%x\nreference\n%x", n, spread, remove, s.dense, got, want)
				}
			}
		}
	}
}

// BenchmarkSketchAppendBinary encodes a sparse (40 values) and a dense
// (5,000 values) sketch, as partials and snapshot digests do.
func BenchmarkSketchAppendBinary(b *testing.B) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{40, 5000} {
		var s Sketch
		for range n {
			s.Add(int64(1e6 * math.Exp(rng.NormFloat64())))
		}
		b.Run(fmt.Sprintf("values=%d", n), func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf = s.AppendBinary(buf[:0])
			}
		})
	}
}
