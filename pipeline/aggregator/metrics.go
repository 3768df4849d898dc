package aggregator

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
)

// overflow is the label value of series beyond MaxMetricSeries.
const overflow = rollup.Overflow

// Metrics are the aggregator's Prometheus metrics, registered on the
// Registerer given to New. Names:
//
// Per operation (labels service, operation, kind; counted once per trace,
// at the first version the aggregator sees; exact figures are in the rollups):
//
//	tracepipe_aggregator_span_duration_seconds         histogram, exemplars {trace_id}
//	tracepipe_aggregator_span_critical_path_seconds    histogram, exemplars {trace_id}
//	tracepipe_aggregator_calls_total                   spans
//	tracepipe_aggregator_errors_total                  failed spans
//	tracepipe_aggregator_edge_calls_total{caller,callee}
//	tracepipe_aggregator_edge_errors_total{caller,callee}
//
// Health (stage is "map" or "reduce"):
//
//	tracepipe_aggregator_consumer_lag{stage,partition}       messages behind the partition's end
//	tracepipe_aggregator_partitions{stage}                   partitions owned
//	tracepipe_aggregator_windows_open                        resident windows not yet closed
//	tracepipe_aggregator_windows_resident{stage}             windows with state in memory
//	tracepipe_aggregator_resident_traces                     trace versions held in memory
//	tracepipe_aggregator_watermark_seconds                   the instance's watermark (Unix time)
//	tracepipe_aggregator_traces_total{result}                latest, replaced, duplicate, stale
//	tracepipe_aggregator_late_traces_total                   latest versions that arrived after their window closed
//	tracepipe_aggregator_dropped_total{stage,reason}         decode, invalid, too-late, ...
//	tracepipe_aggregator_overflowed_keys_total               keys folded into __overflow__
//	tracepipe_aggregator_key_overflow_total                  spans and calls counted under __overflow__ services or
//	                                                         operations because their window was at --operation-limit or --key-limit
//	tracepipe_aggregator_window_keys{partition}              keys of the partition's fullest resident window (map stage)
//	tracepipe_aggregator_window_key_limit                    --key-limit: the fill is window_keys / window_key_limit
//	tracepipe_aggregator_metric_series_overflow_total        observations counted under __overflow__ labels
//	tracepipe_aggregator_rewinds_total{stage}                re-reads for data later than the retention
//	tracepipe_aggregator_rewind_messages_total{stage}
//	tracepipe_aggregator_partials_published_total
//	tracepipe_aggregator_rollups_written_total{resolution}
//	tracepipe_aggregator_retractions_total
//	tracepipe_aggregator_storage_reads_total
//	tracepipe_aggregator_write_errors_total{stage}           failed publishes (map), failed storage reads and writes (reduce, each attempt)
//
// Commits, restarts after an error, group membership and the consumer lag
// as kafka-consumer-groups sees it are the runtime's, labelled stage
// "aggregator-map" and "aggregator-reduce" (see pipeline/kafka):
// tracepipe_kafka_commits_total, tracepipe_kafka_partition_restarts_total,
// tracepipe_kafka_group_member, tracepipe_kafka_consumer_lag, ...
type Metrics struct {
	duration, critical *prometheus.HistogramVec
	calls, errors      *prometheus.CounterVec
	edgeCalls, edgeErr *prometheus.CounterVec

	lag            *prometheus.GaugeVec
	partitions     *prometheus.GaugeVec
	windowsOpen    prometheus.Gauge
	windowsRes     *prometheus.GaugeVec
	residentTraces prometheus.Gauge
	watermark      prometheus.Gauge
	traces         *prometheus.CounterVec
	late           prometheus.Counter
	dropped        *prometheus.CounterVec
	drops          *ratelog.Logger // a line per drop reason, rate-limited, beside dropped
	overflowed     prometheus.Counter
	keyOverflow    prometheus.Counter
	windowKeys     *prometheus.GaugeVec
	keyLimit       prometheus.Gauge
	seriesOverflow prometheus.Counter
	rewinds        *prometheus.CounterVec
	rewindMsgs     *prometheus.CounterVec
	published      prometheus.Counter
	written        *prometheus.CounterVec
	retractions    prometheus.Counter
	reads          prometheus.Counter
	writeErrors    *prometheus.CounterVec

	limit  int
	mu     sync.Mutex
	series map[[3]string]*opSeries
	edges  map[[2]string]*edgeSeries
	// edgeOverflow counts the edges beyond limit.
	edgeOverflow *edgeSeries
	now          func() time.Time // exemplar throttling's clock
}

