package ui

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

type edgeRow struct {
	Caller, Callee string
	Calls, Errors  int64
	P99            time.Duration
	Slowest        *model.Exemplar
	SlowestID      string
	// drawing
	Path       string
	LX, LY     float64
	Label      string
	Anchor     string
	HasErrors  bool
	ErrorRatio float64
}

// edgeErrorRatio is the share of failed calls from which an edge is drawn
// in red.
const edgeErrorRatio = 0.05

type node struct {
	Name       string
	X, Y, W, H float64
	TX, TY     float64
}

type servicesData struct {
	Range      timeRange
	Presets    any
	Services   []model.ServiceOperations
	Truncated  bool
	Edges      []edgeRow
	EdgesFull  bool
	Nodes      []node
	GW, GH     float64
	Resolution string
	RangeQuery string
}

// services lists the stored services and operations and draws the service
// graph of the range from the edge rollups.
func (h *Handler) services(w http.ResponseWriter, r *http.Request) {
	now := h.o.Now()
	v := r.URL.Query()
	if err := checkKnown(v, rangeParams, nil); err != nil {
		h.fail(w, r, err)
		return
	}
	tr, err := parseRange(v, now)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ctx := r.Context()
	d := servicesData{Range: tr, Presets: presets, RangeQuery: tr.values().Encode()}
	if d.Services, d.Truncated, err = h.r.Services(ctx); err != nil {
		h.fail(w, r, err)
		return
	}
	start, end := tr.bounds(now)
	res := resolutionFor(start, end)
	d.Resolution = model.ResolutionName(res)
	es, err := h.r.EdgeRollups(ctx, res, start, end, model.MaxLimit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.EdgesFull = len(es) >= model.MaxLimit
	d.Edges = mergeEdges(es)
	d.Nodes, d.GW, d.GH = layoutGraph(d.Edges)
	h.render(w, r, http.StatusOK, "services", page{Title: "Services", Nav: "services", Data: d})
}

// mergeEdges sums the windows of each caller → callee pair (es is ordered
// by pair); pairs with no calls left (retractions) are dropped.
func mergeEdges(es []model.EdgeRollup) []edgeRow {
	var out []edgeRow
	var lat []model.Distribution
	flush := func() {
		if n := len(out); n > 0 {
			out[n-1].P99 = mergeDists(lat).P99
			if out[n-1].Calls == 0 {
				out = out[:n-1]
			}
		}
		lat = lat[:0]
	}
	for i := range es {
		e := &es[i]
		if n := len(out); n == 0 || out[n-1].Caller != e.Caller || out[n-1].Callee != e.Callee {
			flush()
			out = append(out, edgeRow{Caller: e.Caller, Callee: e.Callee})
		}
		row := &out[len(out)-1]
		row.Calls += e.Calls
		row.Errors += e.Errors
		if e.Calls > 0 {
			lat = append(lat, e.Latency)
		}
		for j := range e.Exemplars {
			x := e.Exemplars[j]
			if row.Slowest == nil || x.Duration > row.Slowest.Duration {
				row.Slowest = &x
				row.SlowestID = x.TraceID.String()
			}
		}
	}
	flush()
	return out
}

// layoutGraph places services in columns by their longest call depth from
// a service nobody calls (callers left of callees), orders each column by
// the positions of the callers (fewer crossings), and routes an edge to the
// next column as a curve from the caller's right side to the callee's left
// side, labelled at the callee; an edge that skips columns or goes back
// runs in a lane below the nodes, labelled in the lane.
func layoutGraph(edges []edgeRow) ([]node, float64, float64) {
	if len(edges) == 0 {
		return nil, 0, 0
	}
	names := map[string]bool{}
	for _, e := range edges {
		names[e.Caller], names[e.Callee] = true, true
	}
	depth := map[string]int{}
	// Longest-path relaxation, bounded by the number of services (cycles
	// stop growing there).
	for range len(names) {
		changed := false
		for _, e := range edges {
			if e.Caller == e.Callee {
				continue
			}
			if nd := depth[e.Caller] + 1; nd > depth[e.Callee] && nd < len(names) {
				depth[e.Callee], changed = nd, true
			}
		}
		if !changed {
			break
		}
	}
	cols := map[int][]string{}
	maxDepth := 0
	for n := range names {
		cols[depth[n]] = append(cols[depth[n]], n)
		maxDepth = max(maxDepth, depth[n])
	}
	index := map[string]float64{}
	for c := 0; c <= maxDepth; c++ {
		col := cols[c]
		bary := map[string]float64{}
		for _, n := range col {
			var sum, k float64
			for _, e := range edges {
				if e.Callee == n && depth[e.Caller] < c {
					sum, k = sum+index[e.Caller], k+1
				}
			}
			bary[n] = -1
			if k > 0 {
				bary[n] = sum / k
			}
		}
		// Services with calls that skip columns go last: their edges run
		// below the nodes, so they cross no node of their own column.
		skips := map[string]bool{}
		for _, e := range edges {
			if depth[e.Callee] != depth[e.Caller]+1 {
				skips[e.Caller] = true
			}
		}
		sort.Slice(col, func(i, j int) bool {
			if bary[col[i]] != bary[col[j]] {
				return bary[col[i]] < bary[col[j]]
			}
			if skips[col[i]] != skips[col[j]] {
				return !skips[col[i]]
			}
			return col[i] < col[j]
		})
		for i, n := range col {
			index[n] = float64(i) - float64(len(col)-1)/2
		}
	}
	const nodeW, nodeH, colGap, rowGap, margin, lane = 150.0, 34.0, 190.0, 50.0, 24.0, 22.0
	maxRows := 0
	for c := 0; c <= maxDepth; c++ {
		maxRows = max(maxRows, len(cols[c]))
	}
	nodesH := margin*2 + float64(maxRows)*nodeH + float64(maxRows-1)*rowGap
	var nodes []node
	for c := 0; c <= maxDepth; c++ {
		col := cols[c]
		colH := float64(len(col))*nodeH + float64(max(len(col)-1, 0))*rowGap
		for i, n := range col {
			x := margin + float64(c)*(nodeW+colGap)
			y := (nodesH-colH)/2 + float64(i)*(nodeH+rowGap)
			nodes = append(nodes, node{Name: n, X: x, Y: y, W: nodeW, H: nodeH, TX: x + nodeW/2, TY: y + nodeH/2})
		}
	}
	pos := map[string]*node{}
	for i := range nodes {
		pos[nodes[i].Name] = &nodes[i]
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
	incoming := map[string]int{}
	lanes := 0
	for i := range edges {
		e := &edges[i]
		e.Label = fmtCount(e.Calls) + " calls"
		if e.Calls == 1 {
			e.Label = "1 call"
		}
		if e.Errors > 0 {
			e.Label += " · " + fmtCount(e.Errors) + " err"
		}
		e.Label += " · p99 " + fmtDur(e.P99)
		if e.Calls > 0 {
			e.ErrorRatio = float64(e.Errors) / float64(e.Calls)
		}
		e.HasErrors = e.ErrorRatio >= edgeErrorRatio
		a, b := pos[e.Caller], pos[e.Callee]
		if depth[e.Callee] == depth[e.Caller]+1 {
			x1, y1 := a.X+a.W, a.Y+a.H/2
			x2, y2 := b.X, b.Y+b.H/2
			mx := (x1 + x2) / 2
			e.Path = "M" + f(x1) + "," + f(y1) + " C" + f(mx) + "," + f(y1) + " " + f(mx) + "," + f(y2) + " " + f(x2-2) + "," + f(y2)
			k := incoming[e.Callee]
			incoming[e.Callee]++
			e.LX, e.LY, e.Anchor = x2-8, y2-7-float64(k)*13, "end"
			continue
		}
		// A lane below the nodes.
		ly := nodesH + float64(lanes)*lane
		lanes++
		x1, y1 := a.X+a.W/2, a.Y+a.H
		x2, y2 := b.X+b.W/2, b.Y+b.H
		e.Path = "M" + f(x1) + "," + f(y1) + " C" + f(x1) + "," + f(ly) + " " + f(x1) + "," + f(ly) + " " + f((x1+x2)/2) + "," + f(ly) +
			" S" + f(x2) + "," + f(ly) + " " + f(x2) + "," + f(y2+2)
		e.LX, e.LY, e.Anchor = (x1+x2)/2, ly-4, "middle"
	}
	gw := margin*2 + float64(maxDepth+1)*nodeW + float64(maxDepth)*colGap
	return nodes, gw, nodesH + float64(lanes)*lane + 10
}
