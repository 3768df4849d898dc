package ingest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/ingest/assemble"
)

func TestMemoryGovernorLimit(t *testing.T) {
	cases := []struct {
		name string
		g    MemoryGovernor
		b    int64
		want int64
	}{
		{"nothing buffered", MemoryGovernor{}, 0, DefaultMemoryOverhead},
		{"twice the buffered bytes plus overhead", MemoryGovernor{}, 100 << 20, 200<<20 + DefaultMemoryOverhead},
		{"negative reads as zero", MemoryGovernor{}, -5, DefaultMemoryOverhead},
		{"ceiling", MemoryGovernor{Ceiling: 300 << 20}, 1 << 30, 300 << 20},
		{"factor and overhead", MemoryGovernor{Factor: 1.5, Overhead: 10 << 20}, 100 << 20, 160 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.g.Limit(c.b); got != c.want {
				t.Errorf("Limit(%d) = %d, want %d", c.b, got, c.want)
			}
		})
	}
}

func TestMemoryGovernorFollowsTheBufferedBytes(t *testing.T) {
	var buffered atomic.Int64
	read := buffered.Load
	var (
		mu   sync.Mutex
		sets []int64
		last atomic.Int64
	)
	gov := &MemoryGovernor{Buffered: read, Overhead: 1, Interval: time.Millisecond, Hold: 5 * time.Millisecond, SetLimit: func(l int64) int64 {
		mu.Lock()
		sets = append(sets, l)
		mu.Unlock()
		last.Store(l)
		return 0
	}}
	stop := gov.Start(context.Background())
	wait := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for last.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("limit %d, want %d", last.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	wait(1)
	buffered.Store(1000)
	wait(2001)
	buffered.Store(10)
	wait(21)
	stop()
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(sets); i++ {
		if sets[i] == sets[i-1] {
			t.Errorf("limit set twice in a row to %d: %v", sets[i], sets)
		}
	}
}

func TestPeakWindowHoldsTheMaximum(t *testing.T) {
	var p peakWindow
	t0 := time.Unix(0, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	steps := []struct {
		s    int
		v    int64
		want int64
	}{
		{0, 10, 10}, {1, 50, 50}, {2, 20, 50}, {10, 5, 50},
		{32, 5, 20}, // 50 (at 1 s) left the 30 s window; 20 (at 2 s) is still in it
		{33, 7, 7},
		{34, 100, 100},
	}
	for _, st := range steps {
		if got := p.add(at(st.s), st.v, 30*time.Second); got != st.want {
			t.Errorf("at %ds add %d: peak %d, want %d", st.s, st.v, got, st.want)
		}
	}
}

// The ingester's governor reads the bytes buffered in its budget as they
// are now, not as the partitions' gauge last reported them.
func TestIngesterMemoryGovernorReadsTheBudget(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Brokers, cfg.SpansTopic, cfg.TracesTopic, cfg.Group = []string{"127.0.0.1:1"}, "spans", "traces", "g"
	in, err := New(cfg, Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	gov := in.MemoryGovernor(300 << 20)
	if gov.Ceiling != 300<<20 {
		t.Errorf("ceiling %d, want %d", gov.Ceiling, 300<<20)
	}
	if b := gov.Buffered(); b != 0 {
		t.Fatalf("nothing buffered yet, governor reads %d", b)
	}
	asm := assemble.New(assemble.Config{}, &fixedClock{t: time.Unix(1_800_000_000, 0)}, in.Budget())
	sp := &model.Span{TraceID: model.TraceID{Low: 1}, SpanID: 2, Operation: "op", Process: model.Process{ServiceName: "svc"}}
	asm.Add(0, []*model.Span{sp})
	_, _, want := in.Budget().InFlight()
	if want == 0 {
		t.Fatal("the span was not counted in the budget")
	}
	if b := gov.Buffered(); b != want {
		t.Errorf("governor reads %d buffered bytes, the budget holds %d", b, want)
	}
}
