// Package tracegen generates realistic synthetic trace workloads: a fixed catalogue
// of services and operations calling each other in a tree (sequential and
// parallel calls, client and server spans on different hosts, asynchronous
// FOLLOWS_FROM work behind a message queue with producer and consumer spans,
// errors that propagate to callers, tags such as shard, host and client,
// process host tags), and an interleaved, shuffled delivery order across
// traces, as a collector fleet would deliver them.
//
// Everything is deterministic for a Config (same seed, same spans, same
// order); nothing reads the wall clock. Ground truth (Truth) lists what was
// generated, for tests and for checking a pipeline end to end.
//
// Config.ClockSkew gives every host a seeded clock offset (skew.go): the
// workload's traces carry the skewed timestamps, TrueTraces the true ones,
// and Workload.ScoreSkewRepair measures a clock-skew repair against the
// analysis of the true traces (docs/clock-skew.md).
package tracegen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Slow makes one operation slower: its self time is multiplied by Factor.
type Slow struct {
	Service, Operation string
	Factor             float64
}

// Config describes a workload. Zero values mean the defaults.
type Config struct {
	Seed      uint64
	Traces    int       // number of traces (default 1000)
	Start     time.Time // timestamp of the first trace (default 2026-01-01T00:00:00Z)
	Interval  time.Duration
	ErrorRate float64 // probability that a leaf call fails (default 0.01; negative: none)
	// Interleave is how many consecutive traces have their spans shuffled
	// together in Order (default 50; 1 keeps traces apart).
	Interleave int
	Slow       []Slow
	// ClockSkew, when positive, gives every host a clock offset of up to
	// ±ClockSkew (see skew.go): Workload.Traces carry skewed timestamps,
	// Workload.TrueTraces the true ones.
	ClockSkew time.Duration
	// DirectCalls is the probability that a call has no client span (its
	// client library is not instrumented): the callee's server span is then
	// a direct child of the caller's span. Default 0.
	DirectCalls float64
	// AsymmetricLatency draws a call's request and response network latencies
	// independently (by default they are equal).
	AsymmetricLatency bool
}

// Workload is a generated set of traces.
type Workload struct {
	// Traces as the hosts recorded them (with clock offsets when
	// Config.ClockSkew is set).
	Traces []*model.Trace
	// TrueTraces are the traces on true time when Config.ClockSkew is set
	// (nil otherwise: Traces are true).
	TrueTraces []*model.Trace
	// Offsets maps host names to their clock offsets (Config.ClockSkew).
	Offsets map[string]time.Duration
	cfg     Config
}

func (c Config) withDefaults() Config {
	if c.Traces <= 0 {
		c.Traces = 1000
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Millisecond
	}
	if c.ErrorRate == 0 {
		c.ErrorRate = 0.01
	}
	if c.Interleave <= 0 {
		c.Interleave = 50
	}
	return c
}

// call is one step of an operation: a call to another operation, possibly
// in parallel with the next calls of the same group, or an async publish.
type call struct {
	service, op string
	parallel    int     // >1: this many copies run in parallel
	async       bool    // publish to a queue; the consumer runs later (FOLLOWS_FROM)
	prob        float64 // probability the call happens (0 = always)
}

type operation struct {
	selfMean time.Duration
	kind     model.SpanKind
	steps    [][]call // steps run in sequence; calls within a step run in parallel
	db       string   // db.system tag
}

type opKey struct{ service, op string }

