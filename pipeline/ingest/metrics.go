package ingest

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/ingest/assemble"
)

// maxPartitionLabels caps the partition label's values; higher partitions
// share the label value "__overflow__".
const maxPartitionLabels = 256

// Metrics are the ingester's Prometheus metrics (names in the package doc).
type Metrics struct {
	SpansIn         prometheus.Counter
	Messages        prometheus.Counter
	DecodeErrors    prometheus.Counter
	DeadLetters     prometheus.Counter
	SkippedMessages prometheus.Counter
	EmptyMessages   prometheus.Counter
	TracesOut       *prometheus.CounterVec // completion
	TruncatedTraces prometheus.Counter
	LateSpans       prometheus.Counter
	DuplicateSpans  prometheus.Counter
	DroppedSpans    *prometheus.CounterVec // reason
	DroppedTraces   *prometheus.CounterVec // reason
	ProduceErrors   prometheus.Counter
	Rekeyed         prometheus.Counter
	InFlightTraces  prometheus.Gauge
	InFlightSpans   prometheus.Gauge
	InFlightBytes   prometheus.Gauge
	Paused          prometheus.Gauge
	// OutputInFlightBytes and EmitWaiting watch the output budget
	// (--max-output-bytes-in-flight).
	OutputInFlightBytes prometheus.Gauge
	EmitWaiting         prometheus.Gauge
	AssemblyDelay       prometheus.Histogram
	Committed           *prometheus.GaugeVec // partition
	CommitLag           *prometheus.GaugeVec // partition
	ConsumerLag         *prometheus.GaugeVec // partition
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "tracepipe", "ingester"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gv := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, []string{"partition"})
	}
	m := &Metrics{
		SpansIn:             c("spans_in_total", "Spans decoded from the spans topic."),
		Messages:            c("messages_in_total", "Messages read from the spans topic."),
		DecodeErrors:        c("decode_errors_total", "Messages that could not be decoded."),
		DeadLetters:         c("dead_letters_total", "Messages written to the dead-letter topic (acknowledged)."),
		SkippedMessages:     c("skipped_messages_total", "Messages the spans topic's retention deleted before they were read (offsets skipped)."),
		EmptyMessages:       c("empty_messages_total", "Messages without any span (empty, or an OTLP request with no spans), skipped."),
		TracesOut:           prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "traces_out_total", Help: "Trace versions emitted, by completion reason."}, []string{"completion"}),
		TruncatedTraces:     c("truncated_traces_total", "Trace versions emitted with spans dropped by --max-spans-per-trace."),
		LateSpans:           c("late_spans_total", "Spans that arrived after their trace was emitted (new versions)."),
		DuplicateSpans:      c("duplicate_spans_total", "Exact copies of buffered spans, dropped."),
		DroppedSpans:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_spans_total", Help: "Spans dropped, by reason (truncated, too_late)."}, []string{"reason"}),
		DroppedTraces:       prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_traces_total", Help: "Trace versions not published, by reason (too_large)."}, []string{"reason"}),
		ProduceErrors:       c("produce_errors_total", "Output writes that failed after retries (the partition restarts from its committed offset)."),
		Rekeyed:             c("rekeyed_messages_total", "Messages re-published in re-key mode (acknowledged)."),
		InFlightTraces:      g("inflight_traces", "Traces buffered or retained for late spans."),
		InFlightSpans:       g("inflight_spans", "Spans buffered or retained for late spans."),
		InFlightBytes:       g("inflight_bytes", "Bytes of buffered or retained spans (encoded size plus overhead)."),
		Paused:              g("fetch_paused_partitions", "Partitions whose fetching is paused because the in-flight budget is full."),
		OutputInFlightBytes: g("output_inflight_bytes", "Bytes of the buffers of encoded trace output produced and not yet acknowledged (bounded by --max-output-bytes-in-flight)."),
		EmitWaiting:         g("emit_waiting_partitions", "Partitions with due traces waiting for room under --max-output-bytes-in-flight."),
		AssemblyDelay:       prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "assembly_delay_seconds", Help: "Time from a trace version's first span to its emission.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		Committed:           gv("committed_offset", "Last committed offset per partition."),
		CommitLag:           gv("commit_lag", "High watermark minus committed offset per partition (what a restart would re-read)."),
		ConsumerLag:         gv("consumer_lag", "High watermark minus the next offset to read, per partition."),
	}
	reg.MustRegister(m.SpansIn, m.Messages, m.DecodeErrors, m.DeadLetters, m.SkippedMessages, m.EmptyMessages, m.TracesOut, m.TruncatedTraces,
		m.LateSpans, m.DuplicateSpans, m.DroppedSpans, m.DroppedTraces, m.ProduceErrors, m.Rekeyed,
		m.InFlightTraces, m.InFlightSpans, m.InFlightBytes, m.Paused, m.OutputInFlightBytes, m.EmitWaiting, m.AssemblyDelay,
		m.Committed, m.CommitLag, m.ConsumerLag)
	for i := model.CompletionIdle; i <= model.CompletionLate; i++ {
		m.TracesOut.WithLabelValues(i.String())
	}
	m.DroppedSpans.WithLabelValues("truncated")
	m.DroppedSpans.WithLabelValues("too_late")
	m.DroppedTraces.WithLabelValues("too_large")
	return m
}

func partitionLabel(p int) string {
	if p < 0 || p >= maxPartitionLabels {
		return "__overflow__"
	}
	return strconv.Itoa(p)
}

// addDelta publishes the growth of an assembler's counters since last.
func (m *Metrics) addDelta(cur, last assemble.Counters) {
	m.SpansIn.Add(float64(cur.SpansIn - last.SpansIn))
	m.DuplicateSpans.Add(float64(cur.DuplicateSpans - last.DuplicateSpans))
	m.LateSpans.Add(float64(cur.LateSpans - last.LateSpans))
	m.DroppedSpans.WithLabelValues("truncated").Add(float64(cur.TruncatedSpans - last.TruncatedSpans))
	m.DroppedSpans.WithLabelValues("too_late").Add(float64(cur.TooLateSpans - last.TooLateSpans))
	m.TruncatedTraces.Add(float64(cur.TruncatedTraces - last.TruncatedTraces))
	for i := range cur.TracesOut {
		if d := cur.TracesOut[i] - last.TracesOut[i]; d > 0 {
			m.TracesOut.WithLabelValues(model.Completion(i).String()).Add(float64(d))
		}
	}
}
