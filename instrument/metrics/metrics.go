// Package metrics times operations and traces them with one call, the way the
// talk this project answers instruments its services:
//
//	func (s *Store) Get(ctx context.Context, key string) (v []byte, err error) {
//		timer, ctx := metrics.StartWithTracing(ctx, "store.Get")
//		defer func() { timer.StopErr(err) }()
//		...
//	}
//
// StartWithTracing starts a child span of the span ctx carries (a root span
// when it carries none) on an opentracing tracer — jaeger-client-go, set up by
// package instrument/tracing — and a Prometheus timer of the operation. The
// returned context carries the new span, so calls made with it nest beneath.
// Stop observes the duration and finishes the span.
//
// # Which instrumentation a call uses
//
// An *Instrumentation holds a tracer and the operation metrics. The
// package-level StartWithTracing uses the one attached to ctx (WithContext; the
// HTTP middleware and gRPC interceptors of instrument/tracehttp and
// instrument/tracegrpc attach theirs to every request), else the one set with
// SetDefault. The default is the single piece of package state, as
// opentracing.GlobalTracer is for opentracing: the talk's call sites have no
// receiver. Before SetDefault it traces with opentracing.GlobalTracer() and
// records no metrics.
//
// # Metrics
//
// Registered on the Registerer given to New (never the global registry unless
// passed), prefixed by Options.Namespace:
//
//   - <ns>_operation_duration_seconds{operation}: histogram of every timed
//     operation; when the span is sampled, the observation carries the trace
//     ID as an exemplar (OpenMetrics), linking a slow bucket to a trace.
//   - <ns>_operation_errors_total{operation}: operations stopped with an error.
//
// The number of distinct operation label values is capped
// (Options.MaxOperations, default 1000); further names are recorded as
// operation="other" so a name built from request data cannot explode the
// series count. Spans keep the real name.
//
// # Cost
//
// StartWithTracing+Stop allocates what the tracer allocates for a span plus
// the Timer and one context; observers are cached per operation, so no label
// hashing happens on the hot path. See BenchmarkStartStop.
package metrics

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"github.com/prometheus/client_golang/prometheus"
	jaeger "github.com/uber/jaeger-client-go"
)

// OverflowOperation is the operation label of names past Options.MaxOperations.
const OverflowOperation = "other"

// Options configure an Instrumentation.
type Options struct {
	// Namespace prefixes metric names ("" means none: operation_duration_seconds).
	Namespace string
	// Buckets of the duration histogram (nil: prometheus.DefBuckets).
	Buckets []float64
	// MaxOperations caps distinct operation label values (0: 1000).
	MaxOperations int
	// Now is the clock (nil: time.Now). Spans use the same start and finish
	// times as the histogram.
	Now func() time.Time
	// NoExemplars turns off the trace-ID exemplars of sampled spans (they
	// cost the Prometheus client about ten allocations per observation).
	NoExemplars bool
}

// Instrumentation is a tracer plus per-operation metrics. It is safe for
// concurrent use.
type Instrumentation struct {
	tracer opentracing.Tracer
	now    func() time.Time

	durations *prometheus.HistogramVec // nil: no metrics
	exemplars bool
	errors    *prometheus.CounterVec
	maxOps    int

	mu  sync.Mutex
	ops atomic.Pointer[map[string]*opMetrics] // copy-on-write cache
}

type opMetrics struct {
	obs  prometheus.Observer
	errs prometheus.Counter
}

