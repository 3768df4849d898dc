package ui

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
)

// mergeDists merges the distributions of several rollups of one window (one
// per dimension value) into the distribution of their union: exact sum and
// max; quantiles read from the merged sketches when every part has one,
// else the largest of the parts' quantiles (an upper bound).
func mergeDists(ds []model.Distribution) model.Distribution {
	var out model.Distribution
	if len(ds) == 1 {
		out = ds[0]
		out.Sketch = nil
		return out
	}
	var sk rollup.Sketch
	exact := true
	for _, d := range ds {
		out.Sum += d.Sum
		out.Max = max(out.Max, d.Max)
		out.P50, out.P90, out.P95, out.P99 = max(out.P50, d.P50), max(out.P90, d.P90), max(out.P95, d.P95), max(out.P99, d.P99)
		if !exact {
			continue
		}
		s, err := rollup.SketchFromProto(d.Sketch)
		if err != nil || (len(d.Sketch) == 0 && d.Max > 0) {
			exact = false
			continue
		}
		sk.Merge(&s)
	}
	if exact && sk.Count() > 0 {
		out.P50 = min(time.Duration(sk.Quantile(0.5)), out.Max)
		out.P90 = min(time.Duration(sk.Quantile(0.9)), out.Max)
		out.P95 = min(time.Duration(sk.Quantile(0.95)), out.Max)
		out.P99 = min(time.Duration(sk.Quantile(0.99)), out.Max)
	}
	return out
}

// window is one time window of an operation, all dimension values merged.
type window struct {
	Start              model.Timestamp
	Count, Errors      int64
	Duration, Self, CP model.Distribution
	TraceDurationSum   time.Duration
	Exemplars          []model.Exemplar
	durs, selfs, cps   []model.Distribution
	hasData            bool
}

// Share is the critical-path share of the merged window: the parts' summed
// critical-path time over their summed trace durations. A trace split over
// several dimension values counts in each, so with dimensions this can be
// below the share of the operation as a whole.
func (w *window) Share() float64 {
	if w.TraceDurationSum <= 0 {
		return 0
	}
	return float64(w.CP.Sum) / float64(w.TraceDurationSum)
}

// ErrorRate is errors over calls (0 without calls).
func (w *window) ErrorRate() float64 {
	if w.Count == 0 {
		return 0
	}
	return float64(w.Errors) / float64(w.Count)
}

// byWindow merges rollups (ordered by window start) per window; keep, when
// not nil, selects the rollups that count.
func byWindow(rs []model.Rollup, keep func(*model.Rollup) bool) []*window {
	var out []*window
	for i := range rs {
		r := &rs[i]
		if keep != nil && !keep(r) {
			continue
		}
		if n := len(out); n == 0 || out[n-1].Start != r.WindowStart {
			out = append(out, &window{Start: r.WindowStart})
		}
		w := out[len(out)-1]
		w.Count += r.Count
		w.Errors += r.Errors
		w.TraceDurationSum += r.TraceDurationSum
		w.durs, w.selfs, w.cps = append(w.durs, r.Duration), append(w.selfs, r.Self), append(w.cps, r.CriticalPath)
		w.Exemplars = append(w.Exemplars, r.Exemplars...)
		w.hasData = true
	}
	for _, w := range out {
		w.Duration, w.Self, w.CP = mergeDists(w.durs), mergeDists(w.selfs), mergeDists(w.cps)
		w.durs, w.selfs, w.cps = nil, nil, nil
		sort.Slice(w.Exemplars, func(i, j int) bool { return w.Exemplars[i].Duration > w.Exemplars[j].Duration })
		seen := map[model.TraceID]bool{}
		ex := w.Exemplars[:0]
		for _, e := range w.Exemplars {
			if !seen[e.TraceID] && len(ex) < maxExemplarsPerWindow {
				seen[e.TraceID] = true
				ex = append(ex, e)
			}
		}
		w.Exemplars = ex
	}
	return out
}

const maxExemplarsPerWindow = 5

// sparkline draws values as the points of an SVG polyline in a w×h box.
func sparkline(values []float64, w, h float64) string {
	if len(values) == 0 {
		return ""
	}
	var hi float64
	for _, v := range values {
		hi = max(hi, v)
	}
	var b strings.Builder
	for i, v := range values {
		x := 0.0
		if len(values) > 1 {
			x = float64(i) * w / float64(len(values)-1)
		}
		y := h - 1
		if hi > 0 {
			y = h - 1 - v/hi*(h-2)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	return b.String()
}

// slots spreads windows over the range [start, end) at res: one value per
// slot, zero where no window is stored. At most maxSlots slots (the last
// ones when the range is longer).
func slots(ws []*window, start, end model.Timestamp, res time.Duration, value func(*window) float64) []float64 {
	const maxSlots = 500
	if start == 0 && len(ws) > 0 {
		start = ws[0].Start
	}
	first := model.Timestamp(int64(start) - int64(start)%int64(res))
	n := int(end.Sub(first)/res) + 1
	if n > maxSlots {
		first = first.Add(time.Duration(n-maxSlots) * res)
		n = maxSlots
	}
	if n <= 0 {
		return nil
	}
	out := make([]float64, n)
	for _, w := range ws {
		i := int(w.Start.Sub(first) / res)
		if i >= 0 && i < n {
			out[i] = value(w)
		}
	}
	return out
}

// parallel runs fn(i) for i in [0, n) with at most limit at once, and
// returns the first error. Every goroutine has returned when it returns.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}
