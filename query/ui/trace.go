package ui

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/query"
)

// jsSpan is one waterfall row as the page's script reads it (short keys:
// a 10,000-span trace is embedded whole). Rows are in tree order (depth
// first, children by start), P is the parent's row (-1 for a root).
type jsSpan struct {
	ID    string      `json:"id"`
	P     int         `json:"p"`
	D     int         `json:"d"`
	Svc   string      `json:"s"`
	Op    string      `json:"o"`
	Kind  string      `json:"k,omitempty"`
	Err   bool        `json:"e,omitempty"`
	Off   int64       `json:"t"`
	Dur   int64       `json:"du"`
	Self  int64       `json:"sf"`
	CP    int64       `json:"cp"`
	Crit  bool        `json:"c,omitempty"`
	Start string      `json:"st"`
	Tags  [][2]string `json:"tg,omitempty"`
	PTags [][2]string `json:"pt,omitempty"`
	Logs  []jsLog     `json:"l,omitempty"`
	Warn  []string    `json:"w,omitempty"`
}

type jsLog struct {
	Off    int64       `json:"t"`
	Fields [][2]string `json:"f"`
}

type jsTrace struct {
	ID       string     `json:"id"`
	Dur      int64      `json:"du"`
	Spans    []jsSpan   `json:"spans"`
	Sections [][3]int64 `json:"cps"` // row, offset, duration of each critical-path section
}

type traceData struct {
	ID          string
	Summary     model.TraceSummary
	Ops         []model.OperationSummary
	Bottleneck  *model.OperationSummary
	BottleShare float64
	Warnings    []query.Warning
	Ticks       []tick
	CritSpans   int
	JSON        template.JS // the jsTrace, encoded (see encodeTrace)
	JaegerURL   string
}

type tick struct {
	Pct   string
	Label string
}

func kvPairs(kvs model.KeyValues) [][2]string {
	if len(kvs) == 0 {
		return nil
	}
	out := make([][2]string, len(kvs))
	for i, kv := range kvs {
		out[i] = [2]string{kv.Key, kv.AsString()}
	}
	return out
}

// encodeTrace encodes the trace for the page's <script type="application/json">.
// encoding/json escapes <, > and & (and U+2028, U+2029) inside strings, so
// no value can close the script element or start markup; that makes the
// result safe to insert as template.JS, and much cheaper for a 10,000-span
// trace than html/template's escaping of a value.
func encodeTrace(t *jsTrace) template.JS {
	b, err := json.Marshal(t)
	if err != nil {
		return "null" // BUG: the types above always encode
	}
	return template.JS(b)
}

// traceSearch is the search box: /trace?id=... redirects to the trace page.
func (h *Handler) traceSearch(w http.ResponseWriter, r *http.Request) {
	s := strings.TrimSpace(r.URL.Query().Get("id"))
	id, err := model.ParseTraceID(s)
	if err != nil || s == "" {
		h.fail(w, r, badParam("id", s, "a trace ID (1 to 32 hex digits)"))
		return
	}
	http.Redirect(w, r, "/trace/"+id.String(), http.StatusSeeOther)
}

