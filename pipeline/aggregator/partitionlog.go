package aggregator

import (
	"context"
	"log/slog"
	"time"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/internal/wait"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

// partitionLog is what a stage reads of its input partition besides what
// the runtime fetches for it: the partition's bounds (Open) and ranges of
// it (rewinds). *tpkafka.Admin implements it.
type partitionLog interface {
	Offsets(ctx context.Context, topic string, partition int) (first, end int64, err error)
	ReadRange(ctx context.Context, topic string, partition int, from, to int64, fn func(tpkafka.Record) error) (missing int64, err error)
}

// retryingLog is the partitionLog the stages read through. A read that
// fails for a reason retrying may cure (tpkafka.Retriable: a leader not
// elected yet, as right after the partials topic was created, or moving; a
// broker timing out or unreachable) is retried in place until it succeeds
// or ctx ends (the assignment ends), instead of failing the processor's
// method, which would discard the partition's state and restart it from
// its last commit. Other errors are returned at once. Failures are logged
// at most every 10 s per partition and kind of read (internal/ratelog).
type retryingLog struct {
	log   partitionLog
	warn  *ratelog.Logger
	stage string // "map" or "reduce", in log messages
	// minBackoff, doubled up to maxBackoff, is the wait between attempts.
	minBackoff, maxBackoff time.Duration
}

func newRetryingLog(l partitionLog, logger *slog.Logger, stage string, now func() time.Time) *retryingLog {
	return &retryingLog{log: l, warn: ratelog.New(logger, ratelog.DefaultEvery, now), stage: stage,
		minBackoff: 200 * time.Millisecond, maxBackoff: 5 * time.Second}
}

// Offsets returns the partition's first retained offset and its end.
func (l *retryingLog) Offsets(ctx context.Context, topic string, partition int) (first, end int64, err error) {
	for backoff := l.minBackoff; ; backoff = min(2*backoff, l.maxBackoff) {
		if first, end, err = l.log.Offsets(ctx, topic, partition); !l.retry(ctx, err, "offsets", backoff) {
			return first, end, err
		}
	}
}

// ReadRange calls fn for every record in [from, to), as
// tpkafka.Admin.ReadRange does. A read that fails is resumed after the last
// record fn took, so that fn sees every record once and in order, as in one
// uninterrupted read (a rewind's replay stays exact). An error of fn is
// returned as it is, never retried; missing adds up what retention deleted
// over all attempts.
func (l *retryingLog) ReadRange(ctx context.Context, topic string, partition int, from, to int64, fn func(tpkafka.Record) error) (missing int64, err error) {
	next := from
	for backoff := l.minBackoff; next < to; backoff = min(2*backoff, l.maxBackoff) {
		start := next
		var fnErr error
		m, err := l.log.ReadRange(ctx, topic, partition, start, to, func(r tpkafka.Record) error {
			if err := fn(r); err != nil {
				fnErr = err
				return err
			}
			next = r.Offset + 1
			return nil
		})
		missing += m
		// Retention deleted [start, start+m): a resumed read starts past it
		// and does not count it again.
		next = max(next, start+m)
		if fnErr != nil {
			return missing, fnErr
		}
		if !l.retry(ctx, err, "range read", backoff) {
			return missing, err
		}
	}
	return missing, nil
}

// retry reports whether err is worth another attempt, after waiting
// backoff: false when err is nil, not retriable, or ctx ended.
func (l *retryingLog) retry(ctx context.Context, err error, what string, backoff time.Duration) bool {
	if err == nil || ctx.Err() != nil || !tpkafka.Retriable(err) {
		return false
	}
	l.warn.Warn("kafka "+what, l.stage+": kafka "+what+" failed; retrying", "err", err)
	return wait.Sleep(ctx, backoff)
}
