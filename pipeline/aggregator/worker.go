package aggregator

import (
	"context"
	"errors"
	"time"

	"github.com/tracepipe/tracepipe/aggregate"
)

// partitionWorker is what the map and reduce stages' per-partition workers
// share: rebuilding their state from a commit, and dropping it after an
// error.
type partitionWorker interface {
	// restore rebuilds the state from the group's commit (fromGroup) or
	// from the worker's own last commit.
	restore(ctx context.Context, fromGroup bool) error
	// discard drops the state, which may be half-way through a rewind or a
	// write.
	discard()
}

// startWorker restores w from the group's commit, retrying transient errors
// until gctx ends; a configuration that cannot work stops the aggregator.
// It reports whether the worker may run.
func (a *Aggregator) startWorker(gctx context.Context, stage string, part int, w partitionWorker) bool {
	for backoff := 500 * time.Millisecond; ; backoff = min(2*backoff, 10*time.Second) {
		err := w.restore(gctx, true)
		if err == nil {
			return true
		}
		if gctx.Err() != nil {
			return false
		}
		if errors.Is(err, aggregate.ErrConfigChanged) {
			a.log.Error(stage+": the checkpoint does not fit this configuration", "partition", part, "err", err)
			a.fatal(err)
			return false
		}
		a.log.Warn(stage+": cannot start partition; retrying", "partition", part, "err", err, "in", backoff)
		select {
		case <-gctx.Done():
			return false
		case <-time.After(backoff):
		}
	}
}

// recoverWorker handles an error of w's loop, the failures-th in a row:
// it discards w's state and, after a backoff growing with failures,
// restores it from the last commit (from the group's when that fails). It
// reports whether the worker may go on.
func (a *Aggregator) recoverWorker(gctx context.Context, stage string, part int, w partitionWorker, err error, failures int) bool {
	w.discard()
	if gctx.Err() != nil {
		return false
	}
	a.log.Warn(stage+": partition restarts from its last commit", "partition", part, "err", err)
	a.m.restarts.WithLabelValues(stage).Inc()
	select {
	case <-gctx.Done():
		return false
	case <-time.After(min(time.Second<<min(failures-1, 5), 30*time.Second)):
	}
	if err := w.restore(gctx, false); err != nil {
		a.log.Error(stage+": cannot restart partition", "partition", part, "err", err)
		return a.startWorker(gctx, stage, part, w)
	}
	return true
}
