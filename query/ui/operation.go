package ui

import (
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

type breakdownRow struct {
	Value            string
	Calls, Errors    int64
	ErrorRate        float64
	P50, P99         time.Duration
	CPSum            time.Duration
	Share            float64
	TracesURL        string
	Overflow, Absent bool
}

type operationData struct {
	Range                       timeRange
	Presets                     any
	Service, Operation, Kind    string
	Resolution, ResolutionParam string
	Resolutions                 []string
	Charts                      []chart
	Totals                      *window
	Dims                        []string
	By                          string
	Breakdown                   []breakdownRow
	Truncated                   bool
	RangeQuery                  string
	Windows                     int
}

// operation shows one operation's rollups over the range: charts of its
// windows (all dimension values merged) with the slowest requests as
// clickable points, and a breakdown by one dimension.
func (h *Handler) operation(w http.ResponseWriter, r *http.Request) {
	now := h.o.Now()
	v := r.URL.Query()
	if err := checkKnown(v, append([]string{"service", "operation", "resolution", "kind", "by"}, rangeParams...), nil); err != nil {
		h.fail(w, r, err)
		return
	}
	tr, err := parseRange(v, now)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d := operationData{Range: tr, Presets: presets, Service: v.Get("service"), Operation: v.Get("operation"), Kind: v.Get("kind"),
		ResolutionParam: v.Get("resolution"), Resolutions: []string{"1m", "1h", "1d"}, By: v.Get("by")}
	switch {
	case d.Service == "":
		h.fail(w, r, badParam("service", "", "a service name (pick an operation on the Bottlenecks or Services page)"))
		return
	case d.Operation == "":
		h.fail(w, r, badParam("operation", "", "an operation name (pick one on the Bottlenecks or Services page)"))
		return
	}
	start, end := tr.bounds(now)
	res := resolutionFor(start, end)
	if d.ResolutionParam != "" {
		if res, err = model.ParseResolution(d.ResolutionParam); err != nil || !slices.Contains(d.Resolutions, d.ResolutionParam) {
			h.fail(w, r, badParam("resolution", d.ResolutionParam, "1m, 1h or 1d"))
			return
		}
	}
	d.Resolution = model.ResolutionName(res)
	q := model.RollupQuery{Service: d.Service, Operation: d.Operation, Resolution: res, Start: start, End: end}
	if d.Kind != "" {
		if q.Kind = model.ParseSpanKind(d.Kind); q.Kind == model.KindUnspecified {
			h.fail(w, r, badParam("kind", d.Kind, "server, client, producer, consumer or internal"))
			return
		}
	}
	rs, err := h.r.RollupSeries(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.Truncated = len(rs) >= model.MaxLimit
	d.RangeQuery = tr.values().Encode()
	ws := byWindow(rs, nil)
	d.Windows = len(ws)
	t0 := start
	if t0 == 0 && len(ws) > 0 {
		t0 = ws[0].Start
	}
	t0 = model.Timestamp(int64(t0) - int64(t0)%int64(res))
	if len(ws) > 0 {
		d.Charts = operationCharts(ws, t0, max(end, ws[len(ws)-1].Start.Add(res)), res)
	}
	// Totals over the range.
	d.Totals = &window{}
	if all := byWindow(sameWindow(rs), nil); len(all) == 1 {
		d.Totals = all[0]
	}
	// Breakdown by one dimension.
	dims := map[string]bool{}
	for i := range rs {
		for _, dm := range rs[i].Dimensions {
			dims[dm.Name] = true
		}
	}
	for k := range dims {
		d.Dims = append(d.Dims, k)
	}
	sort.Strings(d.Dims)
	if d.By == "" && len(d.Dims) > 0 {
		d.By = d.Dims[0]
	}
	if d.By != "" {
		if !dims[d.By] {
			if len(rs) > 0 {
				h.fail(w, r, badParam("by", d.By, "a dimension of this operation's rollups"))
				return
			}
		} else {
			d.Breakdown = h.breakdown(rs, d.By, d, tr)
		}
	}
	h.render(w, r, http.StatusOK, "operation", page{Title: d.Service + " " + d.Operation, Nav: "home", Data: d})
}

// sameWindow returns copies of rs all in one window, so byWindow merges
// them into the range's totals.
func sameWindow(rs []model.Rollup) []model.Rollup {
	out := make([]model.Rollup, len(rs))
	for i := range rs {
		out[i] = rs[i]
		out[i].WindowStart = 0
	}
	return out
}

func dimValue(r *model.Rollup, name string) (string, bool) {
	for _, d := range r.Dimensions {
		if d.Name == name {
			return d.Value, true
		}
	}
	return "", false
}

func (h *Handler) breakdown(rs []model.Rollup, by string, d operationData, tr timeRange) []breakdownRow {
	groups := map[string][]model.Rollup{}
	for i := range rs {
		v, ok := dimValue(&rs[i], by)
		if !ok {
			continue
		}
		r := rs[i]
		r.WindowStart = 0
		groups[v] = append(groups[v], r)
	}
	promoted := slices.Contains(h.o.PromotedTags, by)
	var out []breakdownRow
	for v, g := range groups {
		ws := byWindow(g, nil)
		w := ws[0]
		row := breakdownRow{Value: v, Calls: w.Count, Errors: w.Errors, ErrorRate: w.ErrorRate(), P50: w.Duration.P50, P99: w.Duration.P99,
			CPSum: w.CP.Sum, Share: w.Share(), Overflow: v == "__overflow__", Absent: v == ""}
		if promoted && !row.Overflow && !row.Absent {
			tv := tr.values()
			tv.Set("service", d.Service)
			tv.Set("operation", d.Operation)
			tv.Set(by, v)
			row.TracesURL = "/traces?" + tv.Encode()
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CPSum != out[j].CPSum {
			return out[i].CPSum > out[j].CPSum
		}
		return out[i].Value < out[j].Value
	})
	return out
}
