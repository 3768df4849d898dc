package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
)

type producerMetrics struct {
	buffered   prometheus.Gauge
	limit      prometheus.Gauge
	acked      prometheus.Counter
	lost       prometheus.Counter
	refused    prometheus.Counter
	retries    prometheus.Counter
	ackSeconds prometheus.Histogram
}

func newProducerMetrics(reg prometheus.Registerer, name string) *producerMetrics {
	const ns, sub = "tracepipe", "producer"
	labels := prometheus.Labels{"producer": name}
	messages := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_total",
		Help: "Messages acknowledged by Kafka (result=acked) or given up on (result=lost).", ConstLabels: labels}, []string{"result"})
	m := &producerMetrics{
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "buffered_bytes",
			Help: "Bytes of messages taken and not yet acknowledged.", ConstLabels: labels}),
		limit: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "buffer_limit_bytes",
			Help: "The buffer's limit in bytes.", ConstLabels: labels}),
		acked: messages.WithLabelValues("acked"),
		lost:  messages.WithLabelValues("lost"),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "refused_total",
			Help: "Groups of messages refused because the buffer was full.", ConstLabels: labels}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "retries_total",
			Help: "Messages produced again after a failed attempt.", ConstLabels: labels}),
		ackSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "ack_seconds",
			Help: "Time from taking a group of messages to the acknowledgement of its last message.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.buffered, m.limit, messages, m.refused, m.retries, m.ackSeconds)
	}
	return m
}
