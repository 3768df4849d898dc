package rollup

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Dist is a distribution of durations in nanoseconds: exact sum and maximum,
// and a sketch for quantiles.
type Dist struct {
	Sum    int64
	Max    int64
	Sketch Sketch
}

// Stats are the statistics of one key (an operation with its dimension
// values, or a service edge) over a set of traces.
//
// Count, Errors, TraceDuration, the sums and the sketches are
// invertible (a trace's contribution can be subtracted); the maxima and the
// exemplars are not, so whoever subtracts recomputes those from the
// remaining traces.
type Stats struct {
	Count  int64 // spans (edges: calls)
	Errors int64 // failed spans
	// TraceDuration sums the durations (Analysis.Duration) of the traces
	// containing the key, each trace once per key.
	TraceDuration int64
	Duration      Dist
	Self          Dist // zero for edges
	CriticalPath  Dist // zero for edges
	// Exemplars are the slowest traces of the key: for each trace its slowest
	// span of the key; at most Config.Exemplars, ordered by exemplarLess.
	Exemplars []model.Exemplar
}

// IsZero reports whether s counts nothing (a retraction).
func (s *Stats) IsZero() bool { return s.Count == 0 }

// exemplarLess orders exemplars slowest first, then by trace ID, then start.
func exemplarLess(a, b *model.Exemplar) bool {
	if a.Duration != b.Duration {
		return a.Duration > b.Duration
	}
	if a.TraceID.High != b.TraceID.High {
		return a.TraceID.High < b.TraceID.High
	}
	if a.TraceID.Low != b.TraceID.Low {
		return a.TraceID.Low < b.TraceID.Low
	}
	return a.Start < b.Start
}

// offerExemplar inserts e into the sorted list ex, keeping at most k.
func offerExemplar(ex []model.Exemplar, e model.Exemplar, k int) []model.Exemplar {
	if k <= 0 {
		return ex
	}
	if len(ex) == k && !exemplarLess(&e, &ex[k-1]) {
		return ex
	}
	i := len(ex)
	for i > 0 && exemplarLess(&e, &ex[i-1]) {
		i--
	}
	if len(ex) < k {
		ex = append(ex, model.Exemplar{})
	}
	copy(ex[i+1:], ex[i:len(ex)-1])
	ex[i] = e
	return ex
}

// mergeDist adds o into d.
func (d *Dist) merge(o *Dist) {
	d.Sum += o.Sum
	if o.Max > d.Max {
		d.Max = o.Max
	}
	d.Sketch.Merge(&o.Sketch)
}

// Merge adds o into s, keeping k exemplars. Merging the statistics of
// disjoint trace sets gives the statistics of their union.
func (s *Stats) Merge(o *Stats, k int) {
	s.Count += o.Count
	s.Errors += o.Errors
	s.TraceDuration += o.TraceDuration
	s.Duration.merge(&o.Duration)
	s.Self.merge(&o.Self)
	s.CriticalPath.merge(&o.CriticalPath)
	for _, e := range o.Exemplars {
		s.Exemplars = offerExemplar(s.Exemplars, e, k)
	}
}

// Clone returns an independent copy.
func (s *Stats) Clone() Stats {
	c := *s
	c.Duration.Sketch = s.Duration.Sketch.Clone()
	c.Self.Sketch = s.Self.Sketch.Clone()
	c.CriticalPath.Sketch = s.CriticalPath.Sketch.Clone()
	c.Exemplars = append([]model.Exemplar(nil), s.Exemplars...)
	return c
}

// AppendBinary appends a compact, deterministic encoding of s.
func (s *Stats) AppendBinary(dst []byte) []byte {
	for _, v := range []int64{s.Count, s.Errors, s.TraceDuration} {
		dst = binary.AppendVarint(dst, v)
	}
	for _, d := range []*Dist{&s.Duration, &s.Self, &s.CriticalPath} {
		dst = binary.AppendVarint(dst, d.Sum)
		dst = binary.AppendVarint(dst, d.Max)
		dst = d.Sketch.AppendBinary(dst)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Exemplars)))
	for _, e := range s.Exemplars {
		dst = binary.BigEndian.AppendUint64(dst, e.TraceID.High)
		dst = binary.BigEndian.AppendUint64(dst, e.TraceID.Low)
		dst = binary.AppendVarint(dst, int64(e.Duration))
		dst = binary.AppendVarint(dst, int64(e.Start))
	}
	return dst
}

const maxExemplarsDecoded = 1000

func decodeStats(r *reader) (Stats, error) {
	var s Stats
	s.Count, s.Errors, s.TraceDuration = r.varint(), r.varint(), r.varint()
	for _, d := range []*Dist{&s.Duration, &s.Self, &s.CriticalPath} {
		d.Sum = r.varint()
		d.Max = r.varint()
		sk, err := decodeSketch(r)
		if err != nil {
			return s, err
		}
		d.Sketch = sk
	}
	n := r.uvarint()
	if r.err != nil {
		return s, r.err
	}
	if n > maxExemplarsDecoded {
		return s, fmt.Errorf("%d exemplars: too many", n)
	}
	if n > 0 {
		s.Exemplars = make([]model.Exemplar, n)
		for i := range s.Exemplars {
			e := &s.Exemplars[i]
			e.TraceID.High, e.TraceID.Low = r.u64(), r.u64()
			e.Duration = time.Duration(r.varint())
			e.Start = model.Timestamp(r.varint())
		}
	}
	if r.err != nil {
		return s, r.err
	}
	if s.Count < 0 || s.Errors < 0 || s.Errors > s.Count || s.TraceDuration < 0 ||
		s.Duration.Sketch.Count() != s.Count {
		return s, fmt.Errorf("inconsistent counts")
	}
	return s, nil
}

// digest is a 64-bit hash of the encoding, to detect changes.
func (s *Stats) digest(buf []byte) (uint64, []byte) {
	buf = s.AppendBinary(buf[:0])
	h := fnv.New64a()
	h.Write(buf)
	return h.Sum64(), buf
}

func (d *Dist) toModel() model.Distribution {
	var m model.Distribution
	m.Sum = time.Duration(d.Sum)
	m.P50, m.P90, m.P95, m.P99, m.Max = durQuantiles(&d.Sketch, d.Max)
	if d.Sketch.Count() > 0 {
		m.Sketch = d.Sketch.ProtoBytes()
	}
	return m
}

// distFromModel reads a stored distribution back (for coarse windows).
func distFromModel(m *model.Distribution) (Dist, error) {
	sk, err := SketchFromProto(m.Sketch)
	return Dist{Sum: int64(m.Sum), Max: int64(m.Max), Sketch: sk}, err
}