// catalogue is the simulated system.
var catalogue = map[opKey]operation{
	{"frontend", "GET /checkout"}: {selfMean: 3 * time.Millisecond, kind: model.KindServer, steps: [][]call{
		{{service: "auth", op: "Authenticate"}},
		{{service: "cart", op: "GetCart"}, {service: "users", op: "GetProfile"}},
		{{service: "checkout", op: "PlaceOrder"}},
	}},
	{"frontend", "GET /product"}: {selfMean: 2 * time.Millisecond, kind: model.KindServer, steps: [][]call{
		{{service: "auth", op: "Authenticate"}},
		{{service: "catalog", op: "GetProduct"}, {service: "recommend", op: "ListRecommendations", prob: 0.7}},
	}},
	{"frontend", "POST /cart"}: {selfMean: 2 * time.Millisecond, kind: model.KindServer, steps: [][]call{
		{{service: "auth", op: "Authenticate"}},
		{{service: "cart", op: "AddItem"}},
	}},
	{"auth", "Authenticate"}:  {selfMean: 1 * time.Millisecond, kind: model.KindServer, steps: [][]call{{{service: "redis", op: "GET"}}}},
	{"cart", "GetCart"}:       {selfMean: 1 * time.Millisecond, kind: model.KindServer, steps: [][]call{{{service: "redis", op: "HGETALL"}}}},
	{"cart", "AddItem"}:       {selfMean: 2 * time.Millisecond, kind: model.KindServer, steps: [][]call{{{service: "catalog", op: "GetProduct"}}, {{service: "redis", op: "HSET"}}}},
	{"users", "GetProfile"}:   {selfMean: 1 * time.Millisecond, kind: model.KindServer, steps: [][]call{{{service: "mysql", op: "SELECT users"}}}},
	{"catalog", "GetProduct"}: {selfMean: 1 * time.Millisecond, kind: model.KindServer, steps: [][]call{{{service: "mysql", op: "SELECT products"}}}},
	{"recommend", "ListRecommendations"}: {selfMean: 4 * time.Millisecond, kind: model.KindServer, steps: [][]call{
		{{service: "catalog", op: "GetProduct", parallel: 3}},
	}},
	{"checkout", "PlaceOrder"}: {selfMean: 3 * time.Millisecond, kind: model.KindServer, steps: [][]call{
		{{service: "inventory", op: "Reserve"}},
		{{service: "payment", op: "Charge"}},
		{{service: "mysql", op: "INSERT orders"}},
		{{service: "orders-queue", op: "order.placed", async: true}},
	}},
	{"inventory", "Reserve"}:      {selfMean: 2 * time.Millisecond, kind: model.KindServer, steps: [][]call{{{service: "mysql", op: "UPDATE stock"}}}},
	{"payment", "Charge"}:         {selfMean: 8 * time.Millisecond, kind: model.KindServer, steps: [][]call{{{service: "fraud", op: "Score"}}, {{service: "bank-gw", op: "Authorize"}}}},
	{"fraud", "Score"}:            {selfMean: 5 * time.Millisecond, kind: model.KindServer},
	{"bank-gw", "Authorize"}:      {selfMean: 20 * time.Millisecond, kind: model.KindServer},
	{"email", "SendConfirmation"}: {selfMean: 6 * time.Millisecond, kind: model.KindConsumer, steps: [][]call{{{service: "users", op: "GetProfile"}}}},
	{"redis", "GET"}:              {selfMean: 300 * time.Microsecond, kind: model.KindServer, db: "redis"},
	{"redis", "HGETALL"}:          {selfMean: 400 * time.Microsecond, kind: model.KindServer, db: "redis"},
	{"redis", "HSET"}:             {selfMean: 300 * time.Microsecond, kind: model.KindServer, db: "redis"},
	{"mysql", "SELECT users"}:     {selfMean: 2 * time.Millisecond, kind: model.KindServer, db: "mysql"},
	{"mysql", "SELECT products"}:  {selfMean: 2 * time.Millisecond, kind: model.KindServer, db: "mysql"},
	{"mysql", "INSERT orders"}:    {selfMean: 4 * time.Millisecond, kind: model.KindServer, db: "mysql"},
	{"mysql", "UPDATE stock"}:     {selfMean: 3 * time.Millisecond, kind: model.KindServer, db: "mysql"},
}

// Entry operations (roots) and their weights.
var roots = []struct {
	op     string
	weight float64
}{{"GET /product", 0.5}, {"POST /cart", 0.3}, {"GET /checkout", 0.2}}

// Services lists the simulated services (for documentation and tests).
func Services() []string {
	seen := map[string]bool{}
	var out []string
	for k := range catalogue {
		if !seen[k.service] {
			seen[k.service] = true
			out = append(out, k.service)
		}
	}
	sort.Strings(out)
	return out
}

var clients = []string{"web", "ios", "android", "partner-api"}

type builder struct {
	rng   *rand.Rand
	cfg   Config
	slow  map[opKey]float64
	trace *model.Trace
	next  uint64
}

// Generate builds the workload for cfg.
func Generate(cfg Config) *Workload {
	cfg = cfg.withDefaults()
	b := &builder{rng: rand.New(rand.NewPCG(cfg.Seed, 0x7261636570697065)), cfg: cfg, slow: map[opKey]float64{}}
	for _, s := range cfg.Slow {
		b.slow[opKey{s.Service, s.Operation}] = s.Factor
	}
	w := &Workload{cfg: cfg}
	for i := 0; i < cfg.Traces; i++ {
		w.Traces = append(w.Traces, b.build(i))
	}
	if cfg.ClockSkew > 0 {
		w.applySkew()
	}
	return w
}

