package kafka

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// groupMetrics are the consumer metrics every stage shares, labelled by
// stage (names in the package doc). Several groups may register on one
// registry (tracepipe run): the vectors are shared then.
type groupMetrics struct {
	consumerLag, processedLag, committed, lastCommit *prometheus.GaugeVec // stage, topic, partition
	commits                                          *prometheus.CounterVec
	assigned, member                                 *prometheus.GaugeVec // stage
	rebalances                                       *prometheus.CounterVec
	skipped                                          *prometheus.CounterVec // stage, topic
	restarts                                         *prometheus.CounterVec // stage
}

// maxPartitionLabels caps the partition label's values; higher partitions
// share the label value "__overflow__".
const maxPartitionLabels = 256

// PartitionLabel is the partition label value of partition p.
func PartitionLabel(p int) string {
	if p < 0 || p >= maxPartitionLabels {
		return "__overflow__"
	}
	return strconv.Itoa(p)
}

func newGroupMetrics(reg prometheus.Registerer) (*groupMetrics, error) {
	const ns, sub = "tracepipe", "kafka"
	part := []string{"stage", "topic", "partition"}
	gv := func(name, help string, labels []string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	cv := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	m := &groupMetrics{
		consumerLag:  gv("consumer_lag", "Log end offset minus the group's committed offset, per partition (what kafka-consumer-groups shows).", part),
		processedLag: gv("processed_lag", "Log end offset minus the next offset to fetch, per partition.", part),
		committed:    gv("committed_offset", "The group's last committed offset, per partition.", part),
		lastCommit:   gv("last_commit_timestamp_seconds", "Unix time of the last successful commit, per partition.", part),
		commits:      cv("commits_total", "Offset commits, by result (ok, error).", []string{"stage", "result"}),
		assigned:     gv("partitions_assigned", "Partitions this member owns.", []string{"stage"}),
		member:       gv("group_member", "1 while this process is a live member of the stage's consumer group.", []string{"stage"}),
		rebalances:   cv("rebalances_total", "Consumer group generations joined.", []string{"stage"}),
		skipped:      cv("skipped_records_total", "Offsets deleted by the topic's retention before they were read.", []string{"stage", "topic"}),
		restarts:     cv("partition_restarts_total", "Partitions restarted from their commit after their processor failed.", []string{"stage"}),
	}
	var err error
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if e := reg.Register(c); e != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(e, &are) {
				return are.ExistingCollector
			}
			err = errors.Join(err, e)
		}
		return c
	}
	m.consumerLag = reg1(m.consumerLag).(*prometheus.GaugeVec)
	m.processedLag = reg1(m.processedLag).(*prometheus.GaugeVec)
	m.committed = reg1(m.committed).(*prometheus.GaugeVec)
	m.lastCommit = reg1(m.lastCommit).(*prometheus.GaugeVec)
	m.commits = reg1(m.commits).(*prometheus.CounterVec)
	m.assigned = reg1(m.assigned).(*prometheus.GaugeVec)
	m.member = reg1(m.member).(*prometheus.GaugeVec)
	m.rebalances = reg1(m.rebalances).(*prometheus.CounterVec)
	m.skipped = reg1(m.skipped).(*prometheus.CounterVec)
	m.restarts = reg1(m.restarts).(*prometheus.CounterVec)
	return m, err
}

// partitionMetrics are one partition's series.
type partitionMetrics struct {
	consumerLag, processedLag, committed, lastCommit prometheus.Gauge
	labels                                           []string
	m                                                *groupMetrics
	p                                                int
}

func (pm *partitionMetrics) partition() int { return pm.p }

func (m *groupMetrics) partition(stage, topic string, p int) *partitionMetrics {
	l := []string{stage, topic, PartitionLabel(p)}
	return &partitionMetrics{
		consumerLag: m.consumerLag.WithLabelValues(l...), processedLag: m.processedLag.WithLabelValues(l...),
		committed: m.committed.WithLabelValues(l...), lastCommit: m.lastCommit.WithLabelValues(l...),
		labels: l, m: m, p: p,
	}
}

// remove deletes the partition's series (it is no longer owned here).
func (pm *partitionMetrics) remove() {
	pm.m.consumerLag.DeleteLabelValues(pm.labels...)
	pm.m.processedLag.DeleteLabelValues(pm.labels...)
	pm.m.committed.DeleteLabelValues(pm.labels...)
	pm.m.lastCommit.DeleteLabelValues(pm.labels...)
}
