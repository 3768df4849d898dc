package replay

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

// eventRange is the event-time range [from, to) whose traces and windows a
// replay writes.
type eventRange struct{ from, to model.Timestamp }

func newEventRange(from, to time.Time) eventRange {
	return eventRange{model.TimestampOf(from), model.TimestampOf(to)}
}

// hasTrace: the trace starts in the range.
func (r eventRange) hasTrace(at *model.AssembledTrace) bool {
	s := at.Analysis.Start
	return s >= r.from && s < r.to
}

// hasWindow: the window [start, start+res) lies wholly inside the range.
func (r eventRange) hasWindow(start model.Timestamp, res time.Duration) bool {
	return start >= r.from && start.Add(res) <= r.to
}

// traceFilter is the indexer's store in a replay: it passes the traces
// starting in the range to the target store as fill writes and drops the
// others (read only because of the margin).
type traceFilter struct {
	w       storage.TraceWriter
	r       eventRange
	written atomic.Int64 // traces passed to the store (fill: a stored one is kept)
	outside atomic.Int64
}

func (f *traceFilter) WriteTraces(ctx context.Context, traces []model.AssembledTrace) error {
	keep := make([]model.AssembledTrace, 0, len(traces))
	for i := range traces {
		if f.r.hasTrace(&traces[i]) {
			keep = append(keep, traces[i])
		}
	}
	if err := f.w.WriteTraces(storage.WithFill(ctx), keep); err != nil {
		return err
	}
	f.written.Add(int64(len(keep)))
	f.outside.Add(int64(len(traces) - len(keep)))
	return nil
}
