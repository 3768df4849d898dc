package ui

import (
	"context"
	"net/http"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

type tagFilter struct{ Key, Value string }

type filters struct {
	Range    timeRange
	Presets  any
	Service  string
	Services []string
	Tags     []tagFilter
}

func (h *Handler) filters(tr timeRange, service string, tags map[string]string, svcs []model.ServiceOperations) filters {
	f := filters{Range: tr, Presets: presets, Service: service}
	for _, s := range svcs {
		f.Services = append(f.Services, s.Service)
	}
	for _, k := range h.o.PromotedTags {
		f.Tags = append(f.Tags, tagFilter{k, tags[k]})
	}
	return f
}

type bottleneck struct {
	model.BottleneckRow
	Rank       int
	Spark      string // polyline points
	SparkTitle string
	AvgCP      time.Duration
}

type homeData struct {
	filters
	Rows       []bottleneck
	Resolution string
	Query      string // the filters as URL parameters, for links
	RangeQuery string // the range alone
}

// home ranks operations by critical-path time over the range, with a
// sparkline of each one's critical-path time per rollup window.
func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	now := h.o.Now()
	v := r.URL.Query()
	if err := checkKnown(v, append([]string{"service"}, rangeParams...), h.o.PromotedTags); err != nil {
		h.fail(w, r, err)
		return
	}
	tr, err := parseRange(v, now)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	service, tags := v.Get("service"), parseTags(v, h.o.PromotedTags)
	ctx := r.Context()
	svcs, _, err := h.r.Services(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	rows, err := h.r.TopBottlenecks(ctx, model.BottleneckQuery{Service: service, Tags: tags, Start: tr.Start, End: tr.End, Limit: 20})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	start, end := tr.bounds(now)
	res := resolutionFor(start, end)
	d := homeData{filters: h.filters(tr, service, tags, svcs), Rows: make([]bottleneck, len(rows)), Resolution: model.ResolutionName(res)}
	q := tr.values()
	d.RangeQuery = q.Encode()
	if service != "" {
		q.Set("service", service)
	}
	for k, val := range tags {
		q.Set(k, val)
	}
	d.Query = q.Encode()
	err = parallel(ctx, len(rows), 4, func(ctx context.Context, i int) error {
		row := rows[i]
		b := bottleneck{BottleneckRow: row, Rank: i + 1}
		if row.Traces > 0 {
			b.AvgCP = row.CriticalPath / time.Duration(row.Traces)
		}
		rs, err := h.r.RollupSeries(ctx, model.RollupQuery{Service: row.Service, Operation: row.Operation, Resolution: res, Start: start, End: end})
		if err != nil {
			return err
		}
		ws := byWindow(rs, nil)
		if len(ws) > 0 {
			b.Spark = sparkline(slots(ws, start, end, res, func(w *window) float64 { return float64(w.CP.Sum) }), 120, 24)
			b.SparkTitle = "critical-path time per " + model.ResolutionName(res) + " window"
		}
		d.Rows[i] = b
		return nil
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "home", page{Title: "Bottlenecks", Nav: "home", Data: d})
}
