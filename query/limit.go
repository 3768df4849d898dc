package query

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Lane bounds one class of requests: at most Concurrency are served at once,
// at most Queue more wait (first come, first served) for at most Wait, and a
// served request has Budget to answer.
//
// When the queue is full or the wait runs out the request is answered 503 at
// once; when the budget runs out the query's context ends (the stores cancel
// their work) and the answer is 503. Both carry Retry-After: RetryAfter and
// {"error": "...", "requestId": "..."}.
type Lane struct {
	Concurrency int
	Queue       int
	Wait        time.Duration
	Budget      time.Duration
	RetryAfter  time.Duration
}

func (l Lane) validate(name string) error {
	switch {
	case l.Concurrency < 1:
		return fmt.Errorf("query limits: %s lane: concurrency %d, want at least 1", name, l.Concurrency)
	case l.Queue < 0:
		return fmt.Errorf("query limits: %s lane: queue %d, want 0 or more", name, l.Queue)
	case l.Wait <= 0 || l.Budget <= 0:
		return fmt.Errorf("query limits: %s lane: wait %v and budget %v must be positive", name, l.Wait, l.Budget)
	case l.RetryAfter < time.Second:
		return fmt.Errorf("query limits: %s lane: retry-after %v, want at least 1s", name, l.RetryAfter)
	}
	return nil
}

// Limits bound the query API (and whatever else is served behind Limit, such
// as the web UI). Cheap requests (IsCheap: a trace by ID, service and
// operation lists, everything outside /api/) and heavy ones (searches,
// bottlenecks, rollups, edges) have separate lanes, so heavy queries can
// fill theirs without delaying a cheap lookup.
type Limits struct {
	Cheap, Heavy Lane
	// IsCheap picks the lane of a request (nil: IsCheap).
	IsCheap func(*http.Request) bool
}

// DefaultLimits: heavy queries run one fewer than the CPUs at once (at least
// one), 64 wait up to 10s, each has 15s; cheap lookups run 8 at once, 256 wait
// up to 5s, each has 5s.
func DefaultLimits() Limits {
	return Limits{
		Cheap: Lane{Concurrency: 8, Queue: 256, Wait: 5 * time.Second, Budget: 5 * time.Second, RetryAfter: time.Second},
		Heavy: Lane{Concurrency: max(runtime.NumCPU()-1, 1), Queue: 64, Wait: 10 * time.Second, Budget: 15 * time.Second, RetryAfter: 5 * time.Second},
	}
}

// Validate reports a limit that cannot work.
func (l Limits) Validate() error {
	return errors.Join(l.Cheap.validate("cheap"), l.Heavy.validate("heavy"))
}

// IsCheap is the default lane choice: a trace by ID (GET
// /api/v1/traces/{id}), /api/v1/services and /api/v1/operations, and every
// path outside /api/ (pages and assets of a UI, 404s) are cheap; the rest of
// /api/ is heavy.
func IsCheap(r *http.Request) bool {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/api/") {
		return true
	}
	if id, ok := strings.CutPrefix(p, "/api/v1/traces/"); ok && id != "" && !strings.Contains(id, "/") {
		return true
	}
	return p == "/api/v1/services" || p == "/api/v1/operations"
}

// Server timeouts of the query API (NewServer). WriteTimeout runs from the
// end of the request headers to the end of the answer: it exceeds the longest
// queue wait plus budget of DefaultLimits with room to send a large answer.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second // the API is GET-only: no bodies to read
	WriteTimeout      = 2 * time.Minute
	IdleTimeout       = 2 * time.Minute
)

// NewServer is an http.Server for h with the timeouts above, and the write
// timeout raised if l's queue wait plus budget needs more.
func NewServer(h http.Handler, l Limits) *http.Server {
	wt := WriteTimeout
	for _, ln := range []Lane{l.Cheap, l.Heavy} {
		wt = max(wt, ln.Wait+ln.Budget+30*time.Second)
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, WriteTimeout: wt, IdleTimeout: IdleTimeout}
}

