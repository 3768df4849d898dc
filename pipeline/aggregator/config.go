package aggregator

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
)

// Config configures both stages of the aggregator. DefaultConfig gives the
// defaults, RegisterFlags binds the fields to flags (internal/config's
// convention), Normalized fills zero statistics settings with their
// defaults, and Validate reports every problem without changing c.
type Config struct {
	// ClientConfig reaches the Kafka cluster: Brokers, TLS, SASL.
	kafka.ClientConfig
	// TracesTopic is the ingester's output (assembled traces, keyed by trace ID).
	TracesTopic string
	// Group is the consumer group of the map stage on TracesTopic.
	Group string
	// PartialsTopic carries partial aggregates from the map stage to the
	// reduce stage, keyed by operation; ReduceGroup consumes it.
	PartialsTopic string
	ReduceGroup   string
	// PartialsPartitions is used when the aggregator creates PartialsTopic.
	PartialsPartitions int
	// Stats is the statistics configuration (windows, lateness, dimensions).
	Stats rollup.Config
	// FlushInterval: how often closed windows are published and reducers
	// write changed rollups. CoarseInterval: how often coarse windows (1h,
	// 1d) are rewritten. CheckpointInterval: how often offsets are committed.
	FlushInterval      time.Duration
	CoarseInterval     time.Duration
	CheckpointInterval time.Duration
	// IdleTimeout: a source partition without messages for this long, and
	// with nothing left to read, no longer holds the watermark back, and its
	// open windows are published. A partition with a backlog is never idle.
	IdleTimeout time.Duration
	// SourceIdle: a source partition that published no partial for this long
	// no longer holds back the reducers' eviction.
	SourceIdle     time.Duration
	SessionTimeout time.Duration
	// MaxMetricSeries bounds the label sets of the per-operation Prometheus
	// metrics (and, separately, of the edge metrics); beyond it, new
	// operations are counted under service and operation "__overflow__".
	MaxMetricSeries int
	// NoMap and NoReduce run only one of the stages (both run by default).
	NoMap, NoReduce bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		TracesTopic:        "tracepipe-traces",
		Group:              "tracepipe-aggregator",
		PartialsTopic:      "tracepipe-partials",
		ReduceGroup:        "tracepipe-aggregator-reduce",
		PartialsPartitions: 8,
		Stats:              rollup.Config{}.Normalized(),
		FlushInterval:      2 * time.Second,
		CoarseInterval:     30 * time.Second,
		CheckpointInterval: 10 * time.Second,
		IdleTimeout:        10 * time.Second,
		SourceIdle:         10 * time.Minute,
		SessionTimeout:     10 * time.Second,
		MaxMetricSeries:    2000,
	}
}

// Normalized returns c with the zero statistics settings (Stats) replaced
// by their defaults (rollup.Config.Normalized). New applies it; Validate
// checks c as Normalized would make it.
func (c Config) Normalized() Config {
	c.Stats = c.Stats.Normalized()
	return c
}