func (b *builder) build(i int) *model.Trace {
	id := model.TraceID{High: b.rng.Uint64(), Low: b.rng.Uint64()}
	if id.Low == 0 {
		id.Low = 1
	}
	b.trace = &model.Trace{TraceID: id}
	b.next = b.rng.Uint64() | 1
	x := b.rng.Float64()
	root := roots[len(roots)-1].op
	for _, r := range roots {
		if x < r.weight {
			root = r.op
			break
		}
		x -= r.weight
	}
	start := model.TimestampOf(b.cfg.Start.Add(time.Duration(i) * b.cfg.Interval))
	client := clients[b.rng.IntN(len(clients))]
	s, _ := b.server(opKey{"frontend", root}, start, nil, model.ChildOf, client)
	s.Tags = append(s.Tags, model.String("client", client), model.String("http.method", root[:3]))
	return b.trace
}

func (b *builder) newSpan(k opKey, kind model.SpanKind, start model.Timestamp, parent *model.Span, ref model.RefType) *model.Span {
	b.next += 0x9e3779b97f4a7c15
	s := &model.Span{
		TraceID:   b.trace.TraceID,
		SpanID:    model.SpanID(b.next | 1),
		Operation: k.op,
		Start:     start,
		Kind:      kind,
		Flags:     1,
		Process:   b.process(k.service),
	}
	if parent != nil {
		s.References = []model.Reference{{Type: ref, TraceID: b.trace.TraceID, SpanID: parent.SpanID}}
	}
	if kind != model.KindUnspecified {
		s.Tags = append(s.Tags, model.String("span.kind", kind.String()))
	}
	b.trace.Spans = append(b.trace.Spans, s)
	return s
}

func (b *builder) process(service string) model.Process {
	host := fmt.Sprintf("%s-%d", service, b.rng.IntN(3))
	return model.Process{ServiceName: service, Tags: model.KeyValues{
		model.String(hostTag, host),
		model.String("ip", fmt.Sprintf("10.0.%d.%d", len(service), b.rng.IntN(3)+10)),
		model.String("jaeger.version", "Go-2.30.0"),
	}}
}

// duration draws a log-normal self time around mean.
func (b *builder) duration(k opKey, mean time.Duration) time.Duration {
	d := time.Duration(float64(mean) * math.Exp(b.rng.NormFloat64()*0.4-0.08))
	if f, ok := b.slow[k]; ok {
		d = time.Duration(float64(d) * f)
	}
	if d < time.Microsecond {
		d = time.Microsecond
	}
	return d.Truncate(time.Microsecond)
}

// server creates the span of operation k starting at start and its subtree,
// returning it and whether it failed.
func (b *builder) server(k opKey, start model.Timestamp, parent *model.Span, ref model.RefType, client string) (*model.Span, bool) {
	op := catalogue[k]
	s := b.newSpan(k, op.kind, start, parent, ref)
	if op.db != "" {
		s.Tags = append(s.Tags, model.String("db.system", op.db), model.String("db.statement", k.op+" ..."))
	}
	s.Tags = append(s.Tags, model.String("shard", fmt.Sprintf("shard-%d", b.rng.IntN(4))))
	self := b.duration(k, op.selfMean)
	t := start.Add(self / 2)
	failed := false
	for _, step := range op.steps {
		end := t
		for _, c := range step {
			if c.prob > 0 && b.rng.Float64() >= c.prob {
				continue
			}
			n := max(c.parallel, 1)
			for j := 0; j < n; j++ {
				var e model.Timestamp
				var f bool
				if c.async {
					e = b.publish(s, c, t)
				} else {
					e, f = b.client(s, opKey{c.service, c.op}, t.Add(time.Duration(j)*20*time.Microsecond), client)
				}
				if e > end {
					end = e
				}
				failed = failed || (f && b.rng.Float64() < 0.7)
			}
		}
		t = end.Add(50 * time.Microsecond)
	}
	if len(op.steps) == 0 && b.cfg.ErrorRate > 0 && b.rng.Float64() < b.cfg.ErrorRate {
		failed = true
	}
	s.Duration = t.Add(self/2).Sub(start) + 0
	if failed {
		s.Status = model.StatusError
		s.Tags = append(s.Tags, model.Bool("error", true))
		s.Logs = append(s.Logs, model.Log{Timestamp: s.End().Add(-time.Microsecond), Fields: model.KeyValues{
			model.String("event", "error"), model.String("message", k.op+" failed")}})
	}
	return s, failed
}

