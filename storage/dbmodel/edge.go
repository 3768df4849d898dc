package dbmodel

import (
	"fmt"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// EdgeRollup is one stored service-edge rollup (tracepipe-edges-<resolution>-*
// indices; the embedded store's edge_rollups table), under the ID
// model.EdgeRollup.ID(). A rollup with calls 0 is a retraction and is stored
// like any other.
//
// For Grafana: windowStart is a date (epoch ms); caller and callee are
// keywords; the *Nanos fields are longs in nanoseconds. The latency sketch is
// stored (base64), not indexed.
type EdgeRollup struct {
	Resolution       string       `json:"resolution"`
	ResolutionNanos  int64        `json:"resolutionNanos"`
	WindowStart      int64        `json:"windowStart"` // ms since the epoch
	WindowStartNanos int64        `json:"windowStartNanos"`
	Caller           string       `json:"caller"`
	Callee           string       `json:"callee"`
	Calls            int64        `json:"calls"`
	Errors           int64        `json:"errors"`
	Latency          Distribution `json:"latency"`
	Exemplars        []Exemplar   `json:"exemplars"`
}

// FromDomainEdgeRollup converts an edge rollup.
func FromDomainEdgeRollup(e *model.EdgeRollup) EdgeRollup {
	d := EdgeRollup{
		Resolution:       model.ResolutionName(e.Resolution),
		ResolutionNanos:  int64(e.Resolution),
		WindowStart:      floorDiv(int64(e.WindowStart), int64(time.Millisecond)),
		WindowStartNanos: int64(e.WindowStart),
		Caller:           e.Caller,
		Callee:           e.Callee,
		Calls:            e.Calls,
		Errors:           e.Errors,
		Latency:          fromDist(e.Latency),
		Exemplars:        make([]Exemplar, len(e.Exemplars)),
	}
	for i, x := range e.Exemplars {
		d.Exemplars[i] = Exemplar{TraceID: x.TraceID.String(), DurationNanos: int64(x.Duration), StartNanos: int64(x.Start)}
	}
	return d
}

// ToDomain converts the stored edge rollup back.
func (d *EdgeRollup) ToDomain() (model.EdgeRollup, error) {
	e := model.EdgeRollup{
		Resolution:  time.Duration(d.ResolutionNanos),
		WindowStart: model.Timestamp(d.WindowStartNanos),
		Caller:      d.Caller,
		Callee:      d.Callee,
		Calls:       d.Calls,
		Errors:      d.Errors,
		Latency:     toDist(d.Latency),
	}
	if e.Resolution <= 0 {
		return e, fmt.Errorf("edge rollup: bad resolution %d", d.ResolutionNanos)
	}
	for _, x := range d.Exemplars {
		id, err := model.ParseTraceID(x.TraceID)
		if err != nil {
			return e, fmt.Errorf("edge rollup exemplar: %w", err)
		}
		e.Exemplars = append(e.Exemplars, model.Exemplar{TraceID: id, Duration: time.Duration(x.DurationNanos), Start: model.Timestamp(x.StartNanos)})
	}
	return e, nil
}
