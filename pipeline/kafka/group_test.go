package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

// goid is the calling goroutine's ID, to check which goroutine runs what.
func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// echo is a test processor: every record is produced to out with its
// offset as the token; Safe is the lowest offset not yet acknowledged, with
// the number of acks in this life as metadata.
type echo struct {
	a        Assignment
	out      string
	log      *journal
	takeMost int // >0: take at most this many records per Handle
	gid      uint64
	next     int64
	unacked  map[int64]bool
	acked    int
	closed   bool
	flushed  bool // Close produced a last message
}

// journal records what the processors of a test saw, across goroutines.
type journal struct {
	mu       sync.Mutex
	handled  map[int][]int64 // partition: offsets handed over, in order
	opened   map[int][]Commit
	wrongGo  int
	offered  int // records offered again after a refusal
	released int
}

func newJournal() *journal {
	return &journal{handled: map[int][]int64{}, opened: map[int][]Commit{}}
}

func (e *echo) check() {
	if g := goid(); g != e.gid {
		e.log.mu.Lock()
		e.log.wrongGo++
		e.log.mu.Unlock()
	}
}

func (e *echo) Open(ctx context.Context, c Commit) (int64, error) {
	e.gid = goid()
	e.log.mu.Lock()
	e.log.opened[e.a.Partition] = append(e.log.opened[e.a.Partition], c)
	e.log.mu.Unlock()
	if c.Committed() {
		e.next = c.Offset
		return c.Offset, nil
	}
	return FirstOffset, nil
}

func (e *echo) Handle(ctx context.Context, recs []Record) (int, error) {
	e.check()
	n := len(recs)
	if e.takeMost > 0 {
		n = min(n, e.takeMost)
	}
	var msgs []OutMessage
	e.log.mu.Lock()
	for _, r := range recs[:n] {
		e.log.handled[e.a.Partition] = append(e.log.handled[e.a.Partition], r.Offset)
		e.unacked[r.Offset] = true
		msgs = append(msgs, OutMessage{Topic: e.out, Key: r.Key, Value: r.Value, Token: r.Offset})
		e.next = r.Offset + 1
	}
	if n < len(recs) {
		e.log.offered += len(recs) - n
	}
	e.log.mu.Unlock()
	return n, e.a.Out.Produce(ctx, msgs...)
}

func (e *echo) Acked(a Ack) error {
	e.check()
	if a.Err != nil {
		return a.Err
	}
	if off, ok := a.Token.(int64); ok {
		delete(e.unacked, off)
	}
	e.acked++
	return nil
}

func (e *echo) Tick(ctx context.Context, now time.Time) error { e.check(); return nil }

func (e *echo) Safe() (Commit, bool) {
	e.check()
	lim := e.next
	for off := range e.unacked {
		lim = min(lim, off)
	}
	meta := "acked=" + strconv.Itoa(e.acked)
	if e.closed {
		meta += " closed"
	}
	return Commit{Offset: lim, Metadata: meta}, e.next > 0
}

func (e *echo) Close(ctx context.Context) error {
	e.check()
	e.closed = true
	if e.flushed {
		return nil
	}
	e.flushed = true
	return e.a.Out.Produce(ctx, OutMessage{Topic: e.out, Value: []byte("flush"), Token: "flush"})
}

func (e *echo) Release() {
	e.log.mu.Lock()
	e.log.released++
	e.log.mu.Unlock()
}

func groupConfig(c *kafkatest.Cluster, group, topic, out string, j *journal, takeMost int) GroupConfig {
	wc := DefaultWriterConfig()
	wc.MaxAttempts = 3
	return GroupConfig{
		Client: ClientConfig{Brokers: c.Brokers}, Group: group, Topic: topic, Stage: "test",
		Writer:         &wc,
		SessionTimeout: time.Second, CommitInterval: 50 * time.Millisecond, TickInterval: 20 * time.Millisecond,
		CloseTimeout: 5 * time.Second,
		NewProcessor: func(a Assignment) (Processor, error) {
			return &echo{a: a, out: out, log: j, takeMost: takeMost, unacked: map[int64]bool{}}, nil
		},
	}
}

