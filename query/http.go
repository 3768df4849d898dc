package query

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Handler serves the JSON API:
//
//	GET /api/v1/traces/{traceID}   a trace: summary, spans (tree order), critical path, warnings
//	GET /api/v1/traces?...         trace summaries (ParseTraceQuery parameters): {"traces": [...]}
//	GET /api/v1/bottlenecks?...    ranked operations: {"bottlenecks": [...]}
//	GET /api/v1/rollups?...        an operation's rollup series: {"rollups": [...]}
//	GET /api/v1/edges?...          a service edge's rollup series (ParseEdgeQuery: caller, callee,
//	                               resolution, since or start/end): {"edges": [...]}
//
// Errors are {"error": "message"} with 400 for a bad query, 404 for a missing
// trace (or an unknown path), 405 for a method other than GET/HEAD and 500
// for a backend failure (logged, message kept).
type Handler struct {
	r   Reader
	now func() time.Time
	log *slog.Logger
	mux *http.ServeMux
}

// NewHandler serves r; now gives the reference time of relative ranges
// ("since"); log may be nil.
func NewHandler(r Reader, now func() time.Time, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{r: r, now: now, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /api/v1/traces/{id}", h.trace)
	h.mux.HandleFunc("GET /api/v1/traces", h.traces)
	h.mux.HandleFunc("GET /api/v1/bottlenecks", h.bottlenecks)
	h.mux.HandleFunc("GET /api/v1/rollups", h.rollups)
	h.mux.HandleFunc("GET /api/v1/edges", h.edges)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; the API is read-only")
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/api/v1/") {
		writeError(w, http.StatusNotFound, "no such endpoint "+r.URL.Path+"; see /api/v1/traces, /api/v1/bottlenecks, /api/v1/rollups, /api/v1/edges")
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) trace(w http.ResponseWriter, r *http.Request) {
	id, err := model.ParseTraceID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := h.r.GetTrace(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, NewTrace(&st))
}

func (h *Handler) traces(w http.ResponseWriter, r *http.Request) {
	q, err := ParseTraceQuery(r.URL.Query(), h.now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.r.FindTraces(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"traces": NewSummaries(res)})
}

func (h *Handler) bottlenecks(w http.ResponseWriter, r *http.Request) {
	q, err := ParseBottleneckQuery(r.URL.Query(), h.now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.r.TopBottlenecks(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"bottlenecks": NewBottlenecks(res)})
}

func (h *Handler) rollups(w http.ResponseWriter, r *http.Request) {
	q, err := ParseRollupQuery(r.URL.Query(), h.now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.r.RollupSeries(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"rollups": NewRollups(res)})
}

func (h *Handler) edges(w http.ResponseWriter, r *http.Request) {
	q, err := ParseEdgeQuery(r.URL.Query(), h.now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.r.EdgeSeries(r.Context(), q.Resolution, q.Caller, q.Callee, q.Start, q.End)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"edges": NewEdges(res)})
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, model.ErrBadQuery):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, model.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		h.log.Error("query failed", "path", r.URL.Path, "query", r.URL.RawQuery, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
