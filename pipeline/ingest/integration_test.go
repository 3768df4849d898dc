package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

func startIngester(t *testing.T, bin, name string, args []string) *testenv.Process {
	t.Helper()
	return testenv.StartProcess(t, name, bin, []string{"TRACEPIPE_METRICS_ADDR=127.0.0.1:0"}, args...)
}

// identity is a trace version's content without the per-emission fields.
func identity(tr *model.AssembledTrace) []byte {
	c := *tr
	c.Completion, c.FirstSeen, c.EmittedAt, c.DroppedSpans = 0, time.Time{}, time.Time{}, 0
	return assembledpb.Encode(nil, &c)
}

// TestIngestersCrashAndScale runs two ingester processes on real Kafka over
// an 8-partition topic while a generated workload streams in: the second
// joins later, the first is killed with SIGKILL mid-stream and restarted.
// Every trace must appear complete, no span may be lost, and every
// duplicate of a (trace, version) must be an identical re-emission.
func TestIngestersCrashAndScale(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	const partitions = 8
	spans, traces, dlq, group := testenv.Name(t, "spans"), testenv.Name(t, "traces"), testenv.Name(t, "dlq"), testenv.Name(t, "group")
	kafkatest.CreateTopic(t, brokers, spans, partitions)
	kafkatest.CreateTopic(t, brokers, traces, partitions)
	kafkatest.CreateTopic(t, brokers, dlq, 1)
	bin := filepath.Join(testenv.Build(t, "github.com/tracepipe/tracepipe/cmd/ingester"), "ingester")

	w := tracegen.Generate(tracegen.Config{Seed: 77, Traces: 3000, Interleave: 40})
	truth := w.Truth()
	enc, _ := tracegen.EncoderFor(wire.JaegerProto)
	msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("workload: %d traces, %d spans", truth.Traces, truth.Spans)

	// A late horizon well above the test's scheduling hiccups (the machine
	// may be loaded): spans never arrive after their trace was evicted.
	args := []string{
		"--kafka-brokers", brokers[0], "--spans-topic", spans, "--traces-topic", traces, "--dlq-topic", dlq,
		"--group", group, "--encoding", "jaeger-proto", "--idle-timeout", "300ms", "--max-wait", "5s",
		"--late-horizon", "8s", "--commit-interval", "200ms", "--session-timeout", "6s", "--shutdown-grace", "5s",
	}
	a := startIngester(t, bin, "a", args)

	// Stream the workload over ~12 s.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pubDone := make(chan error, 1)
	go func() {
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		kw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: spans, Balancer: &kafka.Hash{}, Transport: tr,
			RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond, BatchSize: 500}
		defer kw.Close()
		pubDone <- tracegen.Publish(ctx, kafkatest.Sender(kw), msgs, float64(len(msgs))/12, 250)
	}()

	time.Sleep(3 * time.Second)
	b := startIngester(t, bin, "b", args) // added later
	time.Sleep(3 * time.Second)
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if a.Wait(15*time.Second) == testenv.ErrStillRunning {
		t.Fatal("a still runs 15s after SIGKILL")
	}
	t.Log("killed a with SIGKILL")
	time.Sleep(time.Second)
	a2 := startIngester(t, bin, "a2", args)
	if err := <-pubDone; err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Log("workload published")

	// Read the output until every trace is complete.
	var mu sync.Mutex
	seen := map[string][]byte{} // trace/version -> identity
	best := map[string]int{}
	outputs, dups := 0, 0
	var problems []string
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id, n := range truth.TraceSpans {
			if best[id] < n {
				return false
			}
		}
		return true
	}
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for p := 0; p < partitions; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: traces, Partition: p, MaxWait: 100 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(rctx)
				if err != nil {
					return
				}
				tr, err := assembledpb.Decode(m.Value)
				mu.Lock()
				outputs++
				if err != nil {
					problems = append(problems, fmt.Sprintf("undecodable output: %v", err))
					mu.Unlock()
					continue
				}
				id := tr.Trace.TraceID.String()
				want, ok := truth.TraceSpans[id]
				if !ok || int(tr.Version) > want || len(tr.Trace.Spans) != int(tr.Version) {
					problems = append(problems, fmt.Sprintf("trace %s version %d with %d spans (truth %d)", id, tr.Version, len(tr.Trace.Spans), want))
				}
				k := fmt.Sprintf("%s/%d", id, tr.Version)
				ident := identity(tr)
				if prev, ok := seen[k]; ok {
					dups++
					if !bytes.Equal(prev, ident) {
						problems = append(problems, fmt.Sprintf("%s re-emitted with different content", k))
					}
				} else {
					seen[k] = ident
				}
				best[id] = max(best[id], int(tr.Version))
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(90 * time.Second)
	for !complete() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	// Once the late horizon has passed, every partition is committed to its end.
	ends := partitionEnds(t, brokers, spans, partitions)
	cdeadline := time.Now().Add(30 * time.Second)
	for {
		c := kafkatest.Committed(t, brokers, group, spans, partitions)
		behind := 0
		for p, end := range ends {
			if c[p] != end {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(cdeadline) {
			t.Errorf("committed %v, partition ends %v", c, ends)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range []*testenv.Process{a2, b} {
		logMetrics(t, p)
	}
	// Clean shutdown of both: SIGTERM, exit status 0.
	for _, p := range []*testenv.Process{a2, b} {
		p.Signal(syscall.SIGTERM)
	}
	for _, p := range []*testenv.Process{a2, b} {
		switch err := p.Wait(30 * time.Second); {
		case err == testenv.ErrStillRunning:
			t.Errorf("%s did not stop within 30s of SIGTERM", p.Name)
		case err != nil:
			t.Errorf("%s exited with %v after SIGTERM", p.Name, err)
		}
	}
	time.Sleep(time.Second) // let the readers see the last outputs
	rcancel()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for id, n := range truth.TraceSpans {
		if best[id] != n {
			missing++
			if missing <= 5 {
				t.Errorf("trace %s: best version has %d of %d spans", id, best[id], n)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d traces incomplete", missing, truth.Traces)
	}
	for i, p := range problems {
		if i == 10 {
			t.Errorf("... %d problems in all", len(problems))
			break
		}
		t.Error(p)
	}
	t.Logf("%d outputs, %d distinct trace versions, %d identical re-emissions", outputs, len(seen), dups)
}

// logMetrics logs the ingester's counters of interest from its /metrics.
func logMetrics(t *testing.T, p *testenv.Process) {
	b := []byte(p.Output())
	i := bytes.Index(b, []byte("msg=metrics addr="))
	if i < 0 {
		return
	}
	addr := string(bytes.Fields(b[i+len("msg=metrics addr="):])[0])
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Logf("%s metrics: %v", p.Name, err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range bytes.Split(body, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("tracepipe_ingester_")) && !bytes.Contains(line, []byte("_bucket")) && !bytes.HasSuffix(line, []byte(" 0")) {
			t.Logf("%s: %s", p.Name, line)
		}
	}
}

func partitionEnds(t testing.TB, brokers []string, topic string, partitions int) map[int]int64 {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	var reqs []kafka.OffsetRequest
	for p := 0; p < partitions; p++ {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	resp, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		ends[p.Partition] = p.LastOffset
	}
	return ends
}
