package query

import (
	"context"
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
//	GET /api/v1/services           services and their operations: {"services": [{"service", "operations"}], "truncated"}
//
// Errors are {"error": "message"} with 400 for a bad query (also an empty
// rollup or edge answer at a resolution the aggregator does not write, see
// SetResolutions), 404 for a missing
// trace (or an unknown path), 405 for a method other than GET/HEAD, 503 with
// Retry-After when served through Limit and over its budget, and 500 for a
// backend failure (logged with a request ID; the answer says only that ID).
type Handler struct {
	r           Reader
	now         func() time.Time
	log         *slog.Logger
	mux         *http.ServeMux
	resolutions []time.Duration
}

// SetResolutions tells the handler which resolutions the aggregator writes:
// an empty rollup or edge answer at another one is a 400 naming them,
// instead of an empty list. Call it before serving.
func (h *Handler) SetResolutions(res []time.Duration) { h.resolutions = res }

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
	h.mux.HandleFunc("GET /api/v1/services", h.services)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; the API is read-only")
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/api/v1/") {
		writeError(w, http.StatusNotFound, "no such endpoint "+r.URL.Path+"; see /api/v1/traces, /api/v1/bottlenecks, /api/v1/rollups, /api/v1/edges, /api/v1/services")
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
	if errors.Is(err, model.ErrNotFound) {
		writeError(w, http.StatusNotFound, "trace "+r.PathValue("id")+" not found") // as typed
		return
	}
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
	if err == nil && len(res) == 0 {
		err = UnwrittenResolution(q.Resolution, h.resolutions)
	}
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
	if err == nil && len(res) == 0 {
		err = UnwrittenResolution(q.Resolution, h.resolutions)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"edges": NewEdges(res)})
}

// fail answers err: 400 and 404 with its message; 503 when the request's
// budget (Limit) ran out; nothing when the client went away (logged at
// debug); otherwise 500 with a generic message and the request ID, the error
// itself logged with that ID and never sent.
func (h *Handler) services(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, "services takes no parameters")
		return
	}
	svcs, truncated, err := h.r.Services(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, NewServices(svcs, truncated))
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	switch {
	case errors.Is(err, model.ErrBadQuery):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, model.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		overBudget(w, r)
	case ctx.Err() != nil:
		h.log.Debug("client went away", "request_id", requestInfo(ctx).id, "path", r.URL.Path, "query", r.URL.RawQuery, "err", err)
	default:
		id := requestInfo(ctx).id
		h.log.Error("query failed", "request_id", id, "path", r.URL.Path, "query", r.URL.RawQuery, "err", err)
		writeErrorID(w, http.StatusInternalServerError, "internal error; the server log has the details under request ID "+id, id)
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

// writeErrorID is writeError with the request's ID: {"error", "requestId"}.
func writeErrorID(w http.ResponseWriter, code int, msg, id string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "requestId": id})
}