// LimitOptions are Limit's dependencies.
type LimitOptions struct {
	Logger   *slog.Logger          // nil: discard
	Registry prometheus.Registerer // nil: a private registry
	// Refused, when set, may write the 503 answer of a refused request
	// (queue full, no slot in time, or over budget without an answer)
	// itself, e.g. an HTML page for a person: it gets the reason and
	// returns true when it answered (status included), false to leave the
	// JSON answer. Retry-After and X-Request-Id are set before it runs.
	Refused func(w http.ResponseWriter, r *http.Request, msg string) bool
}

// Limiter is Limit's handler; its metrics (lane is "cheap" or "heavy"):
//
//	tracepipe_query_requests_in_flight{lane}      requests being served
//	tracepipe_query_requests_queued{lane}         requests waiting for a slot
//	tracepipe_query_rejected_total{lane,reason}   503 answers: queue_full, wait, budget
//	tracepipe_query_request_duration_seconds{lane} served requests, from the slot to the answer
type Limiter struct {
	next         http.Handler
	isCheap      func(*http.Request) bool
	cheap, heavy *lane
	log          *slog.Logger
	refused      func(http.ResponseWriter, *http.Request, string) bool
}

// lane holds a Lane's slots: a buffered channel is a FIFO semaphore (blocked
// senders are served in order).
type lane struct {
	name     string
	cfg      Lane
	slots    chan struct{}
	waiting  atomic.Int64
	inflight prometheus.Gauge
	queued   prometheus.Gauge
	rejected *prometheus.CounterVec
	duration prometheus.Observer
}

// Limit serves next within l: every request takes a slot of its lane (or is
// answered 503), runs under its lane's budget and gets a request ID (the
// X-Request-Id header of the answer, and RequestID of its context) that the
// log lines about it carry.
func Limit(next http.Handler, l Limits, o LimitOptions) (*Limiter, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if l.IsCheap == nil {
		l.IsCheap = IsCheap
	}
	inflight := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tracepipe_query_requests_in_flight", Help: "Query API requests being served, per lane."}, []string{"lane"})
	queued := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tracepipe_query_requests_queued", Help: "Query API requests waiting for a slot, per lane."}, []string{"lane"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracepipe_query_rejected_total", Help: "Query API requests answered 503: queue_full, wait (no slot in time), budget (query over its time budget)."}, []string{"lane", "reason"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tracepipe_query_request_duration_seconds", Help: "Query API requests served, from taking a slot to the answer.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}}, []string{"lane"})
	for _, c := range []prometheus.Collector{inflight, queued, rejected, duration} {
		if err := o.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("query limits: metrics: %w", err)
		}
	}
	mk := func(name string, cfg Lane) *lane {
		return &lane{name: name, cfg: cfg, slots: make(chan struct{}, cfg.Concurrency),
			inflight: inflight.WithLabelValues(name), queued: queued.WithLabelValues(name),
			rejected: rejected, duration: duration.WithLabelValues(name)}
	}
	return &Limiter{next: next, isCheap: l.IsCheap, cheap: mk("cheap", l.Cheap), heavy: mk("heavy", l.Heavy), log: o.Logger, refused: o.Refused}, nil
}

var (
	errQueueFull = errors.New("queue full")
	errWait      = errors.New("no slot in time")
)

// acquire takes a slot, waiting in the queue if there is room.
func (l *lane) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	if l.waiting.Add(1) > int64(l.cfg.Queue) {
		l.waiting.Add(-1)
		return errQueueFull
	}
	l.queued.Inc()
	defer func() { l.waiting.Add(-1); l.queued.Dec() }()
	t := time.NewTimer(l.cfg.Wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-t.C:
		return errWait
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *lane) release() { <-l.slots }

