package ui

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// chart is an SVG line/bar chart drawn on the server: coordinates are
// computed here, the template only places them.
type chart struct {
	ID, Title, Unit string
	W, H            int
	Series          []series
	Bars            []rect
	Exemplars       []exemplarPoint
	YTicks, XTicks  []axisTick
	PlotL, PlotR    float64
	PlotT, PlotB    float64
}

type series struct {
	Name, Class, Points string
}

type rect struct{ X, Y, W, H float64 }

type exemplarPoint struct {
	X, Y    float64
	TraceID string
	Title   string
}

type axisTick struct {
	X, Y   float64
	Label  string
	Anchor string // text-anchor of an x tick
}

const (
	chartW, chartH = 640, 200
	padL, padR     = 58, 12
	padT, padB     = 10, 24
)

// scale maps a time range and a value range onto the plot area.
type scale struct {
	t0, t1 model.Timestamp
	v1     float64
}

func (s scale) x(t model.Timestamp) float64 {
	span := float64(s.t1 - s.t0)
	if span <= 0 {
		return padL
	}
	return padL + float64(t-s.t0)/span*float64(chartW-padL-padR)
}

func (s scale) y(v float64) float64 {
	if s.v1 <= 0 {
		return chartH - padB
	}
	return chartH - padB - v/s.v1*float64(chartH-padT-padB)
}

func newChart(id, title, unit string, sc scale, yLabel func(float64) string) chart {
	c := chart{ID: id, Title: title, Unit: unit, W: chartW, H: chartH, PlotL: padL, PlotR: chartW - padR, PlotT: padT, PlotB: chartH - padB}
	for i := 0; i <= 4; i++ {
		v := sc.v1 * float64(i) / 4
		c.YTicks = append(c.YTicks, axisTick{X: padL - 6, Y: sc.y(v), Label: yLabel(v)})
	}
	c.XTicks = timeTicks(sc)
	return c
}

// line draws one value per window at the window's middle.
func line(ws []*window, sc scale, res time.Duration, value func(*window) float64) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(sc.x(w.Start.Add(res/2)), 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(sc.y(value(w)), 'f', 1, 64))
	}
	return b.String()
}

// niceMax rounds a chart's largest value up to a round number (1, 2, 3, 4,
// 5, 6 or 8 times a power of ten), so the four ticks are round too.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 3, 4, 5, 6, 8, 10} { // a quarter of each is round too
		if m*p >= v*1.02 {
			return m * p
		}
	}
	return 10 * p
}

// countMax is niceMax for counts: at least 4, so ticks are whole.
func countMax(v float64) float64 {
	if v <= 4 {
		return 4
	}
	return math.Ceil(niceMax(v)/4) * 4
}

func durLabel(v float64) string { return fmtDur(time.Duration(v)) }

func pctLabel(v float64) string {
	if v > 0 && v < 0.1 {
		return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
	}
	return strconv.FormatFloat(v*100, 'f', 0, 64) + "%"
}

func countLabel(v float64) string {
	if v >= 10 || v == math.Trunc(v) {
		return fmtCount(int64(v + 0.5))
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// operationCharts draws an operation's windows over [t0, t1).
func operationCharts(ws []*window, t0, t1 model.Timestamp, res time.Duration) []chart {
	var maxDur, maxCP, maxShare, maxCalls, maxErr float64
	for _, w := range ws {
		maxDur = max(maxDur, float64(w.Duration.P99))
		for _, e := range w.Exemplars {
			maxDur = max(maxDur, float64(e.Duration))
		}
		maxCP = max(maxCP, float64(w.CP.P99))
		maxShare = max(maxShare, w.Share())
		maxCalls = max(maxCalls, float64(w.Count))
		maxErr = max(maxErr, w.ErrorRate())
	}
	sc := func(v float64) scale { return scale{t0: t0, t1: t1, v1: niceMax(v)} }

	d := newChart("chart-duration", "Duration (p50, p90, p99) and slowest requests", "", sc(maxDur), durLabel)
	s := sc(maxDur)
	d.Series = []series{
		{"p50", "s0", line(ws, s, res, func(w *window) float64 { return float64(w.Duration.P50) })},
		{"p90", "s1", line(ws, s, res, func(w *window) float64 { return float64(w.Duration.P90) })},
		{"p99", "s2", line(ws, s, res, func(w *window) float64 { return float64(w.Duration.P99) })},
	}
	for _, w := range ws {
		for _, e := range w.Exemplars {
			at := e.Start
			if at < w.Start || at >= w.Start.Add(res) {
				at = w.Start.Add(res / 2)
			}
			d.Exemplars = append(d.Exemplars, exemplarPoint{X: s.x(at), Y: s.y(float64(e.Duration)), TraceID: e.TraceID.String(),
				Title: "trace " + e.TraceID.String() + ": " + fmtDur(e.Duration) + " at " + fmtTime(e.Start.Time()) + " UTC — click to open"})
		}
	}

	cp := newChart("chart-cp", "Critical-path time per span (p50, p99)", "", sc(maxCP), durLabel)
	s = sc(maxCP)
	cp.Series = []series{
		{"p50", "s0", line(ws, s, res, func(w *window) float64 { return float64(w.CP.P50) })},
		{"p99", "s2", line(ws, s, res, func(w *window) float64 { return float64(w.CP.P99) })},
	}

	sh := newChart("chart-share", "Critical-path share (of the time of requests that called it)", "", sc(min(maxShare, 1)), pctLabel)
	s = sc(min(maxShare, 1))
	sh.Series = []series{{"share", "s1", line(ws, s, res, func(w *window) float64 { return w.Share() })}}

	callScale := scale{t0: t0, t1: t1, v1: countMax(maxCalls)}
	calls := newChart("chart-calls", "Calls per "+model.ResolutionName(res)+" window", "", callScale, countLabel)
	s = callScale
	bw := max(1, s.x(t0.Add(res))-s.x(t0)-1)
	for _, w := range ws {
		y := s.y(float64(w.Count))
		calls.Bars = append(calls.Bars, rect{X: s.x(w.Start), Y: y, W: bw, H: float64(chartH-padB) - y})
	}

	er := newChart("chart-errors", "Error rate", "", sc(maxErr), pctLabel)
	s = sc(maxErr)
	er.Series = []series{{"errors", "s2", line(ws, s, res, func(w *window) float64 { return w.ErrorRate() })}}
	return []chart{d, cp, sh, calls, er}
}

// tickSteps are the candidate distances between time ticks.
var tickSteps = []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour}

// timeTicks labels the time axis at round UTC times (every 15 minutes, every
// 6 hours, every day, ...), at most six of them, leaving out ticks too close
// to the edges to be drawn whole.
func timeTicks(sc scale) []axisTick {
	span := sc.t1.Sub(sc.t0)
	step := tickSteps[len(tickSteps)-1]
	for _, st := range tickSteps {
		if span/st <= 6 {
			step = st
			break
		}
	}
	layout := "15:04"
	switch {
	case step >= 24*time.Hour:
		layout = "Jan 2"
	case span > 24*time.Hour:
		layout = "Jan 2 15:04"
	}
	var out []axisTick
	first := model.Timestamp((int64(sc.t0) + int64(step) - 1) / int64(step) * int64(step))
	for t := first; t <= sc.t1; t = t.Add(step) {
		x := sc.x(t)
		if x < padL+18 || x > chartW-padR-18 {
			continue
		}
		out = append(out, axisTick{X: x, Y: chartH - 8, Label: t.Time().UTC().Format(layout), Anchor: "middle"})
	}
	return out
}