// exemplarEvery is how often a span-metric series takes a new exemplar. A
// scrape (every second at the most) sees only the last one, and making an
// exemplar (labels checked, a timestamp, a protobuf message) cost more than
// the rest of observing a span: the end-to-end benchmark spent a third of
// the map stage in it while every span made one.
const exemplarEvery = time.Second

// opSeries is one (service, operation, kind) series of the span metrics.
type opSeries struct {
	duration, critical prometheus.Observer
	calls, errors      prometheus.Counter
	exemplarAt         time.Time // when an observation last carried an exemplar
}

func newMetrics(reg prometheus.Registerer, limit int) *Metrics {
	const ns = "tracepipe_aggregator_"
	opLabels := []string{"service", "operation", "kind"}
	buckets := prometheus.ExponentialBucketsRange(100e-6, 100, 19)
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: ns + "span_duration_seconds",
			Help: "Span durations per operation (first version of each trace), with trace-ID exemplars.", Buckets: buckets,
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160, NativeHistogramMinResetDuration: time.Hour}, opLabels),
		critical: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: ns + "span_critical_path_seconds",
			Help: "Time each span spent on its trace's critical path, per operation, with trace-ID exemplars.", Buckets: buckets,
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160, NativeHistogramMinResetDuration: time.Hour}, opLabels),
		calls:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "calls_total", Help: "Spans per operation."}, opLabels),
		errors:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "errors_total", Help: "Failed spans per operation."}, opLabels),
		edgeCalls:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "edge_calls_total", Help: "Calls from one service to another."}, []string{"caller", "callee"}),
		edgeErr:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "edge_errors_total", Help: "Failed calls from one service to another."}, []string{"caller", "callee"}),
		lag:            prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "consumer_lag", Help: "Messages between the stage's position and the partition's end."}, []string{"stage", "partition"}),
		partitions:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "partitions", Help: "Partitions owned by this instance."}, []string{"stage"}),
		windowsOpen:    prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "windows_open", Help: "Resident base windows not yet closed by the watermark."}),
		windowsRes:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "windows_resident", Help: "Base windows with state in memory."}, []string{"stage"}),
		residentTraces: prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "resident_traces", Help: "Trace versions whose contributions are in memory."}),
		watermark:      prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "watermark_seconds", Help: "The instance's event-time watermark (Unix seconds)."}),
		traces:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "traces_total", Help: "Trace versions by what they were: latest (first of their trace), replaced (a newer version), duplicate, stale."}, []string{"result"}),
		late:           prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "late_traces_total", Help: "Latest versions that arrived after their window closed; their rollups were rewritten."}),
		dropped:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "dropped_total", Help: "Messages not aggregated, by reason."}, []string{"stage", "reason"}),
		overflowed:     prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "overflowed_keys_total", Help: "Keys folded into the __overflow__ dimension value when publishing."}),
		keyOverflow:    prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "key_overflow_total", Help: "Spans and calls counted under __overflow__ services or operations because their window was at the operation or key limit."}),
		windowKeys:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "window_keys", Help: "Keys of the fullest resident window of a source partition (map stage)."}, []string{"partition"}),
		keyLimit:       prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "window_key_limit", Help: "Keys a window may hold (--key-limit) before new keys count under __overflow__."}),
		seriesOverflow: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "metric_series_overflow_total", Help: "Observations counted under __overflow__ labels (beyond --max-metric-series)."}),
		rewinds:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "rewinds_total", Help: "Re-reads of a partition to rebuild windows no longer in memory."}, []string{"stage"}),
		rewindMsgs:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "rewind_messages_total", Help: "Messages re-read by rewinds."}, []string{"stage"}),
		published:      prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "partials_published_total", Help: "Partial aggregates acknowledged by the partials topic."}),
		written:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "rollups_written_total", Help: "Rollups durably written, by resolution."}, []string{"resolution"}),
		retractions:    prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "retractions_total", Help: "Rollups rewritten empty because their key disappeared."}),
		reads:          prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "storage_reads_total", Help: "Stored rollups read back (coarse windows, restarts)."}),
		writeErrors:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "write_errors_total", Help: "Failed publishes (map), or failed storage reads and writes (reduce; each failed attempt, retried in place)."}, []string{"stage"}),
		limit:          limit,
		series:         map[[3]string]*opSeries{},
		now:            time.Now,
		edges:          map[[2]string]*edgeSeries{},
	}
	for _, st := range []string{"map", "reduce"} {
		m.partitions.WithLabelValues(st)
		m.writeErrors.WithLabelValues(st)
		m.rewinds.WithLabelValues(st)
	}
	for _, r := range []string{"latest", "replaced", "duplicate", "stale"} {
		m.traces.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.duration, m.critical, m.calls, m.errors, m.edgeCalls, m.edgeErr,
		m.lag, m.partitions, m.windowsOpen, m.windowsRes, m.residentTraces, m.watermark, m.traces, m.late,
		m.dropped, m.overflowed, m.keyOverflow, m.windowKeys, m.keyLimit, m.seriesOverflow, m.rewinds, m.rewindMsgs, m.published, m.written,
		m.retractions, m.reads, m.writeErrors}
}