func (lm *Limiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ln := lm.heavy
	if lm.isCheap(r) {
		ln = lm.cheap
	}
	info := &reqInfo{id: newRequestID(), lane: ln}
	w.Header().Set("X-Request-Id", info.id)
	ctx := context.WithValue(r.Context(), reqInfoKey{}, info)
	if err := ln.acquire(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			lm.log.Debug("client went away while queued", "request_id", info.id, "path", r.URL.Path)
			return
		}
		reason, msg := "queue_full", fmt.Sprintf("too many %s queries waiting (%d running, %d queued); retry later", ln.name, ln.cfg.Concurrency, ln.cfg.Queue)
		if err == errWait {
			reason, msg = "wait", fmt.Sprintf("no %s query slot free within %s; retry later", ln.name, ln.cfg.Wait)
		}
		ln.rejected.WithLabelValues(ln.name, reason).Inc()
		lm.log.Debug("query rejected", "request_id", info.id, "lane", ln.name, "reason", reason, "path", r.URL.Path)
		lm.unavailable(w, r, info, msg)
		return
	}
	defer ln.release()
	ln.inflight.Inc()
	defer ln.inflight.Dec()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, ln.cfg.Budget)
	defer cancel()
	rw := &trackingWriter{ResponseWriter: w}
	lm.next.ServeHTTP(rw, r.WithContext(ctx))
	ln.duration.Observe(time.Since(start).Seconds())
	// A handler that does not know budgets (it returned on the context's end
	// without answering) still gets the 503.
	if !rw.wrote && errors.Is(ctx.Err(), context.DeadlineExceeded) && r.Context().Err() == nil {
		ln.rejected.WithLabelValues(ln.name, "budget").Inc()
		lm.unavailable(w, r, info, budgetMessage(ln))
	}
}

// unavailable answers 503 for a refused request: through Refused when it
// takes it, else JSON.
func (lm *Limiter) unavailable(w http.ResponseWriter, r *http.Request, info *reqInfo, msg string) {
	if lm.refused == nil {
		writeUnavailable(w, info, msg)
		return
	}
	setRetryAfter(w, info)
	if !lm.refused(w, r, msg) {
		writeErrorID(w, http.StatusServiceUnavailable, msg, info.id)
	}
}

func budgetMessage(ln *lane) string {
	return fmt.Sprintf("query over its time budget of %s; narrow the time range or add filters, then retry", ln.cfg.Budget)
}

// overBudget answers 503 for a request whose budget ran out and counts it.
func overBudget(w http.ResponseWriter, r *http.Request) {
	info := requestInfo(r.Context())
	msg := "query over its time budget; narrow the time range or add filters, then retry"
	if info.lane != nil {
		info.lane.rejected.WithLabelValues(info.lane.name, "budget").Inc()
		msg = budgetMessage(info.lane)
	}
	writeUnavailable(w, info, msg)
}

func writeUnavailable(w http.ResponseWriter, info *reqInfo, msg string) {
	setRetryAfter(w, info)
	writeErrorID(w, http.StatusServiceUnavailable, msg, info.id)
}

func setRetryAfter(w http.ResponseWriter, info *reqInfo) {
	retry := 5 * time.Second
	if info.lane != nil {
		retry = info.lane.cfg.RetryAfter
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
}

// trackingWriter notes whether the handler answered.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

type reqInfoKey struct{}

// reqInfo is what Limit tells the handler about a request.
type reqInfo struct {
	id   string
	lane *lane // nil when not served through Limit
}

// requestInfo is the request's info, or a fresh ID when it did not come
// through Limit.
func requestInfo(ctx context.Context) *reqInfo {
	if info, ok := ctx.Value(reqInfoKey{}).(*reqInfo); ok {
		return info
	}
	return &reqInfo{id: newRequestID()}
}

// RequestID is the ID Limit gave the request of ctx ("" outside Limit).
func RequestID(ctx context.Context) string {
	if info, ok := ctx.Value(reqInfoKey{}).(*reqInfo); ok {
		return info.id
	}
	return ""
}

// newRequestID is 16 random hex digits.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
