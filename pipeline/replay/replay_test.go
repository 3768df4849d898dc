package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/pipeline/local"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Short intervals for the stages of the tests (live and replayed).
func tuneAggregator(ac *aggregator.Config) {
	ac.FlushInterval = 200 * time.Millisecond
	ac.CoarseInterval = 500 * time.Millisecond
	ac.CheckpointInterval = 500 * time.Millisecond
	ac.IdleTimeout = time.Second
	ac.SessionTimeout = 6 * time.Second
}

func liveConfig(dir string) local.Config {
	cfg := local.DefaultConfig()
	cfg.DataDir = dir
	cfg.BrokerListen = "127.0.0.1:0"
	cfg.Partitions = 3
	cfg.QueryListen, cfg.MetricsAddr = "", ""
	cfg.Collector = local.Config{}.Collector
	cfg.Ingest.IdleTimeout = 200 * time.Millisecond
	cfg.Ingest.MaxWait = 3 * time.Second
	cfg.Ingest.LateHorizon = 300 * time.Millisecond
	cfg.Ingest.CommitInterval = 100 * time.Millisecond
	cfg.Ingest.SessionTimeout = 6 * time.Second
	cfg.Ingest.ShutdownGrace = 3 * time.Second
	return cfg
}

// live runs the whole pipeline (ingester, indexer, aggregator) on an
// embedded broker into store, as `tracepipe run` does.
type live struct {
	cfg     local.Config
	brokers []string
	stop    func()
}

func startLive(t *testing.T, store *embedded.Store) *live {
	t.Helper()
	l := &live{cfg: liveConfig(t.TempDir())}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	deps := local.Deps{Stages: func(brokers []string) ([]local.Stage, error) {
		xc := index.DefaultConfig()
		xc.Brokers, xc.Topic = brokers, l.cfg.Ingest.TracesTopic
		x, err := index.New(xc, store, index.Options{})
		if err != nil {
			return nil, err
		}
		ac := aggregator.DefaultConfig()
		ac.Brokers, ac.TracesTopic, ac.PartialsPartitions = brokers, l.cfg.Ingest.TracesTopic, l.cfg.Partitions
		tuneAggregator(&ac)
		a, err := aggregator.New(ac, store, aggregator.Options{})
		if err != nil {
			return nil, err
		}
		return []local.Stage{x, a}, nil
	}}
	go func() { done <- local.Run(ctx, l.cfg, deps, func(b []string) { ready <- b }) }()
	select {
	case l.brokers = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("live pipeline: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("live pipeline did not start")
	}
	l.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("live pipeline: %v", err)
		}
	}
	return l
}

// publish produces a generated workload's spans, keyed by trace ID.
func publish(t *testing.T, brokers []string, topic string, w *tracegen.Workload) {
	t.Helper()
	enc, err := tracegen.EncoderFor(wire.JaegerProto)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	tr := kafkatest.NewTransport(t)
	kw := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, Balancer: &kafkago.Hash{},
		Transport: tr, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer kw.Close()
	if err := tracegen.Publish(context.Background(), kafkatest.Sender(kw), msgs, 0, 500); err != nil {
		t.Fatal(err)
	}
}