// opLabels applies the series limit: the first MaxMetricSeries label sets
// keep their labels, later ones become __overflow__ (kind is kept). It
// returns the series and whether an observation at now should carry an
// exemplar (the series' first, then one per exemplarEvery). m.mu is held.
func (m *Metrics) opLabels(svc, op, kind string, now time.Time) (*opSeries, bool) {
	k := [3]string{svc, op, kind}
	se := m.series[k]
	if se == nil {
		if len(m.series) >= m.limit {
			m.seriesOverflow.Inc()
			k = [3]string{overflow, overflow, kind}
			se = m.series[k]
		}
		if se == nil {
			se = &opSeries{duration: m.duration.WithLabelValues(k[0], k[1], k[2]), critical: m.critical.WithLabelValues(k[0], k[1], k[2]),
				calls: m.calls.WithLabelValues(k[0], k[1], k[2]), errors: m.errors.WithLabelValues(k[0], k[1], k[2])}
			m.series[k] = se // overflow keys may take the map one past the limit per kind
		}
	}
	if !se.exemplarAt.IsZero() && now.Sub(se.exemplarAt) < exemplarEvery {
		return se, false
	}
	se.exemplarAt = now
	return se, true
}

// edgeSeries is one (caller, callee) series of the edge metrics; errors is
// made at the edge's first failed call. m.mu guards the fields.
type edgeSeries struct {
	caller, callee string
	calls, errors  prometheus.Counter
}

// edgeLabels applies the series limit to edge metrics as opLabels does
// (both labels become __overflow__). m.mu is held.
func (m *Metrics) edgeLabels(caller, callee string) *edgeSeries {
	k := [2]string{caller, callee}
	es := m.edges[k]
	if es == nil {
		if len(m.edges) >= m.limit {
			m.seriesOverflow.Inc()
			if m.edgeOverflow == nil {
				m.edgeOverflow = &edgeSeries{caller: overflow, callee: overflow, calls: m.edgeCalls.WithLabelValues(overflow, overflow)}
			}
			return m.edgeOverflow
		}
		es = &edgeSeries{caller: caller, callee: callee, calls: m.edgeCalls.WithLabelValues(caller, callee)}
		m.edges[k] = es
	}
	return es
}

// spanSeries is where observe counts one span.
type spanSeries struct {
	op       *opSeries
	exemplar bool
	edge     *edgeSeries // nil: no edge to another service
}

// smallTrace: traces up to this many spans find parents by a linear scan
// rather than a map.
const smallTrace = 32

// observe records the spans of a trace seen for the first time. The series
// of all its spans are looked up under one lock, with one clock reading.
func (m *Metrics) observe(at *model.AssembledTrace, edges bool) {
	spans := at.Trace.Spans
	var buf [smallTrace]spanSeries
	ss := buf[:0]
	var byID map[model.SpanID]*model.Span
	if edges && len(spans) > smallTrace {
		byID = make(map[model.SpanID]*model.Span, len(spans))
		for _, sp := range spans {
			byID[sp.SpanID] = sp
		}
	}
	m.mu.Lock()
	now := m.now()
	for _, sp := range spans {
		kind := sp.Kind.String()
		if kind == "" {
			kind = "unspecified"
		}
		var s spanSeries
		s.op, s.exemplar = m.opLabels(sp.Process.ServiceName, sp.Operation, kind, now)
		if edges {
			if p := parentOf(sp, spans, byID); p != nil && p.Process.ServiceName != sp.Process.ServiceName {
				s.edge = m.edgeLabels(p.Process.ServiceName, sp.Process.ServiceName)
				if sp.IsError() && s.edge.errors == nil {
					s.edge.errors = m.edgeErr.WithLabelValues(s.edge.caller, s.edge.callee)
				}
			}
		}
		ss = append(ss, s)
	}
	m.mu.Unlock()
	var ex prometheus.Labels // made once per trace, when a series takes an exemplar
	for i, sp := range spans {
		se := ss[i].op
		if ss[i].exemplar {
			if ex == nil {
				ex = prometheus.Labels{"trace_id": at.Trace.TraceID.String()}
			}
			se.duration.(prometheus.ExemplarObserver).ObserveWithExemplar(sp.Duration.Seconds(), ex)
			if i < len(at.Analysis.Spans) {
				se.critical.(prometheus.ExemplarObserver).ObserveWithExemplar(at.Analysis.Spans[i].CriticalPath.Seconds(), ex)
			}
		} else {
			se.duration.Observe(sp.Duration.Seconds())
			if i < len(at.Analysis.Spans) {
				se.critical.Observe(at.Analysis.Spans[i].CriticalPath.Seconds())
			}
		}
		se.calls.Inc()
		if sp.IsError() {
			se.errors.Inc()
		}
		if e := ss[i].edge; e != nil {
			e.calls.Inc()
			if sp.IsError() {
				e.errors.Inc()
			}
		}
	}
}

