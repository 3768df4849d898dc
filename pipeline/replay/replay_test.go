package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
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
	"github.com/tracepipe/tracepipe/storage"
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

// live runs the whole pipeline (ingester, indexer, aggregator) into a
// store, as `tracepipe run` does: on an embedded broker, or on real Kafka
// when cfg.Brokers is set. Its topics and groups are cfg.Ingest's, xc's and
// ac's (their brokers and traces topic are set when it starts).
type live struct {
	cfg     local.Config
	xc      index.Config
	ac      aggregator.Config
	brokers []string
	stop    func()
}

func newLive(t testing.TB) *live {
	t.Helper()
	l := &live{cfg: liveConfig(t.TempDir()), xc: index.DefaultConfig(), ac: aggregator.DefaultConfig()}
	l.ac.PartialsPartitions = l.cfg.Partitions
	tuneAggregator(&l.ac)
	return l
}

// start runs l into store until the test ends.
func (l *live) start(t testing.TB, store storage.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	deps := local.Deps{Stages: func(brokers []string) ([]local.Stage, error) {
		xc := l.xc
		xc.Brokers, xc.Topic = brokers, l.cfg.Ingest.TracesTopic
		x, err := index.New(xc, store, index.Options{})
		if err != nil {
			return nil, err
		}
		ac := l.ac
		ac.Brokers, ac.TracesTopic = brokers, l.cfg.Ingest.TracesTopic
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
	case <-time.After(60 * time.Second):
		cancel()
		<-done
		t.Fatal("live pipeline did not start")
	}
	var once sync.Once
	l.stop = func() { // the test may stop it before its cleanup does
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("live pipeline: %v", err)
			}
		})
	}
	t.Cleanup(l.stop)
}

// groups are the live pipeline's consumer groups with their topics.
func (l *live) groups() [][2]string {
	return [][2]string{{l.cfg.Ingest.Group, l.cfg.Ingest.SpansTopic}, {l.xc.Group, l.cfg.Ingest.TracesTopic},
		{l.ac.Group, l.cfg.Ingest.TracesTopic}, {l.ac.ReduceGroup, l.ac.PartialsTopic}}
}

// workloadTraces is the number of traces of the tests' workload.
const workloadTraces = 300

// runWorkload publishes the tests' workload (300 traces over 90 s of event
// time) to the live pipeline and waits until every stage has processed it.
// from and to bound the spans' record times; er holds the traces' event
// times: whole minutes just behind now, so the record-time range and the
// event-time range are both "the last few minutes".
func (l *live) runWorkload(t testing.TB) (from, to time.Time, er eventRange) {
	t.Helper()
	base := time.Now().Add(-3 * time.Minute).Truncate(time.Minute)
	w := tracegen.Generate(tracegen.Config{Seed: 5, Traces: workloadTraces, Start: base.Add(time.Second), Interval: 300 * time.Millisecond})
	from = time.Now().Add(-time.Second)
	publish(t, l.brokers, l.cfg.Ingest.SpansTopic, w)
	to = time.Now().Add(time.Second)
	er = newEventRange(base, base.Add(3*time.Minute))
	waitDrained(t, l.brokers, 4*time.Second, l.groups()...)
	return from, to, er
}