func (h *Handler) trace(w http.ResponseWriter, r *http.Request) {
	s := r.PathValue("id")
	id, err := model.ParseTraceID(s)
	if err != nil {
		h.fail(w, r, badParam("trace ID", s, "a trace ID (1 to 32 hex digits)"))
		return
	}
	st, err := h.r.GetTrace(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d := buildTrace(&st)
	if h.o.JaegerUIURL != "" {
		d.JaegerURL = h.o.JaegerUIURL + "/trace/" + d.ID
	}
	h.render(w, r, http.StatusOK, "trace", page{Title: "Trace " + d.ID, Nav: "traces", Data: d})
}

// buildTrace turns a stored trace into the page's data.
func buildTrace(st *model.StoredTrace) traceData {
	// query.NewTrace gives the tree order, depths, offsets, self and
	// critical-path times; the rows take tags and logs from the spans
	// themselves (byID below), so NewTrace gets copies without them rather
	// than converting every span's tags to maps (a fifth of a 10,000-span
	// page's CPU).
	bare := *st
	bare.Trace.Spans = make([]*model.Span, len(st.Trace.Spans))
	copies := make([]model.Span, len(st.Trace.Spans))
	for i, sp := range st.Trace.Spans {
		copies[i] = *sp
		copies[i].Tags, copies[i].Logs, copies[i].Process.Tags = nil, nil, nil
		bare.Trace.Spans[i] = &copies[i]
	}
	qt := query.NewTrace(&bare)
	d := traceData{ID: qt.Summary.TraceID, Summary: st.Summary, Ops: st.Summary.Operations, Warnings: qt.Warnings}
	if len(d.Ops) > 0 && d.Ops[0].CriticalPath > 0 {
		b := d.Ops[0]
		d.Bottleneck = &b
		if st.Summary.Duration > 0 {
			d.BottleShare = float64(b.CriticalPath) / float64(st.Summary.Duration)
		}
	}
	byID := make(map[string]*model.Span, len(st.Trace.Spans))
	for _, sp := range st.Trace.Spans {
		byID[sp.SpanID.String()] = sp
	}
	warn := map[string][]string{}
	for _, w := range qt.Warnings {
		if w.SpanID != "" {
			warn[w.SpanID] = append(warn[w.SpanID], w.Message)
		}
	}
	crit := map[string]bool{}
	for _, c := range qt.CriticalPath {
		crit[c.SpanID] = true
	}
	row := make(map[string]int, len(qt.Spans))
	spans := make([]jsSpan, len(qt.Spans))
	var stack []int // rows of the current ancestors, by depth
	start := st.Summary.Start
	for i, s := range qt.Spans {
		js := jsSpan{ID: s.SpanID, P: -1, D: s.Depth, Svc: s.Service, Op: s.Operation, Kind: s.Kind, Err: s.Error,
			Off: s.OffsetNanos, Dur: s.DurationNanos, Self: s.SelfNanos, CP: s.CriticalPathNanos, Crit: crit[s.SpanID],
			Start: fmtTimeMs(s.Start), Warn: warn[s.SpanID]}
		if js.Kind == "unspecified" {
			js.Kind = ""
		}
		if len(stack) > s.Depth {
			stack = stack[:s.Depth]
		}
		if s.Depth > 0 && len(stack) == s.Depth {
			js.P = stack[s.Depth-1]
		}
		stack = append(stack, i)
		if _, dup := row[s.SpanID]; !dup {
			row[s.SpanID] = i
		}
		if sp := byID[s.SpanID]; sp != nil {
			js.Tags, js.PTags = kvPairs(sp.Tags), kvPairs(sp.Process.Tags)
			for _, l := range sp.Logs {
				js.Logs = append(js.Logs, jsLog{Off: int64(l.Timestamp.Sub(start)), Fields: kvPairs(l.Fields)})
			}
		}
		if js.Crit {
			d.CritSpans++
		}
		spans[i] = js
	}
	jt := jsTrace{ID: d.ID, Dur: int64(st.Summary.Duration), Spans: spans, Sections: make([][3]int64, 0, len(qt.CriticalPath))}
	for _, c := range qt.CriticalPath {
		if i, ok := row[c.SpanID]; ok {
			jt.Sections = append(jt.Sections, [3]int64{int64(i), c.OffsetNanos, c.DurationNanos})
		}
	}
	d.JSON = encodeTrace(&jt)
	for i := 0; i <= 4; i++ {
		d.Ticks = append(d.Ticks, tick{Pct: []string{"0", "25", "50", "75", "100"}[i], Label: fmtDur(st.Summary.Duration * time.Duration(i) / 4)})
	}
	return d
}