// client creates a client span in parent's service calling k, with k's server
// span as its child; the network adds latency on both sides.
func (b *builder) client(parent *model.Span, k opKey, start model.Timestamp, clientTag string) (model.Timestamp, bool) {
	if b.cfg.DirectCalls > 0 && b.rng.Float64() < b.cfg.DirectCalls {
		req := time.Duration(100+b.rng.IntN(300)) * time.Microsecond
		resp := req
		if b.cfg.AsymmetricLatency {
			resp = time.Duration(100+b.rng.IntN(300)) * time.Microsecond
		}
		ss, failed := b.server(k, start.Add(req), parent, model.ChildOf, clientTag)
		return ss.End().Add(resp), failed
	}
	cs := b.newSpan(opKey{parent.Process.ServiceName, k.op}, model.KindClient, start, parent, model.ChildOf)
	cs.Process = parent.Process
	cs.Tags = append(cs.Tags, model.String("peer.service", k.service))
	net := time.Duration(100+b.rng.IntN(300)) * time.Microsecond
	resp := net
	if b.cfg.AsymmetricLatency {
		resp = time.Duration(100+b.rng.IntN(300)) * time.Microsecond
	}
	ss, failed := b.server(k, start.Add(net), cs, model.ChildOf, clientTag)
	cs.Duration = ss.End().Add(resp).Sub(start)
	if failed {
		cs.Status = model.StatusError
		cs.Tags = append(cs.Tags, model.Bool("error", true))
	}
	return cs.End(), failed
}

// publish creates a producer span and, later, the consumer's span following
// from it. The consumer never blocks the publisher's trace.
func (b *builder) publish(parent *model.Span, c call, start model.Timestamp) model.Timestamp {
	ps := b.newSpan(opKey{parent.Process.ServiceName, "publish " + c.op}, model.KindProducer, start, parent, model.ChildOf)
	ps.Process = parent.Process
	ps.Tags = append(ps.Tags, model.String("messaging.system", "kafka"), model.String("messaging.destination", c.op))
	ps.Duration = time.Duration(200+b.rng.IntN(200)) * time.Microsecond
	delay := time.Duration(1+b.rng.IntN(20)) * time.Millisecond
	b.server(opKey{"email", "SendConfirmation"}, ps.End().Add(delay), ps, model.FollowsFrom, "")
	return ps.End()
}

// Order returns every span of the workload in delivery order: traces are
// taken in groups of Config.Interleave, and the spans of a group are shuffled
// together (so spans of many traces interleave and arrive out of order).
func (w *Workload) Order() []*model.Span {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, 0x6f72646572))
	var out []*model.Span
	for i := 0; i < len(w.Traces); i += w.cfg.Interleave {
		n := len(out)
		for _, t := range w.Traces[i:min(i+w.cfg.Interleave, len(w.Traces))] {
			out = append(out, t.Spans...)
		}
		group := out[n:]
		rng.Shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
	}
	return out
}

// Truth is the ground truth of a workload: what a pipeline should find.
type Truth struct {
	Traces     int              `json:"traces"`
	Spans      int              `json:"spans"`
	Errors     int              `json:"errorSpans"`
	Operations []OperationTruth `json:"operations"`
	// TraceSpans maps each trace ID (Jaeger hex form) to its span count.
	TraceSpans map[string]int `json:"traceSpans"`
	Slow       []Slow         `json:"slow,omitempty"`
	// With clock skew: the hosts' clock offsets and the analysis of every
	// trace on true time (critical path, self times).
	ClockOffsets []HostOffset `json:"clockOffsets,omitempty"`
	Analyses     []TraceTruth `json:"analyses,omitempty"`
}

// OperationTruth counts one operation's spans.
type OperationTruth struct {
	Service   string `json:"service"`
	Operation string `json:"operation"`
	Count     int    `json:"count"`
	Errors    int    `json:"errors"`
}

// Truth computes the workload's ground truth.
func (w *Workload) Truth() Truth {
	t := Truth{Traces: len(w.Traces), TraceSpans: map[string]int{}, Slow: w.cfg.Slow}
	if w.TrueTraces != nil {
		t.ClockOffsets = w.Hosts()
		t.Analyses = w.TrueAnalyses()
	}
	ops := map[opKey]*OperationTruth{}
	for _, tr := range w.Traces {
		t.Spans += len(tr.Spans)
		t.TraceSpans[tr.TraceID.String()] = len(tr.Spans)
		for _, s := range tr.Spans {
			k := opKey{s.Process.ServiceName, s.Operation}
			o := ops[k]
			if o == nil {
				o = &OperationTruth{Service: k.service, Operation: k.op}
				ops[k] = o
			}
			o.Count++
			if s.IsError() {
				o.Errors++
				t.Errors++
			}
		}
	}
	for _, o := range ops {
		t.Operations = append(t.Operations, *o)
	}
	sort.Slice(t.Operations, func(i, j int) bool {
		a, b := t.Operations[i], t.Operations[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Operation < b.Operation
	})
	return t
}