// publish produces a generated workload's spans, keyed by trace ID.
func publish(t testing.TB, brokers []string, topic string, w *tracegen.Workload) {
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
func waitDrained(t testing.TB, brokers []string, settle time.Duration, groups ...[2]string) {
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
	Traces  map[string]model.StoredTrace
	Rollups map[string]model.Rollup
	Edges   map[string]model.EdgeRollup
}

func takeSnapshot(t *testing.T, s *embedded.Store, from, to model.Timestamp) snapshot {
	t.Helper()
	ctx := context.Background()
	snap := snapshot{Traces: map[string]model.StoredTrace{}, Rollups: map[string]model.Rollup{}, Edges: map[string]model.EdgeRollup{}}
	sums, err := s.FindTraces(ctx, model.TraceQuery{Start: from, End: to, Limit: model.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range sums {
		st, err := s.GetTrace(ctx, sum.TraceID)
		if err != nil {
			t.Fatal(err)
		}
		snap.Traces[sum.TraceID.String()] = st
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

// storeReader is what readSnapshot reads: the query side's API, which
// every store answers (the embedded one and Elasticsearch).
type storeReader interface {
	storage.Reader
	storage.EdgeReader
}

// readSnapshot is takeSnapshot through the public reader API only: every
// trace starting in [from, to) (FindTraces, GetTrace); the rollups of
// every (service, operation) of their spans and the edge rollups of every
// (caller, callee) pair of their calls, at each resolution of the
// aggregator's defaults, over the windows starting within two days of the
// range. The readers return no rollup versions: those are 0. It reads with
// a few requests at once, as the query API's users do.
func readSnapshot(t *testing.T, s storeReader, from, to model.Timestamp) snapshot {
	t.Helper()
	ctx := context.Background()
	snap := snapshot{Traces: map[string]model.StoredTrace{}, Rollups: map[string]model.Rollup{}, Edges: map[string]model.EdgeRollup{}}
	sums, err := s.FindTraces(ctx, model.TraceQuery{Start: from, End: to, Limit: model.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) == model.MaxLimit {
		t.Fatalf("FindTraces returned its limit of %d traces: the snapshot would be incomplete", model.MaxLimit)
	}
	var mu sync.Mutex // guards snap
	ops, edges := map[[2]string]bool{}, map[[2]string]bool{}
	jobs := make([]func() error, 0, len(sums))
	for _, sum := range sums {
		jobs = append(jobs, func() error {
			st, err := s.GetTrace(ctx, sum.TraceID)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			snap.Traces[sum.TraceID.String()] = st
			service := map[model.SpanID]string{}
			for _, sp := range st.Trace.Spans {
				service[sp.SpanID] = sp.Process.ServiceName
				ops[[2]string{sp.Process.ServiceName, sp.Operation}] = true
			}
			for _, sp := range st.Trace.Spans {
				if pid, _, ok := sp.ParentSpanID(); ok {
					if caller, ok := service[pid]; ok && caller != sp.Process.ServiceName {
						edges[[2]string{caller, sp.Process.ServiceName}] = true
					}
				}
			}
			return nil
		})
	}
	if err := parallel(readers, jobs); err != nil {
		t.Fatal(err)
	}

	stats := aggregator.DefaultConfig().Stats.Normalized()
	resolutions := append([]time.Duration{stats.Window}, stats.Coarse...)
	start, end := from.Add(-48*time.Hour), to.Add(48*time.Hour)
	jobs = jobs[:0]
	for _, res := range resolutions {
		for op := range ops {
			jobs = append(jobs, func() error {
				rs, err := s.RollupSeries(ctx, model.RollupQuery{Service: op[0], Operation: op[1], Resolution: res, Start: start, End: end, Limit: model.MaxLimit})
				if err != nil {
					return err
				}
				if len(rs) == model.MaxLimit {
					return fmt.Errorf("RollupSeries %v %s returned its limit of %d rollups", op, res, model.MaxLimit)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, r := range rs {
					snap.Rollups[r.ID()] = r
				}
				return nil
			})
		}
		for e := range edges {
			jobs = append(jobs, func() error {
				es, err := s.EdgeSeries(ctx, res, e[0], e[1], start, end)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for _, e := range es {
					snap.Edges[e.ID()] = e
				}
				return nil
			})
		}
	}
	if err := parallel(readers, jobs); err != nil {
		t.Fatal(err)
	}
	return snap
}

// readers is how many requests readSnapshot makes at once.
const readers = 4

// parallel runs jobs, n at once, and returns their errors joined.
func parallel(n int, jobs []func() error) error {
	next := make(chan func() error)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range next {
				if err := job(); err != nil && errs[i] == nil {
					errs[i] = err
				}
			}
		}()
	}
	for _, job := range jobs {
		next <- job
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// withoutTraces is a with its rollups and edge rollups only.
func (a snapshot) withoutTraces() snapshot {
	a.Traces = map[string]model.StoredTrace{}
	return a
}

// diff describes how two snapshots differ (empty: equal). Exact compares
// everything, each trace as JSON byte for byte; otherwise what depends on
// one run's timing is left out: rollup and edge rollup versions, and a
// trace's Completion (how its stored version was emitted: an ingester that
// emitted a trace on its idle timeout before the rest of its spans arrived
// emits the whole trace again as "late", with the same version, spans and
// analysis; see model.AssembledTrace).
func (a snapshot) diff(b snapshot, exact bool) string {
	var out []string
	out = diffMaps(out, "trace", a.Traces, b.Traces, func(v, w model.StoredTrace) string {
		if !exact {
			v.Summary.Completion, w.Summary.Completion = 0, 0
		}
		if vj, wj := mustJSON(v), mustJSON(w); vj != wj {
			return firstDiff(vj, wj)
		}
		return ""
	})
	out = diffMaps(out, "rollup", a.Rollups, b.Rollups, func(r, w model.Rollup) string {
		if !exact {
			r.Version, w.Version = 0, 0
		}
		return deepDiff(r, w)
	})
	out = diffMaps(out, "edge", a.Edges, b.Edges, func(e, w model.EdgeRollup) string {
		if !exact {
			e.Version, w.Version = 0, 0
		}
		return deepDiff(e, w)
	})
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return fmt.Sprint(out)
}

// deepDiff shows a and b when they differ, else "".
func deepDiff[T any](a, b T) string {
	if reflect.DeepEqual(a, b) {
		return ""
	}
	return fmt.Sprintf("%+v vs %+v", a, b)
}

// diffMaps appends to out what is missing from b, extra in b, or differs
// (how: differ's answer, "" when equal), each named kind and ID.
func diffMaps[T any](out []string, kind string, a, b map[string]T, differ func(a, b T) string) []string {
	for id, v := range a {
		w, ok := b[id]
		if !ok {
			out = append(out, kind+" "+id+" missing")
		} else if d := differ(v, w); d != "" {
			out = append(out, kind+" "+id+" differs: "+d)
		}
	}
	for id := range b {
		if _, ok := a[id]; !ok {
			out = append(out, kind+" "+id+" extra")
		}
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// firstDiff shows where a and b first differ, with some context.
func firstDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(i-40, 0)
	return fmt.Sprintf("...%s... vs ...%s...", a[from:min(i+40, len(a))], b[from:min(i+40, len(b))])
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

func openStore(t testing.TB) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "store.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func replayConfig(t testing.TB, brokers []string, from, to time.Time, er eventRange) Config {
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
// and edge rollup the live pipeline computed (versions and how traces were
// emitted aside: see snapshot.diff); and a replay stopped half-way and run
// again gives the same.
func TestReplay(t *testing.T) {
	liveStore := openStore(t)
	l := newLive(t)
	l.start(t, liveStore)
	from, to, er := l.runWorkload(t)
	before := takeSnapshot(t, liveStore, er.from, er.to)
	t.Logf("live store: %d traces, %d rollups, %d edge rollups in the event range", len(before.Traces), len(before.Rollups), len(before.Edges))
	if len(before.Traces) != workloadTraces {
		t.Fatalf("the live pipeline stored %d traces, want %d", len(before.Traces), workloadTraces)
	}
	// The Elasticsearch test snapshots its stores through the reader API
	// only (it cannot list every rollup): on the same workload, that finds
	// every rollup and edge rollup there is.
	if d := before.diff(readSnapshot(t, liveStore, er.from, er.to), false); d != "[]" {
		t.Fatalf("readSnapshot differs from takeSnapshot: %s", d)
	}

	t.Run("same store: nothing changes", func(t *testing.T) {
		cfg := replayConfig(t, l.brokers, from, to, er)
		sum, err := Run(context.Background(), cfg, Deps{Store: liveStore})
		if err != nil {
			t.Fatal(err)
		}
		// A trace emitted twice (see diff) is handed to the store twice.
		if sum.Traces < workloadTraces || sum.Rollups == 0 {
			t.Errorf("summary %+v: want at least %d traces and some rollups handed to the store", sum, workloadTraces)
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

// TestReplayTracesTopic replays the live pipeline's assembled-traces topic
// through the aggregator only (`--traces --stages aggregate`), into empty
// stores: with the live statistics configuration every 1-minute rollup and
// edge rollup equals the live one; with a new dimension (shard, a tag of
// the workload's database spans) the rollups split by it, and their counts
// and errors add up, per window and operation, to the live ones.
func TestReplayTracesTopic(t *testing.T) {
	liveStore := openStore(t)
	l := newLive(t)
	l.start(t, liveStore)
	from, _, er := l.runWorkload(t)
	to := time.Now() // the ingester wrote the last trace before its group drained
	want := takeSnapshot(t, liveStore, er.from, er.to).only(time.Minute).withoutTraces()
	if len(want.Rollups) == 0 || len(want.Edges) == 0 {
		t.Fatalf("live store: %d 1m rollups, %d 1m edge rollups; want some of each", len(want.Rollups), len(want.Edges))
	}

	tracesConfig := func(t *testing.T) Config {
		cfg := replayConfig(t, l.brokers, from, to, er)
		cfg.Topic, cfg.Traces = l.cfg.Ingest.TracesTopic, true
		cfg.Index, cfg.Aggregate = false, true
		return cfg
	}

	t.Run("same statistics: the live rollups", func(t *testing.T) {
		fresh := openStore(t)
		sum, err := Run(context.Background(), tracesConfig(t), Deps{Store: fresh})
		if err != nil {
			t.Fatal(err)
		}
		got := takeSnapshot(t, fresh, er.from, er.to)
		if len(got.Traces) != 0 || sum.Traces != 0 {
			t.Errorf("%d traces stored, %d in the summary: the index stage did not run, want none", len(got.Traces), sum.Traces)
		}
		if d := want.diff(got, false); d != "[]" {
			t.Errorf("replayed rollups differ from the live ones: %s", d)
		}
	})

	t.Run("new dimension: the live counts, split by shard", func(t *testing.T) {
		fresh := openStore(t)
		cfg := tracesConfig(t)
		cfg.Aggregator.Stats.Dimensions = []string{"shard"}
		if _, err := Run(context.Background(), cfg, Deps{Store: fresh}); err != nil {
			t.Fatal(err)
		}
		got := takeSnapshot(t, fresh, er.from, er.to).only(time.Minute)
		type key struct {
			window            model.Timestamp
			service, op, kind string
		}
		type counts struct{ count, errors int64 }
		sums := func(rs map[string]model.Rollup) map[key]counts {
			out := map[key]counts{}
			for _, r := range rs {
				k := key{r.WindowStart, r.Service, r.Operation, r.Kind.String()}
				c := out[k]
				c.count += r.Count
				c.errors += r.Errors
				out[k] = c
			}
			return out
		}
		shards := map[string]bool{}
		for _, r := range got.Rollups {
			if len(r.Dimensions) != 1 || r.Dimensions[0].Name != "shard" {
				t.Fatalf("rollup %s has dimensions %v, want shard only", r.ID(), r.Dimensions)
			}
			if v := r.Dimensions[0].Value; v != "" {
				shards[v] = true
			}
		}
		if len(shards) == 0 {
			t.Error("no rollup has a shard value")
		}
		if len(got.Rollups) <= len(want.Rollups) {
			t.Errorf("%d rollups by shard, %d without: the dimension split nothing", len(got.Rollups), len(want.Rollups))
		}
		wantSums, gotSums := sums(want.Rollups), sums(got.Rollups)
		if !reflect.DeepEqual(gotSums, wantSums) {
			var diffs []string
			for k, w := range wantSums {
				if g := gotSums[k]; g != w {
					diffs = append(diffs, fmt.Sprintf("%+v: %+v by shard, %+v live", k, g, w))
				}
			}
			for k, g := range gotSums {
				if _, ok := wantSums[k]; !ok {
					diffs = append(diffs, fmt.Sprintf("%+v: %+v by shard, none live", k, g))
				}
			}
			sort.Strings(diffs)
			t.Errorf("counts by shard do not add up to the live ones (%d keys differ): %v", len(diffs), diffs[:min(len(diffs), 10)])
		}
		t.Logf("%d 1m rollups by shard (values %v) against %d live", len(got.Rollups), shards, len(want.Rollups))
	})
}