// waitDrained waits until every group has committed its topic's end and
// nothing moved for settle.
func waitDrained(t *testing.T, brokers []string, partitions int, settle time.Duration, groups ...[2]string) {
	t.Helper()
	admin, err := kafka.NewAdmin(kafka.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := context.Background()
	deadline := time.Now().Add(90 * time.Second)
	var quiet time.Time
	last := ""
	for time.Now().Before(deadline) {
		state, drained := "", true
		for _, g := range groups {
			n, err := admin.Partitions(ctx, g[1])
			if err != nil {
				drained = false
				break
			}
			for p := range n {
				_, end, err1 := admin.Offsets(ctx, g[1], p)
				c, err2 := admin.Committed(ctx, g[0], g[1], p)
				if err1 != nil || err2 != nil || c.Offset < end {
					drained = false
				}
				state += fmt.Sprintf("%s/%d=%d/%d ", g[0], p, c.Offset, end)
			}
		}
		switch {
		case !drained || state != last:
			quiet = time.Time{}
		case quiet.IsZero():
			quiet = time.Now()
		case time.Since(quiet) > settle:
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the live pipeline did not drain: %s", last)
}

// snapshot is everything a store holds in the event range: every trace as
// GetTrace returns it, every rollup and edge rollup with its version.
type snapshot struct {
	Traces  map[string]string
	Rollups map[string]model.Rollup
	Edges   map[string]model.EdgeRollup
}

func takeSnapshot(t *testing.T, s *embedded.Store, from, to model.Timestamp) snapshot {
	t.Helper()
	ctx := context.Background()
	snap := snapshot{Traces: map[string]string{}, Rollups: map[string]model.Rollup{}, Edges: map[string]model.EdgeRollup{}}
	sums, err := s.FindTraces(ctx, model.TraceQuery{Start: from, End: to, Limit: model.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range sums {
		st, err := s.GetTrace(ctx, sum.TraceID)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		snap.Traces[sum.TraceID.String()] = string(b)
	}
	if err := s.EachRollup(ctx, from.Add(-48*time.Hour), to.Add(48*time.Hour), func(page []model.Rollup) error {
		for _, r := range page {
			snap.Rollups[r.ID()] = r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.EachEdgeRollup(ctx, from.Add(-48*time.Hour), to.Add(48*time.Hour), func(page []model.EdgeRollup) error {
		for _, e := range page {
			snap.Edges[e.ID()] = e
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return snap
}

// diff describes how two snapshots differ (empty: equal); versions are
// compared only when withVersions.
func (a snapshot) diff(b snapshot, withVersions bool) string {
	var out []string
	for id, v := range a.Traces {
		if w, ok := b.Traces[id]; !ok {
			out = append(out, "trace "+id+" missing")
		} else if v != w {
			out = append(out, "trace "+id+" differs")
		}
	}
	for id := range b.Traces {
		if _, ok := a.Traces[id]; !ok {
			out = append(out, "trace "+id+" extra")
		}
	}
	for id, r := range a.Rollups {
		w, ok := b.Rollups[id]
		if !withVersions {
			r.Version, w.Version = 0, 0
		}
		if !ok {
			out = append(out, "rollup "+id+" missing")
		} else if !reflect.DeepEqual(r, w) {
			out = append(out, fmt.Sprintf("rollup %s differs: %+v vs %+v", id, r, w))
		}
	}
	for id := range b.Rollups {
		if _, ok := a.Rollups[id]; !ok {
			out = append(out, "rollup "+id+" extra")
		}
	}
	for id, e := range a.Edges {
		w, ok := b.Edges[id]
		if !withVersions {
			e.Version, w.Version = 0, 0
		}
		if !ok {
			out = append(out, "edge "+id+" missing")
		} else if !reflect.DeepEqual(e, w) {
			out = append(out, "edge "+id+" differs")
		}
	}
	for id := range b.Edges {
		if _, ok := a.Edges[id]; !ok {
			out = append(out, "edge "+id+" extra")
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return fmt.Sprint(out)
}

// only keeps the rollups and edges of windows with the given resolution.
func (a snapshot) only(res time.Duration) snapshot {
	out := snapshot{Traces: a.Traces, Rollups: map[string]model.Rollup{}, Edges: map[string]model.EdgeRollup{}}
	for id, r := range a.Rollups {
		if r.Resolution == res {
			out.Rollups[id] = r
		}
	}
	for id, e := range a.Edges {
		if e.Resolution == res {
			out.Edges[id] = e
		}
	}
	return out
}

func openStore(t *testing.T) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "store.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func replayConfig(t *testing.T, brokers []string, from, to time.Time, er eventRange) Config {
	cfg := DefaultConfig()
	cfg.Source = kafka.ClientConfig{Brokers: brokers}
	cfg.From, cfg.To = from, to
	cfg.EventFrom, cfg.EventTo = er.from.Time(), er.to.Time()
	cfg.Margin = 0
	cfg.WorkDir = filepath.Join(t.TempDir(), "work")
	cfg.Ingest.IdleTimeout = 200 * time.Millisecond
	cfg.Ingest.MaxWait = 3 * time.Second
	cfg.Ingest.LateHorizon = 300 * time.Millisecond
	cfg.Ingest.CommitInterval = 100 * time.Millisecond
	cfg.Ingest.SessionTimeout = 6 * time.Second
	tuneAggregator(&cfg.Aggregator)
	cfg.ProgressInterval = 100 * time.Millisecond
	return cfg
}

// TestReplay runs the live pipeline over a generated workload, then:
// a replay of the same range into the same store changes nothing (every
// trace, rollup and edge rollup byte-for-byte, versions included); a
// replay into an empty store gives every trace and every 1-minute rollup
// and edge rollup the live pipeline computed (versions aside); and a
// replay stopped half-way and run again gives the same.
func TestReplay(t *testing.T) {
	liveStore := openStore(t)
	l := startLive(t, liveStore)
	defer l.stop()

	// Event times: whole minutes just behind now, so the record-time
	// range and the event-time range are both "the last few minutes".
	base := time.Now().Add(-3 * time.Minute).Truncate(time.Minute)
	w := tracegen.Generate(tracegen.Config{Seed: 5, Traces: 300, Start: base.Add(time.Second), Interval: 300 * time.Millisecond})
	from := time.Now().Add(-time.Second)
	publish(t, l.brokers, l.cfg.Ingest.SpansTopic, w)
	to := time.Now().Add(time.Second)
	er := newEventRange(base, base.Add(3*time.Minute))
	waitDrained(t, l.brokers, l.cfg.Partitions, 4*time.Second,
		[2]string{l.cfg.Ingest.Group, l.cfg.Ingest.SpansTopic}, [2]string{index.DefaultConfig().Group, l.cfg.Ingest.TracesTopic},
		[2]string{aggregator.DefaultConfig().Group, l.cfg.Ingest.TracesTopic}, [2]string{aggregator.DefaultConfig().ReduceGroup, aggregator.DefaultConfig().PartialsTopic})
	before := takeSnapshot(t, liveStore, er.from, er.to)
	t.Logf("live store: %d traces, %d rollups, %d edge rollups in the event range", len(before.Traces), len(before.Rollups), len(before.Edges))
	if len(before.Traces) != 300 {
		t.Fatalf("the live pipeline stored %d traces, want 300", len(before.Traces))
	}

	t.Run("same store: nothing changes", func(t *testing.T) {
		cfg := replayConfig(t, l.brokers, from, to, er)
		sum, err := Run(context.Background(), cfg, Deps{Store: liveStore})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Traces != 300 || sum.Rollups == 0 {
			t.Errorf("summary %+v: want 300 traces and some rollups handed to the store", sum)
		}
		if d := before.diff(takeSnapshot(t, liveStore, er.from, er.to), true); d != "[]" {
			t.Errorf("the replay changed the store: %s", d)
		}
	})

	want := before.only(time.Minute)
	t.Run("empty store: the live pipeline's traces and rollups", func(t *testing.T) {
		fresh := openStore(t)
		cfg := replayConfig(t, l.brokers, from, to, er)
		var progress []Progress
		sum, err := Run(context.Background(), cfg, Deps{Store: fresh, Progress: func(p Progress) { progress = append(progress, p) }})
		if err != nil {
			t.Fatal(err)
		}
		got := takeSnapshot(t, fresh, er.from, er.to)
		if d := want.diff(got, false); d != "[]" {
			t.Errorf("replayed store differs from the live one: %s", d)
		}
		if n := len(got.Rollups) - len(got.only(time.Minute).Rollups); n != 0 {
			t.Errorf("%d rollups of windows only partly in the range were written", n)
		}
		if sum.PartialWindows[time.Hour] == 0 {
			t.Errorf("summary %+v: no partial 1h windows reported", sum)
		}
		if len(progress) == 0 || progress[len(progress)-1].Phase != PhaseDone || progress[len(progress)-1].Processed != sum.Records {
			t.Errorf("progress: last of %d is %+v, want done with %d records", len(progress), progress[len(progress)-1], sum.Records)
		}
	})

	t.Run("stopped and resumed", func(t *testing.T) {
		fresh := openStore(t)
		cfg := replayConfig(t, l.brokers, from, to, er)
		ctx, cancel := context.WithCancel(context.Background())
		_, err := Run(ctx, cfg, Deps{Store: fresh, Progress: func(p Progress) {
			if p.Copied > 0 {
				cancel()
			}
		}})
		cancel()
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("first run: %v, want ErrInterrupted", err)
		}
		sum, err := Run(context.Background(), cfg, Deps{Store: fresh})
		if err != nil {
			t.Fatal(err)
		}
		if !sum.Resumed {
			t.Error("the second run did not resume")
		}
		if d := want.diff(takeSnapshot(t, fresh, er.from, er.to), false); d != "[]" {
			t.Errorf("resumed replay differs from the live store: %s", d)
		}
	})
}
