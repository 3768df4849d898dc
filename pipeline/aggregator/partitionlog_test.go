package aggregator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

// flakyLog is a partitionLog over offsets [first, end) whose calls fail as
// scripted: call i (from 0) fails with fails[i] (nil: succeeds), a range
// read after handing over after[i] records.
type flakyLog struct {
	first, end int64
	fails      []error
	after      []int
	calls      int
	starts     []int64 // the from of every range read
}

func (l *flakyLog) script() (after int, fail error) {
	i := l.calls
	l.calls++
	if i >= len(l.fails) {
		return 0, nil
	}
	n := 0
	if i < len(l.after) {
		n = l.after[i]
	}
	return n, l.fails[i]
}

func (l *flakyLog) Offsets(_ context.Context, topic string, partition int) (int64, int64, error) {
	if _, err := l.script(); err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	return l.first, l.end, nil
}

// ReadRange behaves as tpkafka.Admin.ReadRange: from below the log's start
// reads from the start and reports the missing offsets, with an error too.
func (l *flakyLog) ReadRange(_ context.Context, topic string, partition int, from, to int64, fn func(tpkafka.Record) error) (missing int64, err error) {
	l.starts = append(l.starts, from)
	after, fail := l.script()
	if from < l.first {
		missing, from = l.first-from, l.first
	}
	for o := from; o < min(to, l.end); o++ {
		if fail != nil && after == 0 {
			break
		}
		after--
		if err := fn(tpkafka.Record{Topic: topic, Partition: partition, Offset: o}); err != nil {
			return missing, err
		}
	}
	if fail != nil {
		return missing, fmt.Errorf("read %s/%d [%d,%d): %w", topic, partition, from, to, fail)
	}
	return missing, nil
}

var (
	errLeaderMoving = kafka.NotLeaderForPartition          // retriable: the partials topic right after its creation
	errBrokerGone   = fmt.Errorf("fetch: %w", io.EOF)      // retriable: a broken connection
	errForbidden    = kafka.TopicAuthorizationFailed       // final
	errReplay       = errors.New("BUG: replay went wrong") // fn's own
)

func testRetryingLog(l partitionLog) *retryingLog {
	r := newRetryingLog(l, nil, "reduce", time.Now)
	r.minBackoff, r.maxBackoff = time.Millisecond, 4*time.Millisecond
	return r
}

// TestRetryingLogOffsets: a partition's bounds are read again until the
// leader answers; a final error is returned at once.
func TestRetryingLogOffsets(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fails     []error
		wantErr   error
		wantCalls int
	}{
		{"succeeds", nil, nil, 1},
		{"leader not elected yet, then a broken connection", []error{errLeaderMoving, errBrokerGone, errLeaderMoving}, nil, 4},
		{"not authorized: final", []error{errForbidden, nil}, errForbidden, 1},
		{"retriable, then final", []error{errLeaderMoving, errForbidden}, errForbidden, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &flakyLog{first: 3, end: 9, fails: tc.fails}
			first, end, err := testRetryingLog(l).Offsets(context.Background(), "partials", 2)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && (first != 3 || end != 9) {
				t.Errorf("bounds [%d, %d), want [3, 9)", first, end)
			}
			if l.calls != tc.wantCalls {
				t.Errorf("%d calls, want %d", l.calls, tc.wantCalls)
			}
		})
	}
}

// TestRetryingLogReadRange: a range read that fails resumes after the last
// record handed over, so that the caller sees each record once and in
// order, with what retention deleted counted once; fn's own error and a
// final one end the read.
func TestRetryingLogReadRange(t *testing.T) {
	seq := func(from, to int64) []int64 {
		var s []int64
		for o := from; o < to; o++ {
			s = append(s, o)
		}
		return s
	}
	for _, tc := range []struct {
		name        string
		first       int64
		fails       []error
		after       []int
		fnFailsAt   int64 // -1: never
		wantErr     error
		wantSeen    []int64
		wantMissing int64
		wantStarts  []int64
	}{
		{name: "one pass", fnFailsAt: -1, wantSeen: seq(2, 10), wantStarts: []int64{2}},
		{name: "broken twice mid-range", fails: []error{errBrokerGone, errLeaderMoving}, after: []int{3, 2}, fnFailsAt: -1,
			wantSeen: seq(2, 10), wantStarts: []int64{2, 5, 7}},
		{name: "fails before the first record", fails: []error{errLeaderMoving}, fnFailsAt: -1,
			wantSeen: seq(2, 10), wantStarts: []int64{2, 2}},
		{name: "retention deleted the start, then a failure", first: 4, fails: []error{errBrokerGone, errBrokerGone}, after: []int{0, 1},
			fnFailsAt: -1, wantSeen: seq(4, 10), wantMissing: 2, wantStarts: []int64{2, 4, 5}},
		{name: "fn's error is not retried", fails: []error{errBrokerGone}, after: []int{2}, fnFailsAt: 6, wantErr: errReplay,
			wantSeen: seq(2, 6), wantStarts: []int64{2, 4}},
		{name: "final error", fails: []error{errLeaderMoving, errForbidden}, after: []int{1, 1}, fnFailsAt: -1, wantErr: errForbidden,
			wantSeen: seq(2, 4), wantStarts: []int64{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &flakyLog{first: tc.first, end: 12, fails: tc.fails, after: tc.after}
			var seen []int64
			missing, err := testRetryingLog(l).ReadRange(context.Background(), "partials", 2, 2, 10, func(r tpkafka.Record) error {
				if r.Offset == tc.fnFailsAt {
					return errReplay
				}
				seen = append(seen, r.Offset)
				return nil
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(seen, tc.wantSeen) {
				t.Errorf("fn saw %v, want %v", seen, tc.wantSeen)
			}
			if missing != tc.wantMissing {
				t.Errorf("missing %d, want %d", missing, tc.wantMissing)
			}
			if !slices.Equal(l.starts, tc.wantStarts) {
				t.Errorf("reads started at %v, want %v", l.starts, tc.wantStarts)
			}
		})
	}
}

// TestRetryingLogStopsWithItsContext: a read failing for good while the
// broker is away ends when the assignment does.
func TestRetryingLogStopsWithItsContext(t *testing.T) {
	l := &flakyLog{end: 10, fails: slices.Repeat([]error{errBrokerGone}, 1000)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := testRetryingLog(l).Offsets(ctx, "partials", 0); !errors.Is(err, io.EOF) || ctx.Err() == nil {
		t.Errorf("err %v (ctx %v), want the last failure after ctx ended", err, ctx.Err())
	}
}

// TestReduceOpenRetriesLeaderNotElected: a reduce partition assigned right
// after the partials topic was created, whose leader does not answer yet
// (Not Leader For Partition), opens once it does, instead of failing Open
// and being restarted from its commit (TestIntegrationSearchEngineOutage
// counted such a restart as a lost partition).
func TestReduceOpenRetriesLeaderNotElected(t *testing.T) {
	a, err := New(testConfig([]string{"127.0.0.1:1"}, "t"), nopStore{}, Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	l := &flakyLog{first: 0, end: 0, fails: []error{errLeaderMoving, errLeaderMoving}}
	w := a.newReduceProc(l, tpkafka.Assignment{Stage: ReduceStage, Partition: 2, Logger: slog.New(slog.DiscardHandler)})
	w.admin.(*retryingLog).minBackoff = time.Millisecond
	from, err := w.Open(context.Background(), tpkafka.Commit{Offset: -1})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if from != 0 || l.calls != 3 {
		t.Errorf("from %d after %d calls, want 0 after 3", from, l.calls)
	}
	w.Release()
}