// New returns an Instrumentation tracing with tracer (nil: the opentracing
// global tracer at each call) and registering its metrics on reg (nil: no
// metrics). It fails if the metrics are already registered on reg.
func New(tracer opentracing.Tracer, reg prometheus.Registerer, o Options) (*Instrumentation, error) {
	in := &Instrumentation{tracer: tracer, now: o.Now, maxOps: o.MaxOperations, exemplars: !o.NoExemplars}
	if in.now == nil {
		in.now = time.Now
	}
	if in.maxOps <= 0 {
		in.maxOps = 1000
	}
	empty := map[string]*opMetrics{}
	in.ops.Store(&empty)
	if reg == nil {
		return in, nil
	}
	buckets := o.Buckets
	if buckets == nil {
		buckets = prometheus.DefBuckets
	}
	in.durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: o.Namespace,
		Name:      "operation_duration_seconds",
		Help:      "Duration of timed operations (metrics.StartWithTracing).",
		Buckets:   buckets,
	}, []string{"operation"})
	in.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: o.Namespace,
		Name:      "operation_errors_total",
		Help:      "Timed operations that stopped with an error.",
	}, []string{"operation"})
	for _, c := range []prometheus.Collector{in.durations, in.errors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// Tracer returns the tracer spans are started on.
func (in *Instrumentation) Tracer() opentracing.Tracer {
	if in == nil || in.tracer == nil {
		return opentracing.GlobalTracer()
	}
	return in.tracer
}

func (in *Instrumentation) metricsFor(op string) *opMetrics {
	if in.durations == nil {
		return nil
	}
	if m, ok := (*in.ops.Load())[op]; ok {
		return m
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	cur := *in.ops.Load()
	if m, ok := cur[op]; ok {
		return m
	}
	label := op
	if len(cur) >= in.maxOps {
		if m, ok := cur[OverflowOperation]; ok {
			return m
		}
		label = OverflowOperation
	}
	m := &opMetrics{obs: in.durations.WithLabelValues(label), errs: in.errors.WithLabelValues(label)}
	next := make(map[string]*opMetrics, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[label] = m
	in.ops.Store(&next)
	return m
}

// Start starts a timed span named op with the given span options (a parent
// reference, tags, a start time are honoured; with no reference the span is
// a child of the span ctx carries, if any). The returned context carries the
// span and in. The HTTP and gRPC adapters use it with an extracted parent.
func (in *Instrumentation) Start(ctx context.Context, op string, opts ...opentracing.StartSpanOption) (*Timer, context.Context) {
	start := in.now()
	t := &Timer{in: in, op: op, start: start, m: in.metricsFor(op)}
	var parent opentracing.SpanContext
	if p := opentracing.SpanFromContext(ctx); p != nil {
		parent = p.Context()
	}
	tracer := in.Tracer()
	switch {
	case len(opts) == 0 && parent != nil:
		t.span = tracer.StartSpan(op, opentracing.ChildOf(parent), opentracing.StartTime(start))
	case len(opts) == 0:
		t.span = tracer.StartSpan(op, opentracing.StartTime(start))
	default:
		var so opentracing.StartSpanOptions
		for _, o := range opts {
			o.Apply(&so)
		}
		all := make([]opentracing.StartSpanOption, 0, len(opts)+2)
		if len(so.References) == 0 && parent != nil {
			all = append(all, opentracing.ChildOf(parent))
		}
		all = append(all, opts...)
		if so.StartTime.IsZero() {
			all = append(all, opentracing.StartTime(start))
		} else {
			t.start = so.StartTime
		}
		t.span = tracer.StartSpan(op, all...)
	}
	ctx = opentracing.ContextWithSpan(ctx, t.span)
	if cur, _ := ctx.Value(ctxKey{}).(*Instrumentation); cur != in {
		ctx = WithContext(ctx, in)
	}
	return t, ctx
}

// StartWithTracing starts a span named op, child of the span ctx carries, and
// a timer of op, on this Instrumentation.
func (in *Instrumentation) StartWithTracing(ctx context.Context, op string) (*Timer, context.Context) {
	return in.Start(ctx, op)
}

// Timer is one timed, traced operation. Stop (or StopErr) must be called
// exactly once; later calls do nothing. A Timer is not safe for concurrent
// use, like the span it wraps.
type Timer struct {
	in      *Instrumentation
	op      string
	start   time.Time
	span    opentracing.Span
	m       *opMetrics
	failed  bool
	stopped bool
}

// Span is the timer's span, for tags and logs.
func (t *Timer) Span() opentracing.Span { return t.span }

// SetTag sets a tag on the span.
func (t *Timer) SetTag(key string, value any) { t.span.SetTag(key, value) }

// SetError marks the operation failed: the span gets error=true and an error
// log with err's message (when err is not nil), and the error counter
// counts it at Stop. Errors that are context.Canceled are marked too: the
// operation did not complete.
func (t *Timer) SetError(err error) {
	t.failed = true
	ext.Error.Set(t.span, true)
	if err != nil {
		t.span.LogKV("event", "error", "message", err.Error())
	}
}

// Stop observes the elapsed time and finishes the span.
func (t *Timer) Stop() {
	if t.stopped {
		return
	}
	t.stopped = true
	end := t.in.now()
	if m := t.m; m != nil {
		d := end.Sub(t.start).Seconds()
		eo, canExemplar := m.obs.(prometheus.ExemplarObserver)
		if js, ok := t.span.(*jaeger.Span); ok && canExemplar && t.in.exemplars && js.SpanContext().IsSampled() {
			eo.ObserveWithExemplar(d, prometheus.Labels{"trace_id": traceIDHex(js.SpanContext().TraceID())})
		} else {
			m.obs.Observe(d)
		}
		if t.failed {
			m.errs.Inc()
		}
	}
	t.span.FinishWithOptions(opentracing.FinishOptions{FinishTime: end})
}

// StopErr marks the operation failed when err is not nil, then stops it:
//
//	defer func() { timer.StopErr(err) }()
func (t *Timer) StopErr(err error) {
	if err != nil && !t.stopped {
		t.SetError(err)
	}
	t.Stop()
}

// traceIDHex is TraceID.String without fmt: 32 hex digits for 128-bit IDs,
// 16 for 64-bit ones (as Jaeger and tracepipe print them).
func traceIDHex(id jaeger.TraceID) string {
	const digits = "0123456789abcdef"
	var b [32]byte
	n := 16
	if id.High != 0 {
		n = 32
	}
	v := id.Low
	for i := n - 1; i >= 0; i-- {
		if i == 15 && n == 32 {
			v = id.High
		}
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:n])
}

type ctxKey struct{}

// WithContext returns ctx carrying in: StartWithTracing(ctx, …) and the
// adapters use it instead of the default.
func WithContext(ctx context.Context, in *Instrumentation) context.Context {
	return context.WithValue(ctx, ctxKey{}, in)
}

// Attached returns the Instrumentation ctx carries, if any.
func Attached(ctx context.Context) (*Instrumentation, bool) {
	in, ok := ctx.Value(ctxKey{}).(*Instrumentation)
	return in, ok
}

// FromContext returns the Instrumentation ctx carries, else the default.
func FromContext(ctx context.Context) *Instrumentation {
	if in, ok := ctx.Value(ctxKey{}).(*Instrumentation); ok {
		return in
	}
	return Default()
}

var (
	defaultMu sync.RWMutex
	def       = &Instrumentation{now: time.Now, maxOps: 1}
)

// SetDefault makes in the Instrumentation of calls whose context carries
// none. Call it once at start-up, before serving.
func SetDefault(in *Instrumentation) {
	if in == nil {
		panic(errors.New("metrics.SetDefault: nil Instrumentation"))
	}
	defaultMu.Lock()
	def = in
	defaultMu.Unlock()
}

// Default returns the Instrumentation set with SetDefault.
func Default() *Instrumentation {
	defaultMu.RLock()
	defer defaultMu.RUnlock()
	return def
}

// StartWithTracing starts a span named op, child of the span ctx carries (a
// root span if none), and a timer of op; the returned context carries the
// span. It uses the Instrumentation ctx carries, else the default.
func StartWithTracing(ctx context.Context, op string) (*Timer, context.Context) {
	return FromContext(ctx).Start(ctx, op)
}
