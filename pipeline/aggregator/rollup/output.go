package rollup

import (
	"fmt"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Output is one rollup a Reducer writes: the merged statistics of one key in
// one window at one resolution. Zero Stats mean the key no longer has
// traces in the window (write it so that a stale rollup is replaced).
type Output struct {
	Resolution time.Duration
	Window     model.Timestamp
	Key        Key
	Stats      Stats
	// Version is the position in the partials log the output reflects
	// (the Reducer's position at Flush): the store keeps the write with
	// the highest Version, so outputs of a reducer that lost its partition
	// cannot replace newer ones (see the package doc, Claim 6).
	Version int64
}

// Rollup converts an operation output (Key.Edge false). names are the
// configured dimension names.
func (o *Output) Rollup(names []string) model.Rollup {
	s := &o.Stats
	r := model.Rollup{
		Resolution:       o.Resolution,
		WindowStart:      o.Window,
		Service:          o.Key.Service,
		Operation:        o.Key.Operation,
		Kind:             o.Key.Kind,
		Dimensions:       dimensionsOf(names, o.Key.Dims),
		Count:            s.Count,
		Errors:           s.Errors,
		Duration:         s.Duration.toModel(),
		Self:             s.Self.toModel(),
		CriticalPath:     s.CriticalPath.toModel(),
		TraceDurationSum: time.Duration(s.TraceDuration),
		Exemplars:        append([]model.Exemplar(nil), s.Exemplars...),
		Version:          o.Version,
	}
	if s.TraceDuration > 0 {
		r.CriticalPathShare = float64(s.CriticalPath.Sum) / float64(s.TraceDuration)
	}
	return r
}

// EdgeRollup converts a service-edge output (Key.Edge true).
func (o *Output) EdgeRollup() model.EdgeRollup {
	s := &o.Stats
	return model.EdgeRollup{
		Resolution:  o.Resolution,
		WindowStart: o.Window,
		Caller:      o.Key.Service,
		Callee:      o.Key.Operation,
		Calls:       s.Count,
		Errors:      s.Errors,
		Latency:     s.Duration.toModel(),
		Exemplars:   append([]model.Exemplar(nil), s.Exemplars...),
		Version:     o.Version,
	}
}

// OutputFromRollup reads a stored rollup back, for coarse windows.
func OutputFromRollup(names []string, r *model.Rollup) (Output, error) {
	o := Output{Resolution: r.Resolution, Window: r.WindowStart,
		Key: Key{Family: Family{Service: r.Service, Operation: r.Operation, Kind: r.Kind}, Dims: dimsFromModel(names, r.Dimensions)}}
	s := &o.Stats
	s.Count, s.Errors, s.TraceDuration = r.Count, r.Errors, int64(r.TraceDurationSum)
	var err error
	for _, p := range []struct {
		d *Dist
		m *model.Distribution
	}{{&s.Duration, &r.Duration}, {&s.Self, &r.Self}, {&s.CriticalPath, &r.CriticalPath}} {
		if *p.d, err = distFromModel(p.m); err != nil {
			return o, fmt.Errorf("rollup %s: %w", r.ID(), err)
		}
	}
	s.Exemplars = append([]model.Exemplar(nil), r.Exemplars...)
	if s.Duration.Sketch.Count() != s.Count {
		return o, fmt.Errorf("rollup %s: sketch counts %d values, rollup %d", r.ID(), s.Duration.Sketch.Count(), s.Count)
	}
	return o, nil
}

// OutputFromEdge reads a stored edge rollup back.
func OutputFromEdge(e *model.EdgeRollup) (Output, error) {
	o := Output{Resolution: e.Resolution, Window: e.WindowStart,
		Key: Key{Family: Family{Edge: true, Service: e.Caller, Operation: e.Callee}}}
	s := &o.Stats
	s.Count, s.Errors = e.Calls, e.Errors
	var err error
	if s.Duration, err = distFromModel(&e.Latency); err != nil {
		return o, fmt.Errorf("edge rollup %s: %w", e.ID(), err)
	}
	s.Exemplars = append([]model.Exemplar(nil), e.Exemplars...)
	if s.Duration.Sketch.Count() != s.Count {
		return o, fmt.Errorf("edge rollup %s: sketch counts %d values, rollup %d", e.ID(), s.Duration.Sketch.Count(), s.Count)
	}
	return o, nil
}
