package aggregator

import (
	"context"
	"fmt"
	"time"

	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

// Stage names of the aggregator's consumer groups in the runtime's
// metrics (tracepipe_kafka_*{stage}) and logs.
const (
	MapStage    = "aggregator-map"
	ReduceStage = "aggregator-reduce"
)

// tickInterval is how often the stages' Tick runs: often enough for the
// flush and checkpoint intervals.
func (c *Config) tickInterval() time.Duration {
	return max(min(250*time.Millisecond, c.FlushInterval/2, c.CheckpointInterval/2), 10*time.Millisecond)
}

// newGroups builds the map and reduce stages' consumer groups on the
// pipeline/kafka runtime (the stages that run).
func (a *Aggregator) newGroups(opts Options) error {
	base := tpkafka.GroupConfig{
		Client:         a.cfg.ClientConfig,
		SessionTimeout: a.cfg.SessionTimeout,
		TickInterval:   a.cfg.tickInterval(),
		// Safe changes only when a checkpoint was taken; asking every
		// tick commits it at once.
		CommitInterval: a.cfg.tickInterval(),
		// The final write of a reducer is bounded by this, well below the
		// rebalance timeout (30 s), so that the member rejoins in time even
		// while the store is down.
		CloseTimeout:     10 * time.Second,
		RebalanceTimeout: 30 * time.Second,
	}
	gopts := tpkafka.GroupOptions{Logger: a.log, Registry: opts.Registry}
	if !a.cfg.NoMap {
		wc := tpkafka.DefaultWriterConfig()
		wc.BatchBytes = 16 << 20
		wc.Linger = 2 * time.Millisecond
		wc.Topics = []string{a.cfg.PartialsTopic}
		cfg := base
		cfg.Group, cfg.Topic, cfg.Stage, cfg.Writer = a.cfg.Group, a.cfg.TracesTopic, MapStage, &wc
		var g *tpkafka.Group
		cfg.NewProcessor = func(as tpkafka.Assignment) (tpkafka.Processor, error) { return a.newMapProc(g.Admin(), as), nil }
		var err error
		if g, err = tpkafka.NewGroup(cfg, gopts); err != nil {
			return fmt.Errorf("aggregator map stage: %w", err)
		}
		a.mapGroup = g
	}
	if !a.cfg.NoReduce {
		cfg := base
		cfg.Group, cfg.Topic, cfg.Stage = a.cfg.ReduceGroup, a.cfg.PartialsTopic, ReduceStage
		var g *tpkafka.Group
		cfg.NewProcessor = func(as tpkafka.Assignment) (tpkafka.Processor, error) { return a.newReduceProc(g.Admin(), as), nil }
		var err error
		if g, err = tpkafka.NewGroup(cfg, gopts); err != nil {
			return fmt.Errorf("aggregator reduce stage: %w", err)
		}
		a.reduceGroup = g
	}
	return nil
}

// ensurePartialsTopic creates the partials topic unless it exists.
func (a *Aggregator) ensurePartialsTopic(ctx context.Context) error {
	ad, err := tpkafka.NewAdmin(a.cfg.ClientConfig)
	if err != nil {
		return err
	}
	defer ad.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return ad.CreateTopics(ctx, tpkafka.TopicSpec{Name: a.cfg.PartialsTopic, Partitions: a.cfg.PartialsPartitions, ReplicationFactor: -1,
		Configs: map[string]string{"retention.ms": "604800000"}})
}