// runGroup runs g until the returned stop is called; stop waits for Run.
func runGroup(t *testing.T, g *Group) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func committed(t *testing.T, c *kafkatest.Cluster, group, topic string, p int) Commit {
	t.Helper()
	a, err := NewAdmin(ClientConfig{Brokers: c.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cm, err := a.Committed(context.Background(), group, topic, p)
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// TestGroupProcessesAndCommits: every record of every partition is handed
// over once, in order; acks arrive on the partition's goroutine; the
// commit follows the acknowledged output, with metadata; the shared
// metrics show the lag at 0; Close and Release run on shutdown, and the
// final commit includes what Close produced.
func TestGroupProcessesAndCommits(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "in", 2)
	c.CreateTopic(t, "out", 1)
	var msgs []kafkago.Message
	for i := range 600 {
		msgs = append(msgs, kafkago.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	c.Produce(t, "in", msgs...)
	j := newJournal()
	reg := prometheus.NewRegistry()
	g, err := NewGroup(groupConfig(c, "g", "in", "out", j, 0), GroupOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if g.Healthy() {
		t.Fatal("healthy before Run")
	}
	stop := runGroup(t, g)
	total := func() int {
		j.mu.Lock()
		defer j.mu.Unlock()
		return len(j.handled[0]) + len(j.handled[1])
	}
	waitFor(t, "every record handled", func() bool { return total() == 600 })
	waitFor(t, "healthy", g.Healthy)
	ends := map[int]int64{}
	a, _ := NewAdmin(ClientConfig{Brokers: c.Brokers})
	defer a.Close()
	for p := range 2 {
		_, end, err := a.Offsets(context.Background(), "in", p)
		if err != nil {
			t.Fatal(err)
		}
		ends[p] = end
		waitFor(t, "commit at the end", func() bool { return committed(t, c, "g", "in", p).Offset == end })
		j.mu.Lock()
		if !slices.Equal(j.handled[p], seq(0, end)) {
			t.Errorf("partition %d handed over %d offsets out of order or repeated", p, len(j.handled[p]))
		}
		j.mu.Unlock()
	}
	waitFor(t, "lag 0", func() bool {
		return testutil.ToFloat64(g.m.consumerLag.WithLabelValues("test", "in", "0")) == 0 &&
			testutil.ToFloat64(g.m.processedLag.WithLabelValues("test", "in", "1")) == 0
	})
	if got := testutil.ToFloat64(g.m.member.WithLabelValues("test")); got != 1 {
		t.Errorf("group_member = %v, want 1", got)
	}
	if got := testutil.ToFloat64(g.m.assigned.WithLabelValues("test")); got != 2 {
		t.Errorf("partitions_assigned = %v, want 2", got)
	}
	stop()
	if g.Healthy() {
		t.Error("healthy after Run returned")
	}
	for p := range 2 {
		cm := committed(t, c, "g", "in", p)
		if cm.Offset != ends[p] || !bytes.HasSuffix([]byte(cm.Metadata), []byte(" closed")) {
			t.Errorf("partition %d final commit %+v, want offset %d with the metadata of a closed processor", p, cm, ends[p])
		}
		// 300ish acks of records plus the flush of Close.
		if n, _ := strconv.Atoi(string(bytes.Fields([]byte(cm.Metadata[len("acked="):]))[0])); int64(n) != ends[p]+1 {
			t.Errorf("partition %d: final commit after %d acks, want %d (every record and the flush)", p, n, ends[p]+1)
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.wrongGo != 0 {
		t.Errorf("%d processor calls (acks included) ran off the partition's goroutine", j.wrongGo)
	}
	if j.released != 2 {
		t.Errorf("released %d processors, want 2", j.released)
	}
	_, end, _ := a.Offsets(context.Background(), "out", 0)
	if end != 602 {
		t.Errorf("out has %d messages, want 602", end)
	}
}

func seq(from, to int64) []int64 {
	var s []int64
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// TestGroupBackpressure: a processor that takes one record at a time gets
// the rest offered again (after an ack or a tick), never a record twice,
// never out of order.
func TestGroupBackpressure(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "in", 1)
	c.CreateTopic(t, "out", 1)
	c.Produce(t, "in", kafkatest.Messages("v", 200)...)
	j := newJournal()
	g, err := NewGroup(groupConfig(c, "g", "in", "out", j, 1), GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runGroup(t, g)
	waitFor(t, "every record handled", func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		return len(j.handled[0]) >= 200
	})
	j.mu.Lock()
	defer j.mu.Unlock()
	if !slices.Equal(j.handled[0], seq(0, 200)) {
		t.Errorf("handed over %v", j.handled[0])
	}
	if j.offered == 0 {
		t.Error("the processor never refused part of a chunk")
	}
}

// TestGroupResumesFromCommit: a second run of the group opens with the
// first run's commit (metadata included) and hands over only what came
// after it.
func TestGroupResumesFromCommit(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "in", 1)
	c.CreateTopic(t, "out", 1)
	c.Produce(t, "in", kafkatest.Messages("a", 50)...)
	j := newJournal()
	g, err := NewGroup(groupConfig(c, "g", "in", "out", j, 0), GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runGroup(t, g)
	waitFor(t, "commit 50", func() bool { return committed(t, c, "g", "in", 0).Offset == 50 })
	stop()
	first := committed(t, c, "g", "in", 0)
	c.Produce(t, "in", kafkatest.Messages("b", 10)...)
	j2 := newJournal()
	g2, err := NewGroup(groupConfig(c, "g", "in", "out", j2, 0), GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runGroup(t, g2)
	waitFor(t, "commit 60", func() bool { return committed(t, c, "g", "in", 0).Offset == 60 })
	j2.mu.Lock()
	defer j2.mu.Unlock()
	if got := j2.opened[0]; len(got) != 1 || got[0] != first {
		t.Errorf("opened with %v, want [%+v]", got, first)
	}
	if !slices.Equal(j2.handled[0], seq(50, 60)) {
		t.Errorf("second run handed over %v, want 50..59", j2.handled[0])
	}
}

// TestGroupRebalance: a second member joining takes half the partitions;
// the first closes them with a final commit, the second opens them at that
// commit, and every record is handled by exactly one life (none twice, none
// missing).
func TestGroupRebalance(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "in", 4)
	c.CreateTopic(t, "out", 1)
	c.Produce(t, "in", kafkatest.Messages("a", 400)...)
	j := newJournal()
	g1, err := NewGroup(groupConfig(c, "g", "in", "out", j, 0), GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runGroup(t, g1)
	handled := func() int {
		j.mu.Lock()
		defer j.mu.Unlock()
		n := 0
		for _, h := range j.handled {
			n += len(h)
		}
		return n
	}
	waitFor(t, "first batch handled", func() bool { return handled() == 400 })
	for p := range 4 {
		waitFor(t, "commits", func() bool { return committed(t, c, "g", "in", p).Offset >= 0 })
	}
	g2, err := NewGroup(groupConfig(c, "g", "in", "out", j, 0), GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runGroup(t, g2)
	waitFor(t, "two members with two partitions each", func() bool {
		return g1.Healthy() && g2.Healthy() &&
			testutil.ToFloat64(g1.m.assigned.WithLabelValues("test")) == 2 && testutil.ToFloat64(g2.m.assigned.WithLabelValues("test")) == 2
	})
	c.Produce(t, "in", kafkatest.Messages("b", 400)...)
	waitFor(t, "second batch handled", func() bool { return handled() >= 800 })
	time.Sleep(200 * time.Millisecond)
	j.mu.Lock()
	defer j.mu.Unlock()
	total := 0
	for p, h := range j.handled {
		sorted := slices.Clone(h)
		slices.Sort(sorted)
		if d := slices.Compact(slices.Clone(sorted)); len(d) != len(sorted) {
			t.Errorf("partition %d: %d records handled twice", p, len(sorted)-len(d))
		}
		total += len(h)
	}
	if total != 800 {
		t.Errorf("handled %d records, want 800", total)
	}
	if j.wrongGo != 0 {
		t.Errorf("%d calls off the partition goroutine", j.wrongGo)
	}
}

func testutilValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// failOnce is an echo whose first life fails at offset failAt: the runtime
// restarts the partition from its commit with a fresh processor.
type failOnce struct {
	echo
	failAt int64
	failed *bool
}

func (f *failOnce) Handle(ctx context.Context, recs []Record) (int, error) {
	for i, r := range recs {
		if r.Offset == f.failAt && !*f.failed {
			*f.failed = true
			n, err := f.echo.Handle(ctx, recs[:i])
			if err != nil {
				return n, err
			}
			return i, errors.New("boom")
		}
	}
	return f.echo.Handle(ctx, recs)
}

// TestGroupRestartsAFailedPartition: a processor error stops only its
// partition; it is closed, committed as far as is safe, and reopened from
// that commit (counted in partition_restarts_total) while the group stays a
// member; nothing is lost.
func TestGroupRestartsAFailedPartition(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "in", 1)
	c.CreateTopic(t, "out", 1)
	c.Produce(t, "in", kafkatest.Messages("v", 100)...)
	j := newJournal()
	failed := false
	gc := groupConfig(c, "g", "in", "out", j, 0)
	gc.NewProcessor = func(a Assignment) (Processor, error) {
		return &failOnce{echo: echo{a: a, out: "out", log: j, unacked: map[int64]bool{}}, failAt: 60, failed: &failed}, nil
	}
	g, err := NewGroup(gc, GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runGroup(t, g)
	waitFor(t, "commit 100", func() bool { return committed(t, c, "g", "in", 0).Offset == 100 })
	if got := testutil.ToFloat64(g.m.restarts.WithLabelValues("test")); got != 1 {
		t.Errorf("partition_restarts_total = %v, want 1", got)
	}
	if !g.Healthy() {
		t.Error("not a member after a partition restart")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.opened[0]) != 2 || j.opened[0][1].Offset != 60 {
		t.Errorf("opened with %v, want a second life at the commit 60", j.opened[0])
	}
	if !slices.Equal(j.handled[0], seq(0, 100)) {
		t.Errorf("handed over %v", j.handled[0])
	}
}
