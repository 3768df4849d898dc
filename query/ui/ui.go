// Package ui is tracepipe's web UI: server-rendered pages over the same
// stores as the query API, for a person looking at slow requests and
// bottlenecks.
//
//	GET /                    Bottlenecks: operations ranked by critical-path time over a range
//	GET /traces              Slowest (or newest) requests, with filters and paging
//	GET /trace/{id}          One trace: waterfall, critical path, self times, warnings
//	GET /trace?id=...        the search box: redirects to /trace/{id}
//	GET /operation           One operation's rollups over time, exemplars, breakdown by dimension
//	GET /services            Services and operations, and the service graph from edge rollups
//	GET /static/...          the stylesheet and scripts (embedded)
//	/api/...                 Options.API, when set (the JSON API)
//
// # Why server-rendered html/template
//
// The UI must work from a fresh clone with no internet and no build step
// (`go run ./cmd/tracepipe run` serves it). So pages are html/template
// (contextual escaping of every value from spans), charts are inline SVG
// drawn on the server, and the only JavaScript is two small hand-written
// files embedded with go:embed: the trace waterfall (which renders only the
// rows in view, from the trace embedded as JSON, so a 10,000-span trace stays
// responsive) and a few conveniences. There is no bundler, no npm and no
// asset pipeline to keep in step with the Go code.
//
// # Errors
//
// A parameter that cannot be read is a 400 page naming the parameter; an
// unknown trace a 404 page; a store failure a 500 page (logged). Every page
// has a time budget (Options.Timeout).
package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/query"
)

// Reader is what the UI reads from a store (storage.Reader, EdgeReader and
// ServiceReader).
type Reader interface {
	query.Reader
	Services(ctx context.Context) ([]model.ServiceOperations, bool, error)
	EdgeRollups(ctx context.Context, res time.Duration, start, end model.Timestamp, limit int) ([]model.EdgeRollup, error)
}

// Options configures the UI.
type Options struct {
	// Now is the reference time of relative ranges ("last hour"); default time.Now.
	Now func() time.Time
	// Logger logs store failures; nil discards.
	Logger *slog.Logger
	// JaegerUIURL, when set, is the base URL of a Jaeger UI reading the same
	// store (e.g. http://127.0.0.1:16686): trace pages link to it.
	JaegerUIURL string
	// PromotedTags are the searchable tag keys offered as filters (default
	// model.DefaultPromotedTags()).
	PromotedTags []string
	// Timeout bounds the store work of one page (default 15s).
	Timeout time.Duration
	// API, when set, serves every path under /api/ (the JSON API beside
	// the pages, as `tracepipe run` and `tracepipe query serve` mount it).
	API http.Handler
}

// Handler serves the UI. It is safe for concurrent use.
type Handler struct {
	r     Reader
	o     Options
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New returns the UI over r.
func New(r Reader, o Options) (*Handler, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PromotedTags == nil {
		o.PromotedTags = model.DefaultPromotedTags()
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	o.JaegerUIURL = strings.TrimRight(o.JaegerUIURL, "/")
	if o.JaegerUIURL != "" && !strings.HasPrefix(o.JaegerUIURL, "http://") && !strings.HasPrefix(o.JaegerUIURL, "https://") {
		return nil, fmt.Errorf("jaeger UI URL %q: want http:// or https://", o.JaegerUIURL)
	}
	h := &Handler{r: r, o: o, log: o.Logger, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	for _, name := range []string{"home", "traces", "trace", "operation", "services", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("BUG: template %s: %w", name, err)
		}
		h.pages[name] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	fileServer := http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	h.mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		fileServer.ServeHTTP(w, r)
	}))
	h.mux.HandleFunc("GET /{$}", h.home)
	h.mux.HandleFunc("GET /traces", h.traces)
	h.mux.HandleFunc("GET /trace/{id}", h.trace)
	h.mux.HandleFunc("GET /trace", h.traceSearch)
	h.mux.HandleFunc("GET /operation", h.operation)
	h.mux.HandleFunc("GET /services", h.services)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.errorPage(w, r, http.StatusNotFound, "No such page", "There is no page at "+r.URL.Path+".")
	})
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.o.API != nil && strings.HasPrefix(r.URL.Path, "/api/") {
		h.o.API.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "The UI is read-only: only GET and HEAD are served.")
		return
	}
	setPageHeaders(w)
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	h.mux.ServeHTTP(w, r.WithContext(ctx))
}

func setPageHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "same-origin")
}

// Refused answers a request that query.Limit refused (its
// LimitOptions.Refused): a 503 page a person can read, saying why and when
// to reload (the limiter has set Retry-After), for every path but those
// under /api/, which keep the limiter's JSON answer.
func (h *Handler) Refused(w http.ResponseWriter, r *http.Request, msg string) bool {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		return false
	}
	setPageHeaders(w)
	text := "The server is busy and did not compute this page: " + msg + "."
	if s := w.Header().Get("Retry-After"); s != "" {
		text += " Reload it in " + s + " s."
	}
	if id := w.Header().Get("X-Request-Id"); id != "" {
		text += " (Request ID " + id + ".)"
	}
	h.errorPage(w, r, http.StatusServiceUnavailable, "Busy, try again shortly", text)
	return true
}

// IsCheap chooses the query.Limits lane of a request to a Handler with
// its API: the pages that rank or search (/, /traces, /operation,
// /services) are heavy like the API's searches; a trace page, the assets,
// redirects and error pages are cheap; paths under /api/ as query.IsCheap.
func IsCheap(r *http.Request) bool {
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/api/"):
		return query.IsCheap(r)
	case p == "/", p == "/traces", p == "/operation", p == "/services":
		return false
	}
	return true
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string // the active tab
	Now    time.Time
	Jaeger string
	Data   any
}

// render executes a page into a buffer first, so a template failure is a
// 500 page rather than half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	p.Now = h.o.Now().UTC()
	p.Jaeger = h.o.JaegerUIURL
	var buf bytes.Buffer
	if err := h.pages[name].Execute(&buf, p); err != nil {
		h.log.Error("BUG: render page", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

type errorData struct {
	Code    int
	Heading string
	Message string
}

func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, code int, heading, msg string) {
	h.render(w, r, code, "error", page{Title: heading, Data: errorData{Code: code, Heading: heading, Message: msg}})
}

// paramError is a parameter the UI could not read: a 400 page naming it.
type paramError struct {
	name, value, want string
}

func (e *paramError) Error() string {
	return fmt.Sprintf("parameter %q: %q is not %s", e.name, e.value, e.want)
}

func badParam(name, value, want string) error { return &paramError{name, value, want} }

// fail answers err with the page a person can act on.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *paramError
	switch {
	case errors.As(err, &pe):
		h.errorPage(w, r, http.StatusBadRequest, "Bad parameter: "+pe.name, "The parameter "+pe.name+" = \""+pe.value+"\" is not "+pe.want+". Fix it in the address or the form and try again.")
	case errors.Is(err, model.ErrBadQuery):
		h.errorPage(w, r, http.StatusBadRequest, "Bad query", strings.TrimPrefix(err.Error(), "bad query: "))
	case errors.Is(err, model.ErrNotFound):
		h.errorPage(w, r, http.StatusNotFound, "Not found", err.Error()+". It may not be stored yet (the ingester emits a trace a few seconds after its last span), or it is older than the retention.")
	case errors.Is(err, context.DeadlineExceeded):
		h.errorPage(w, r, http.StatusServiceUnavailable, "Too slow", "The store did not answer within "+h.o.Timeout.String()+". Narrow the time range or the filters and try again.")
	case r.Context().Err() != nil:
		h.log.Debug("client went away", "path", r.URL.Path, "err", err)
	default:
		h.log.Error("ui: store failed", "path", r.URL.Path, "query", r.URL.RawQuery, "err", err)
		h.errorPage(w, r, http.StatusInternalServerError, "The store failed", "Reading the store failed; the server log has the details. Try again in a moment.")
	}
}
