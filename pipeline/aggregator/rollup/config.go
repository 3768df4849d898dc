package rollup

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Defaults of Config.
const (
	DefaultWindow          = time.Minute
	DefaultAllowedLateness = 30 * time.Second
	DefaultRetention       = 2 * time.Minute
	DefaultVersionSpread   = 2 * time.Minute
	DefaultMaxLateness     = 24 * time.Hour
	DefaultMaxFuture       = time.Hour
	DefaultDimensionLimit  = 100
	DefaultExemplars       = 5
	DefaultOperationLimit  = 1000
	DefaultKeyLimit        = 20000
)

// Overflow is the dimension value that stands for every value beyond a
// dimension's cardinality limit.
const Overflow = "__overflow__"

// Config is the statistics configuration. It must be identical in every
// aggregator instance of one pipeline (partials from instances with different
// windows or dimensions do not merge); Validate rejects bad values and
// Normalized fills defaults.
type Config struct {
	// Window is the base window length (default 1m). It must divide an hour.
	Window time.Duration
	// Coarse are the coarser resolutions built by merging base results
	// (default 1h and 24h). Each must be a multiple of the previous one (and
	// the first a multiple of Window) and divide a day.
	Coarse []time.Duration
	// AllowedLateness: a window closes (is published and later traces count as
	// late) when the watermark passes its end plus this (default 30s).
	AllowedLateness time.Duration
	// Retention is how long, in event time past a window's close, a source
	// partition keeps the window's per-trace contributions in memory (default
	// 2m). Traces arriving later are still exact but cost a rewind (a re-read
	// of the partition from the window's first offset). Memory grows with it:
	// about 60 bytes per span for Window + AllowedLateness + Retention.
	Retention time.Duration
	// VersionSpread bounds how far apart (in trace start time) two versions
	// of one trace may be (default 2m). The index of trace versions is kept
	// that much longer than contributions; see the package documentation.
	VersionSpread time.Duration
	// MaxLateness: a trace whose window ends more than this before the
	// partition's maximum event time is dropped and counted as too late
	// (default 24h). It bounds how far back a rewind may have to read.
	MaxLateness time.Duration
	// MaxFuture: a trace start more than this after its message's log time
	// does not advance event time (default 1h), so one trace with a wrong
	// clock cannot close every window.
	MaxFuture time.Duration
	// Dimensions are span or process tag keys that split rollups (e.g.
	// shard, host, client). A span's own tag wins over its process's tag; a
	// missing tag has the value "".
	Dimensions []string
	// DimensionLimit is the number of distinct values per dimension, per
	// window and operation, that get their own rollup (default 100); the
	// others are merged under Overflow. "" never counts against the limit.
	DimensionLimit int
	// Exemplars is the number of slowest traces kept per rollup (default 5).
	Exemplars int
	// OperationLimit is the number of distinct operations per service and
	// window that get their own keys (default 1000); spans of further
	// operations are counted under the operation Overflow of their service.
	// It applies as traces enter a window's state, so memory stays bounded.
	OperationLimit int
	// KeyLimit is the number of distinct keys (operations, dimension values,
	// edges) a window of a source partition holds (default 20000); spans and
	// calls of further keys are counted under the service and operation
	// Overflow (dimension values Overflow) of their span kind, or the edge
	// Overflow → Overflow. Totals stay exact; only the split is lost.
	KeyLimit int
	// NoEdges disables service-edge statistics.
	NoEdges bool
}

// Normalized returns c with defaults filled in.
func (c Config) Normalized() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Coarse == nil {
		c.Coarse = []time.Duration{time.Hour, 24 * time.Hour}
	}
	if c.AllowedLateness == 0 {
		c.AllowedLateness = DefaultAllowedLateness
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.VersionSpread == 0 {
		c.VersionSpread = DefaultVersionSpread
	}
	if c.MaxLateness == 0 {
		c.MaxLateness = DefaultMaxLateness
	}
	if c.MaxFuture == 0 {
		c.MaxFuture = DefaultMaxFuture
	}
	if c.DimensionLimit == 0 {
		c.DimensionLimit = DefaultDimensionLimit
	}
	if c.Exemplars == 0 {
		c.Exemplars = DefaultExemplars
	}
	if c.OperationLimit == 0 {
		c.OperationLimit = DefaultOperationLimit
	}
	if c.KeyLimit == 0 {
		c.KeyLimit = DefaultKeyLimit
	}
	return c
}

// Validate checks a normalized config.
func (c Config) Validate() error {
	var errs []error
	day := 24 * time.Hour
	switch {
	case c.Window <= 0:
		errs = append(errs, fmt.Errorf("window %v must be positive", c.Window))
	case time.Hour%c.Window != 0:
		errs = append(errs, fmt.Errorf("window %v must divide an hour (e.g. 10s, 1m, 5m)", c.Window))
	}
	prev := c.Window
	for _, r := range c.Coarse {
		if prev <= 0 || r <= prev || r%prev != 0 || day%r != 0 {
			errs = append(errs, fmt.Errorf("coarse resolution %v must be a multiple of %v that divides a day", r, prev))
			break
		}
		prev = r
	}
	if c.AllowedLateness < 0 {
		errs = append(errs, fmt.Errorf("allowed lateness %v must not be negative", c.AllowedLateness))
	}
	if c.Retention < 0 || c.VersionSpread < 0 {
		errs = append(errs, errors.New("retention and version spread must not be negative"))
	}
	if c.MaxLateness < c.AllowedLateness+c.Retention+c.VersionSpread+c.Window {
		errs = append(errs, fmt.Errorf("max lateness %v must be at least window + allowed lateness + retention + version spread", c.MaxLateness))
	}
	if c.MaxFuture <= 0 {
		errs = append(errs, fmt.Errorf("max future %v must be positive", c.MaxFuture))
	}
	if c.DimensionLimit < 1 {
		errs = append(errs, fmt.Errorf("dimension limit %d must be at least 1", c.DimensionLimit))
	}
	if c.OperationLimit < 1 || c.KeyLimit < 1 {
		errs = append(errs, fmt.Errorf("operation limit %d and key limit %d must be at least 1", c.OperationLimit, c.KeyLimit))
	}
	if c.Exemplars < 0 || c.Exemplars > 100 {
		errs = append(errs, fmt.Errorf("exemplars %d must be in [0, 100]", c.Exemplars))
	}
	if len(c.Dimensions) > maxDimensions {
		errs = append(errs, fmt.Errorf("at most %d dimensions, got %d", maxDimensions, len(c.Dimensions)))
	}
	seen := map[string]bool{}
	for _, d := range c.Dimensions {
		if d == "" || strings.TrimSpace(d) != d {
			errs = append(errs, fmt.Errorf("dimension %q: empty or surrounded by spaces", d))
		}
		if seen[d] {
			errs = append(errs, fmt.Errorf("dimension %q listed twice", d))
		}
		seen[d] = true
	}
	return errors.Join(errs...)
}

// Resolutions returns the base window followed by the coarse resolutions.
func (c Config) Resolutions() []time.Duration {
	return append([]time.Duration{c.Window}, c.Coarse...)
}

const maxDimensions = 8

// ParseDimensions reads a comma-separated list of tag keys ("shard,host").
func ParseDimensions(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// windowOf returns the start of the window of length w containing t (floor,
// also for times before the epoch).
func windowOf(t model.Timestamp, w time.Duration) model.Timestamp {
	n := int64(t) / int64(w)
	if int64(t)%int64(w) < 0 {
		n--
	}
	return model.Timestamp(n * int64(w))
}