// Validate reports every problem a user must fix, in terms of the flags,
// joined; it does not change c.
func (c *Config) Validate() error {
	var errs []error
	if err := c.ClientConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, s := range []struct{ name, v string }{
		{"--traces-topic", c.TracesTopic}, {"--group", c.Group}, {"--partials-topic", c.PartialsTopic}, {"--reduce-group", c.ReduceGroup},
	} {
		if s.v == "" {
			errs = append(errs, fmt.Errorf("%s must not be empty", s.name))
		}
	}
	if c.Group == c.ReduceGroup {
		errs = append(errs, errors.New("--group and --reduce-group must differ"))
	}
	if c.TracesTopic == c.PartialsTopic {
		errs = append(errs, errors.New("--traces-topic and --partials-topic must differ"))
	}
	if c.PartialsPartitions < 1 || c.PartialsPartitions > 1024 {
		errs = append(errs, fmt.Errorf("--partials-partitions %d: want 1..1024", c.PartialsPartitions))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--flush-interval", c.FlushInterval}, {"--coarse-interval", c.CoarseInterval}, {"--checkpoint-interval", c.CheckpointInterval},
		{"--idle-timeout", c.IdleTimeout}, {"--source-idle", c.SourceIdle}, {"--session-timeout", c.SessionTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	if c.MaxMetricSeries < 1 {
		errs = append(errs, fmt.Errorf("--max-metric-series %d must be at least 1", c.MaxMetricSeries))
	}
	if c.NoMap && c.NoReduce {
		errs = append(errs, errors.New("--no-map and --no-reduce together leave nothing to run"))
	}
	if err := c.Stats.Normalized().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RegisterFlags binds c's fields to flags named prefix+name on fs (the Kafka
// connection's as kafka.ClientConfig.RegisterFlags), with c's current values
// as defaults. List flags (--dimensions, --coarse) are parsed when set.
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	c.ClientConfig.RegisterFlags(fs, prefix)
	p := func(name string) string { return prefix + name }
	fs.StringVar(&c.TracesTopic, p("traces-topic"), c.TracesTopic, "topic of assembled traces (the ingester's output)")
	fs.StringVar(&c.Group, p("group"), c.Group, "consumer group on the traces topic")
	fs.StringVar(&c.PartialsTopic, p("partials-topic"), c.PartialsTopic, "internal topic of partial aggregates")
	fs.StringVar(&c.ReduceGroup, p("reduce-group"), c.ReduceGroup, "consumer group on the partials topic")
	fs.IntVar(&c.PartialsPartitions, p("partials-partitions"), c.PartialsPartitions, "partitions of the partials topic when the aggregator creates it")
	fs.DurationVar(&c.Stats.Window, p("window"), c.Stats.Window, "base window length (must divide an hour)")
	fs.Var(config.Func{Show: func() string { return durations(c.Stats.Coarse) }, Parse: func(v string) error {
		coarse := []time.Duration{}
		for _, s := range config.SplitList(v) {
			d, err := parseResolution(s)
			if err != nil {
				return fmt.Errorf("%q: %v", s, err)
			}
			coarse = append(coarse, d)
		}
		c.Stats.Coarse = coarse
		return nil
	}}, p("coarse"), "coarser resolutions built by merging, comma-separated (empty: none)")
	fs.DurationVar(&c.Stats.AllowedLateness, p("allowed-lateness"), c.Stats.AllowedLateness, "a window closes when the watermark passes its end plus this")
	fs.DurationVar(&c.Stats.Retention, p("retention"), c.Stats.Retention, "how long after closing a window keeps its traces in memory; later traces cost a re-read")
	fs.DurationVar(&c.Stats.VersionSpread, p("version-spread"), c.Stats.VersionSpread, "most a trace's start may move between its versions")
	fs.DurationVar(&c.Stats.MaxLateness, p("max-lateness"), c.Stats.MaxLateness, "traces later than this behind the partition's event time are dropped and counted")
	fs.Var(config.Func{Show: func() string { return strings.Join(c.Stats.Dimensions, ",") }, Parse: func(v string) error {
		c.Stats.Dimensions = rollup.ParseDimensions(v)
		return nil
	}}, p("dimensions"), "span/process tag keys that split rollups, comma-separated (e.g. shard,host,client)")
	fs.IntVar(&c.Stats.DimensionLimit, p("dimension-limit"), c.Stats.DimensionLimit, "values per dimension, window and operation with their own rollup; others are __overflow__")
	fs.IntVar(&c.Stats.Exemplars, p("exemplars"), c.Stats.Exemplars, "slowest traces kept per rollup")
	fs.IntVar(&c.Stats.OperationLimit, p("operation-limit"), c.Stats.OperationLimit, "operations per service and window with their own rollups; spans of others count under __overflow__")
	fs.IntVar(&c.Stats.KeyLimit, p("key-limit"), c.Stats.KeyLimit, "keys (operations x kinds x dimension values, edges) a window holds in memory; spans of further keys count under __overflow__")
	fs.BoolVar(&c.Stats.NoEdges, p("no-edges"), c.Stats.NoEdges, "do not compute service-edge statistics")
	fs.DurationVar(&c.FlushInterval, p("flush-interval"), c.FlushInterval, "publish closed windows and write changed rollups this often")
	fs.DurationVar(&c.CoarseInterval, p("coarse-interval"), c.CoarseInterval, "rewrite changed coarse rollups this often")
	fs.DurationVar(&c.CheckpointInterval, p("checkpoint-interval"), c.CheckpointInterval, "commit offsets this often")
	fs.DurationVar(&c.IdleTimeout, p("idle-timeout"), c.IdleTimeout, "a partition without messages this long, and with nothing left to read, stops holding the watermark")
	fs.DurationVar(&c.SourceIdle, p("source-idle"), c.SourceIdle, "a source partition without partials this long stops holding back reducers' eviction")
	fs.DurationVar(&c.SessionTimeout, p("session-timeout"), c.SessionTimeout, "consumer group session timeout")
	fs.IntVar(&c.MaxMetricSeries, p("max-metric-series"), c.MaxMetricSeries, "label sets of the per-operation Prometheus metrics; more go to __overflow__")
	fs.BoolVar(&c.NoMap, p("no-map"), c.NoMap, "run only the reduce stage")
	fs.BoolVar(&c.NoReduce, p("no-reduce"), c.NoReduce, "run only the map stage")
}

func durations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, resolutionName(d))
	}
	return strings.Join(s, ",")
}