// parentOf returns sp's parent among spans (through byID when not nil),
// nil for a root or a parent not in the trace.
func parentOf(sp *model.Span, spans []*model.Span, byID map[model.SpanID]*model.Span) *model.Span {
	pid, _, ok := sp.ParentSpanID()
	if !ok {
		return nil
	}
	if byID != nil {
		return byID[pid]
	}
	// The map kept the last span of an ID.
	for i := len(spans) - 1; i >= 0; i-- {
		if spans[i].SpanID == pid {
			return spans[i]
		}
	}
	return nil
}

// partitionCounters turns a Partition's cumulative counters into metric
// increments.
func (m *Metrics) partitionCounters(prev, cur *rollup.PartitionCounters) {
	add := func(c prometheus.Counter, a, b int64) {
		if b > a {
			c.Add(float64(b - a))
		}
	}
	add(m.traces.WithLabelValues("latest"), prev.Traces-prev.Replaced, cur.Traces-cur.Replaced)
	add(m.traces.WithLabelValues("replaced"), prev.Replaced, cur.Replaced)
	add(m.traces.WithLabelValues("duplicate"), prev.Duplicates, cur.Duplicates)
	add(m.traces.WithLabelValues("stale"), prev.Stale, cur.Stale)
	add(m.late, prev.Late, cur.Late)
	add(m.overflowed, prev.Overflowed, cur.Overflowed)
	add(m.keyOverflow, prev.KeyOverflow, cur.KeyOverflow)
	add(m.rewinds.WithLabelValues("map"), prev.Rewinds, cur.Rewinds)
	add(m.rewindMsgs.WithLabelValues("map"), prev.Replayed, cur.Replayed)
	for reason, n := range cur.Dropped {
		add(m.dropped.WithLabelValues("map", reason), prev.Dropped[reason], n)
		m.logDrops("map", reason, n-prev.Dropped[reason])
	}
	add(m.dropped.WithLabelValues("map", "rewind-incomplete"), prev.RewindIncomplete, cur.RewindIncomplete)
	m.logDrops("map", "rewind-incomplete", cur.RewindIncomplete-prev.RewindIncomplete)
}

// dropWhy explains the drop reasons of the aggregate package.
var dropWhy = map[string]string{
	"too-late":          "the trace is further behind the partition's event time than --max-lateness; raise it to aggregate older data",
	"invalid":           "no trace ID, no version, or an analysis not aligned with the spans",
	"rewind-incomplete": "BUG: a rewind did not find an indexed version",
}

// logDrops writes a rate-limited line for n new drops of reason.
func (m *Metrics) logDrops(stage, reason string, n int64) {
	if n <= 0 || m.drops == nil {
		return
	}
	m.drops.Warn(stage+"/"+reason, "traces not aggregated", "stage", stage, "count", n, "why", dropWhy[reason])
}

func (m *Metrics) reduceCounters(prev, cur *rollup.ReduceCounters) {
	add := func(c prometheus.Counter, a, b int64) {
		if b > a {
			c.Add(float64(b - a))
		}
	}
	add(m.rewinds.WithLabelValues("reduce"), prev.Rewinds, cur.Rewinds)
	add(m.rewindMsgs.WithLabelValues("reduce"), prev.Replayed, cur.Replayed)
	add(m.retractions, prev.Retractions, cur.Retractions)
	add(m.reads, prev.Loads, cur.Loads)
	for reason, n := range cur.Dropped {
		add(m.dropped.WithLabelValues("reduce", reason), prev.Dropped[reason], n)
		m.logDrops("reduce", reason, n-prev.Dropped[reason])
	}
}

func partitionLabel(p int) string { return strconv.Itoa(p) }

func resolutionName(d time.Duration) string { return model.ResolutionName(d) }

func parseResolution(s string) (time.Duration, error) { return model.ParseResolution(s) }
