package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/replay"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

func TestReplayUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no range", []string{"replay"}, "--from and --to are required"},
		{"backwards", []string{"replay", "--from", "2026-12-01T06:00Z", "--to", "2026-12-01T00:00Z"}, "must be before --to"},
		{"bad time", []string{"replay", "--from", "yesterday", "--to", "2026-12-01"}, "--from"},
		{"stages", []string{"replay", "--from", "2026-12-01", "--to", "2026-12-02", "--stages", "index,fly"}, `unknown stage "fly"`},
		{"event range half", []string{"replay", "--from", "2026-12-01", "--to", "2026-12-02", "--event-from", "2026-11-01"}, "go together"},
		{"progress", []string{"replay", "--from", "2026-12-01", "--to", "2026-12-02", "--progress", "loud"}, "--progress"},
		{"arguments", []string{"replay", "--from", "2026-12-01", "--to", "2026-12-02", "extra"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, nil, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 naming %s", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(replay.Progress{Phase: replay.PhaseCopying, Total: 1000, Copied: 800, Processed: 250, Partitions: 4, PartitionsDone: 1, Elapsed: 5 * time.Second}, 50)
	want := "[======                  ]  25.0% 250/1000 records  50/s  ETA 15s  partitions 1/4 read  5s"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	got = progressLine(replay.Progress{Phase: replay.PhaseSettling, Total: 1000, Copied: 1000, Processed: 1000, Partitions: 4, PartitionsDone: 4, Elapsed: 9 * time.Second}, 3)
	want = "[========================] 100.0% 1000/1000 records  partitions 4/4 read  9s  every record read; the stages finish their last traces and windows"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// storeSnapshot is every trace (as GetTrace returns it), rollup and edge
// rollup of an embedded store, versions included.
type storeSnapshot struct {
	traces  map[string]string
	rollups map[string]model.Rollup
	edges   map[string]model.EdgeRollup
}

func snapshotStore(t *testing.T, path string) storeSnapshot {
	t.Helper()
	ctx := context.Background()
	s, err := embedded.Open(ctx, embedded.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap := storeSnapshot{traces: map[string]string{}, rollups: map[string]model.Rollup{}, edges: map[string]model.EdgeRollup{}}
	sums, err := s.FindTraces(ctx, model.TraceQuery{Limit: model.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range sums {
		st, err := s.GetTrace(ctx, sum.TraceID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(st)
		snap.traces[sum.TraceID.String()] = string(b)
	}
	all := model.Timestamp(1<<63 - 1)
	if err := s.EachRollup(ctx, 0, all, func(p []model.Rollup) error {
		for _, r := range p {
			snap.rollups[r.ID()] = r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.EachEdgeRollup(ctx, 0, all, func(p []model.EdgeRollup) error {
		for _, e := range p {
			snap.edges[e.ID()] = e
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return snap
}

// kept reports what of a is missing or different in b (b may hold more).
func (a storeSnapshot) kept(b storeSnapshot) []string {
	var out []string
	for id, v := range a.traces {
		if b.traces[id] != v {
			out = append(out, "trace "+id)
		}
	}
	for id, r := range a.rollups {
		if w, ok := b.rollups[id]; !ok || !reflect.DeepEqual(r, w) {
			out = append(out, "rollup "+id)
		}
	}
	for id, e := range a.edges {
		if w, ok := b.edges[id]; !ok || !reflect.DeepEqual(e, w) {
			out = append(out, "edge "+id)
		}
	}
	return out
}

// TestReplayCommand is the embedded quick start's backfill: `tracepipe run`
// stores a generated workload; replay refuses to run beside it; once it
// stopped, `tracepipe replay --data-dir` reads its broker's log, prints
// progress lines and a summary, and changes no trace, rollup or edge rollup
// that was stored (it may add the windows run had not written yet); a
// second replay of the range changes nothing at all.
func TestReplayCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline and two replays, about 40 s")
	}
	dir := filepath.Join(t.TempDir(), "data")
	broker := freeAddr(t, "tcp")
	short := []string{"--aggregator-flush-interval", "200ms", "--aggregator-checkpoint-interval", "500ms",
		"--aggregator-idle-timeout", "1s", "--aggregator-coarse-interval", "500ms", "--ingester-idle-timeout", "300ms"}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan int, 1)
	var runErr bytes.Buffer
	go func() {
		args := append([]string{"run", "--data-dir", dir, "--broker-listen", broker, "--listen", "", "--metrics-addr", "",
			"--jaeger-compact-udp", "", "--jaeger-binary-udp", "", "--jaeger-http", "", "--otlp-grpc", "", "--otlp-http", "", "--sampling-http", ""}, short...)
		runDone <- run(runCtx, args, nil, &bytes.Buffer{}, &runErr)
	}()
	defer func() {
		stopRun()
		<-runDone
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.Dial("tcp", broker); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracepipe run did not start: %s", runErr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	from := time.Now().Add(-time.Minute).UTC()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"gen", "--kafka-brokers", broker, "--traces", "100", "--interval", "20ms", "--seed", "3"}, nil, &out, &errb); code != 0 {
		t.Fatalf("gen: exit %d: %s", code, errb.String())
	}
	to := time.Now().Add(time.Minute).UTC()
	store := filepath.Join(dir, "tracepipe.db")
	for deadline := time.Now().Add(60 * time.Second); ; {
		out.Reset()
		if code := run(ctx, []string{"query", "slowest", "--store", store, "--since", "1h", "--limit", "200"}, nil, &out, &errb); code == 0 {
			if n := strings.Count(out.String(), "\n") - 1; n >= 100 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not store 100 traces: %s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	replayArgs := append([]string{"replay", "--data-dir", dir, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--work-dir", filepath.Join(t.TempDir(), "work"), "--progress", "lines", "--progress-interval", "200ms", "--margin", "0s"}, short...)

	// Beside a running `tracepipe run`: refused, naming the way out.
	errb.Reset()
	if code := run(ctx, replayArgs, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "stop 'tracepipe run' first") {
		t.Fatalf("replay beside run: exit %d: %s", code, errb.String())
	}
	time.Sleep(3 * time.Second) // let run's aggregator write what it holds
	stopRun()
	if code := <-runDone; code != 0 {
		t.Fatalf("run: exit %d: %s", code, runErr.String())
	}
	runDone <- 0

	before := snapshotStore(t, store)
	if len(before.traces) != 100 {
		t.Fatalf("%d traces stored, want 100", len(before.traces))
	}
	out.Reset()
	errb.Reset()
	if code := run(ctx, replayArgs, nil, &out, &errb); code != 0 {
		t.Fatalf("replay: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	t.Logf("replay:\n%s%s", errb.String(), out.String())
	for _, want := range []string{"replay of jaeger-spans finished", "100 trace versions written", "rollups of whole windows written"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errb.String(), "replay: [") {
		t.Errorf("no progress lines:\n%s", errb.String())
	}
	after := snapshotStore(t, store)
	if d := before.kept(after); len(d) > 0 {
		t.Errorf("the replay changed %d stored documents: %v", len(d), d[:min(len(d), 10)])
	}
	if len(after.rollups) == 0 {
		t.Error("no rollups stored")
	}
	out.Reset()
	if code := run(ctx, replayArgs, nil, &out, &errb); code != 0 {
		t.Fatalf("second replay: exit %d\n%s", code, errb.String())
	}
	again := snapshotStore(t, store)
	if d := after.kept(again); len(d) > 0 || len(again.rollups) != len(after.rollups) || len(again.edges) != len(after.edges) {
		t.Errorf("the second replay changed the store: %v; rollups %d -> %d, edges %d -> %d", d, len(after.rollups), len(again.rollups), len(after.edges), len(again.edges))
	}
}
