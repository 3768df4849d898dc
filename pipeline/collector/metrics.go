package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Receiver names, the receiver label of the metrics.
const (
	RecvJaegerCompactUDP = "jaeger_compact_udp"
	RecvJaegerBinaryUDP  = "jaeger_binary_udp"
	RecvJaegerHTTP       = "jaeger_http"
	RecvOTLPGRPC         = "otlp_grpc"
	RecvOTLPHTTP         = "otlp_http"
)

// Reasons of dropped spans and bad requests.
const (
	ReasonMalformed   = "malformed"    // bytes that do not decode
	ReasonTooLarge    = "too_large"    // body, message or span over its limit
	ReasonContentType = "content_type" // unsupported Content-Type or Content-Encoding
	ReasonMethod      = "method"       // wrong HTTP method
	ReasonQueueFull   = "queue_full"   // UDP: the queue was full
	ReasonUnavailable = "unavailable"  // UDP: Kafka unavailable or shutting down
	ReasonInvalidSpan = "invalid_span" // a span Jaeger protobuf cannot carry
	ReasonLost        = "lost"         // accepted, then given up on by the producer at shutdown
)

type metrics struct {
	requests    *prometheus.CounterVec   // receiver, result
	received    *prometheus.CounterVec   // receiver
	accepted    *prometheus.CounterVec   // receiver
	refused     *prometheus.CounterVec   // receiver
	dropped     *prometheus.CounterVec   // receiver, reason
	badRequests *prometheus.CounterVec   // receiver, reason
	batchSpans  *prometheus.HistogramVec // receiver
	produce     *prometheus.HistogramVec // receiver
	sampling    *prometheus.CounterVec   // result
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "tracepipe", "collector"
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	m := &metrics{
		requests:    cv("requests_total", "Requests (UDP: datagrams) by receiver and result: accepted, refused (queue full or Kafka unavailable: retry), bad.", "receiver", "result"),
		received:    cv("spans_received_total", "Spans decoded from requests.", "receiver"),
		accepted:    cv("spans_accepted_total", "Spans taken into the queue to Kafka.", "receiver"),
		refused:     cv("spans_refused_total", "Spans decoded, then refused with a retry signal (HTTP 429/503, gRPC RESOURCE_EXHAUSTED/UNAVAILABLE); requests refused before decoding count only in requests_total{result=\"refused\"}.", "receiver"),
		dropped:     cv("spans_dropped_total", "Spans dropped, by reason: queue_full and unavailable (UDP), invalid_span, too_large, lost.", "receiver", "reason"),
		badRequests: cv("bad_requests_total", "Requests rejected as bad, by reason: malformed, too_large, content_type, method.", "receiver", "reason"),
		batchSpans: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_spans",
			Help: "Spans per request.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}, []string{"receiver"}),
		produce: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "produce_seconds",
			Help:    "Time from accepting a request's spans to Kafka's acknowledgement of the last of them.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"receiver"}),
		sampling: cv("sampling_requests_total", "Sampling strategy requests by result: ok, bad_request, error.", "result"),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.received, m.accepted, m.refused, m.dropped, m.badRequests, m.batchSpans, m.produce, m.sampling)
	}
	return m
}

// recvMetrics are one receiver's children of the metrics (looked up once).
type recvMetrics struct {
	name                        string
	reqAccepted, reqRefused     prometheus.Counter
	reqBad                      prometheus.Counter
	received, accepted, refused prometheus.Counter
	batch, produce              prometheus.Observer
	m                           *metrics
}

func (m *metrics) receiver(name string) *recvMetrics {
	return &recvMetrics{
		name:        name,
		reqAccepted: m.requests.WithLabelValues(name, "accepted"),
		reqRefused:  m.requests.WithLabelValues(name, "refused"),
		reqBad:      m.requests.WithLabelValues(name, "bad"),
		received:    m.received.WithLabelValues(name),
		accepted:    m.accepted.WithLabelValues(name),
		refused:     m.refused.WithLabelValues(name),
		batch:       m.batchSpans.WithLabelValues(name),
		produce:     m.produce.WithLabelValues(name),
		m:           m,
	}
}

func (r *recvMetrics) bad(reason string) {
	r.reqBad.Inc()
	r.m.badRequests.WithLabelValues(r.name, reason).Inc()
}

func (r *recvMetrics) drop(reason string, n int) {
	if n > 0 {
		r.m.dropped.WithLabelValues(r.name, reason).Add(float64(n))
	}
}
