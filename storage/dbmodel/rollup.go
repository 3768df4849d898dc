package dbmodel

import (
	"fmt"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Rollup is one stored rollup (tracepipe-rollups-<resolution>-* indices; the
// embedded store's rollups table), under the ID model.Rollup.ID().
//
// For Grafana: windowStart is a date (epoch ms); service, operation, kind and
// dim.<name> are keywords to group and filter by; the *Nanos fields are
// longs in nanoseconds; criticalPathShare is a double in [0, 1]. The sketches
// are stored (base64), not indexed.
type Rollup struct {
	Resolution            string            `json:"resolution"`
	ResolutionNanos       int64             `json:"resolutionNanos"`
	WindowStart           int64             `json:"windowStart"` // ms since the epoch
	WindowStartNanos      int64             `json:"windowStartNanos"`
	Service               string            `json:"service"`
	Operation             string            `json:"operation"`
	Kind                  string            `json:"kind"`
	Dim                   map[string]string `json:"dim,omitempty"` // dimension name (dots replaced by "@") -> value
	Dimensions            []Dimension       `json:"dimensions"`
	Count                 int64             `json:"count"`
	Errors                int64             `json:"errors"`
	Duration              Distribution      `json:"duration"`
	Self                  Distribution      `json:"self"`
	CriticalPath          Distribution      `json:"criticalPath"`
	TraceDurationSumNanos int64             `json:"traceDurationSumNanos"`
	CriticalPathShare     float64           `json:"criticalPathShare"`
	Exemplars             []Exemplar        `json:"exemplars"`
}

// Dimension is one stored dimension, in the rollup's order.
type Dimension struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Distribution is a stored distribution.
type Distribution struct {
	SumNanos int64  `json:"sumNanos"`
	P50Nanos int64  `json:"p50Nanos"`
	P90Nanos int64  `json:"p90Nanos"`
	P95Nanos int64  `json:"p95Nanos"`
	P99Nanos int64  `json:"p99Nanos"`
	MaxNanos int64  `json:"maxNanos"`
	Sketch   []byte `json:"sketch,omitempty"`
}

// Exemplar is a stored exemplar.
type Exemplar struct {
	TraceID       string `json:"traceID"`
	DurationNanos int64  `json:"durationNanos"`
	StartNanos    int64  `json:"startNanos"`
}

// FromDomainRollup converts a rollup.
func FromDomainRollup(r *model.Rollup) Rollup {
	d := Rollup{
		Resolution:            model.ResolutionName(r.Resolution),
		ResolutionNanos:       int64(r.Resolution),
		WindowStart:           floorDiv(int64(r.WindowStart), int64(time.Millisecond)),
		WindowStartNanos:      int64(r.WindowStart),
		Service:               r.Service,
		Operation:             r.Operation,
		Kind:                  r.Kind.String(),
		Dimensions:            make([]Dimension, len(r.Dimensions)),
		Count:                 r.Count,
		Errors:                r.Errors,
		Duration:              fromDist(r.Duration),
		Self:                  fromDist(r.Self),
		CriticalPath:          fromDist(r.CriticalPath),
		TraceDurationSumNanos: int64(r.TraceDurationSum),
		CriticalPathShare:     r.CriticalPathShare,
		Exemplars:             make([]Exemplar, len(r.Exemplars)),
	}
	for i, dm := range r.Dimensions {
		d.Dimensions[i] = Dimension{Name: dm.Name, Value: dm.Value}
		if d.Dim == nil {
			d.Dim = map[string]string{}
		}
		d.Dim[TagField(dm.Name)] = dm.Value
	}
	for i, e := range r.Exemplars {
		d.Exemplars[i] = Exemplar{TraceID: e.TraceID.String(), DurationNanos: int64(e.Duration), StartNanos: int64(e.Start)}
	}
	return d
}

func fromDist(x model.Distribution) Distribution {
	return Distribution{
		SumNanos: int64(x.Sum), P50Nanos: int64(x.P50), P90Nanos: int64(x.P90), P95Nanos: int64(x.P95),
		P99Nanos: int64(x.P99), MaxNanos: int64(x.Max), Sketch: x.Sketch,
	}
}

func toDist(x Distribution) model.Distribution {
	return model.Distribution{
		Sum: time.Duration(x.SumNanos),
		Quantiles: model.Quantiles{
			P50: time.Duration(x.P50Nanos), P90: time.Duration(x.P90Nanos), P95: time.Duration(x.P95Nanos),
			P99: time.Duration(x.P99Nanos), Max: time.Duration(x.MaxNanos),
		},
		Sketch: x.Sketch,
	}
}

// ToDomain converts the stored rollup back.
func (d *Rollup) ToDomain() (model.Rollup, error) {
	r := model.Rollup{
		Resolution:        time.Duration(d.ResolutionNanos),
		WindowStart:       model.Timestamp(d.WindowStartNanos),
		Service:           d.Service,
		Operation:         d.Operation,
		Kind:              model.ParseSpanKind(d.Kind),
		Count:             d.Count,
		Errors:            d.Errors,
		Duration:          toDist(d.Duration),
		Self:              toDist(d.Self),
		CriticalPath:      toDist(d.CriticalPath),
		TraceDurationSum:  time.Duration(d.TraceDurationSumNanos),
		CriticalPathShare: d.CriticalPathShare,
	}
	if r.Resolution <= 0 {
		return r, fmt.Errorf("rollup: bad resolution %d", d.ResolutionNanos)
	}
	for _, dm := range d.Dimensions {
		r.Dimensions = append(r.Dimensions, model.Dimension{Name: dm.Name, Value: dm.Value})
	}
	for _, e := range d.Exemplars {
		id, err := model.ParseTraceID(e.TraceID)
		if err != nil {
			return r, fmt.Errorf("rollup exemplar: %w", err)
		}
		r.Exemplars = append(r.Exemplars, model.Exemplar{TraceID: id, Duration: time.Duration(e.DurationNanos), Start: model.Timestamp(e.StartNanos)})
	}
	return r, nil
}
