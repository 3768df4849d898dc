package ui

import (
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tracepipe/tracepipe/model"
)

// pageSize is the rows of one page of the slowest list.
const pageSize = 50

type traceRow struct {
	model.TraceSummary
	ID        string
	Tags      []tagFilter // promoted tags, the first value of each shown
	TagsTitle []string    // every value, for the tooltip
}

type tracesData struct {
	filters
	Operation, MinDuration, MaxDuration, Order string
	Rows                                       []traceRow
	Page                                       int
	PrevURL, NextURL                           string
	First                                      int
}

// traces lists the slowest (or newest) traces matching the filters, a page
// at a time. Paging asks the store for the first (page+1)*pageSize+1 and
// shows the last page of them, so deep pages cost more; the store's limit
// (model.MaxLimit) bounds how deep.
func (h *Handler) traces(w http.ResponseWriter, r *http.Request) {
	now := h.o.Now()
	v := r.URL.Query()
	if err := checkKnown(v, append([]string{"service", "operation", "minDuration", "maxDuration", "order", "page"}, rangeParams...), h.o.PromotedTags); err != nil {
		h.fail(w, r, err)
		return
	}
	tr, err := parseRange(v, now)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q := model.TraceQuery{Service: v.Get("service"), Operation: v.Get("operation"), Tags: parseTags(v, h.o.PromotedTags), Start: tr.Start, End: tr.End}
	if q.MinDuration, err = parseDurationParam(v, "minDuration"); err != nil {
		h.fail(w, r, err)
		return
	}
	if q.MaxDuration, err = parseDurationParam(v, "maxDuration"); err != nil {
		h.fail(w, r, err)
		return
	}
	if q.MaxDuration != 0 && q.MinDuration > q.MaxDuration {
		h.fail(w, r, badParam("maxDuration", v.Get("maxDuration"), "at least minDuration ("+v.Get("minDuration")+")"))
		return
	}
	order := v.Get("order")
	switch order {
	case "", "slowest":
		order = "slowest"
	case "newest":
		q.Order = model.OrderNewest
	default:
		h.fail(w, r, badParam("order", order, "slowest or newest"))
		return
	}
	maxPage := (model.MaxLimit - 1) / pageSize
	pg, err := parseIntParam(v, "page", 1, 1, maxPage)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q.Limit = min(pg*pageSize+1, model.MaxLimit)
	ctx := r.Context()
	svcs, _, err := h.r.Services(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.r.FindTraces(ctx, q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d := tracesData{filters: h.filters(tr, q.Service, q.Tags, svcs), Operation: q.Operation,
		MinDuration: v.Get("minDuration"), MaxDuration: v.Get("maxDuration"), Order: order, Page: pg, First: (pg-1)*pageSize + 1}
	more := len(res) > pg*pageSize
	from := min((pg-1)*pageSize, len(res))
	to := min(pg*pageSize, len(res))
	for _, s := range res[from:to] {
		row := traceRow{TraceSummary: s, ID: s.TraceID.String()}
		// In the order of the promoted tags (shard first by default), then
		// any others.
		keys := make([]string, 0, len(s.PromotedTags))
		for _, k := range h.o.PromotedTags {
			if _, ok := s.PromotedTags[k]; ok {
				keys = append(keys, k)
			}
		}
		var other []string
		for k := range s.PromotedTags {
			if !slices.Contains(h.o.PromotedTags, k) {
				other = append(other, k)
			}
		}
		sort.Strings(other)
		for _, k := range append(keys, other...) {
			vs := s.PromotedTags[k]
			shown := vs[0]
			if len(vs) > 1 {
				shown += " +" + strconv.Itoa(len(vs)-1)
			}
			row.Tags = append(row.Tags, tagFilter{k, shown})
			row.TagsTitle = append(row.TagsTitle, k+"="+strings.Join(vs, ","))
		}
		d.Rows = append(d.Rows, row)
	}
	pageURL := func(p int) string {
		u := *r.URL
		qv := u.Query()
		qv.Set("page", strconv.Itoa(p))
		u.RawQuery = qv.Encode()
		return u.RequestURI()
	}
	if pg > 1 {
		d.PrevURL = pageURL(pg - 1)
	}
	if more && pg < maxPage {
		d.NextURL = pageURL(pg + 1)
	}
	h.render(w, r, http.StatusOK, "traces", page{Title: "Slowest requests", Nav: "traces", Data: d})
}
