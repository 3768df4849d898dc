package ingest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// fakeOut records what a worker produces; the test acknowledges it.
type fakeOut struct{ msgs []kafka.OutMessage }

func (f *fakeOut) Produce(_ context.Context, msgs ...kafka.OutMessage) error {
	f.msgs = append(f.msgs, msgs...)
	return nil
}

// portionWorker is a worker of partition 0 of an ingester that never runs
// (no broker is contacted), producing to a fakeOut, after Handle took recs.
func portionWorker(t *testing.T, maxOut int64, clock *fixedClock, recs []kafka.Record) (*worker, *fakeOut) {
	t.Helper()
	cfg := testConfig([]string{"127.0.0.1:1"})
	cfg.MaxOutputBytesInFlight = maxOut
	in, err := New(cfg, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	p, err := in.newAssembler(kafka.Assignment{Partition: 0})
	if err != nil {
		t.Fatal(err)
	}
	w := p.(*worker)
	out := &fakeOut{}
	w.out = out
	ctx := context.Background()
	if from, err := w.Open(ctx, kafka.Commit{Offset: -1}); err != nil || from != kafka.FirstOffset {
		t.Fatalf("open: %d, %v", from, err)
	}
	if n, err := w.Handle(ctx, recs); n != len(recs) || err != nil {
		t.Fatalf("handle took %d of %d: %v", n, len(recs), err)
	}
	return w, out
}

// TestOutputBudgetEmitsDueTracesInPortions: a burst of due traces whose
// encoded output exceeds --max-output-bytes-in-flight is emitted over
// several Ticks and acknowledgements — all of them, once each, in the order
// of an unbounded emission — with the bound kept (exceeded by at most one
// trace), at least one trace in flight whatever the bound (no stall), and
// no offset committed before every trace below it is acknowledged.
func TestOutputBudgetEmitsDueTracesInPortions(t *testing.T) {
	wl := tracegen.Generate(tracegen.Config{Seed: 16, Traces: 60, Interleave: 20})
	enc, _ := tracegen.EncoderFor(wire.JaegerProto)
	msgs, err := tracegen.Messages(wl.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]kafka.Record, len(msgs))
	first := map[string]int64{} // trace ID (hex, the output key) -> its first offset
	for i, m := range msgs {
		recs[i] = kafka.Record{Topic: "spans", Offset: int64(i), Key: m.Key, Value: m.Value, HighWaterMark: int64(len(msgs))}
		id, _, err := wire.ReadJaegerProtoIDs(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if k := string(id.AppendHex(nil)); !hasKey(first, k) {
			first[k] = int64(i)
		}
	}
	start := time.Unix(1_800_000_000, 0)

	// The reference: no bound worth the name, everything in one Tick.
	clock := &fixedClock{t: start}
	ref, refOut := portionWorker(t, 1<<40, clock, recs)
	clock.t = clock.t.Add(time.Second)
	if err := ref.Tick(context.Background(), clock.t); err != nil {
		t.Fatal(err)
	}
	var want []string
	var total, largest int64
	for _, m := range refOut.msgs {
		want = append(want, string(m.Key))
		total += int64(len(m.Value))
		largest = max(largest, int64(cap(m.Value))) // the budget counts the buffer
	}
	if len(want) != len(first) {
		t.Fatalf("reference emitted %d traces, want %d", len(want), len(first))
	}

	for _, tc := range []struct {
		name   string
		maxOut int64
	}{
		{"one byte: one trace at a time", 1},
		{"about four traces", 4 * total / int64(len(want))},
		{"a third of the burst", total / 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fixedClock{t: start}
			w, out := portionWorker(t, tc.maxOut, clock, recs)
			acked := map[string]bool{}
			check := func(when string) {
				t.Helper()
				if b := w.in.output.bytes.Load(); b > tc.maxOut+largest || b != w.outBytes {
					t.Fatalf("%s: output in flight %d (partition %d), bound %d + one trace %d", when, b, w.outBytes, tc.maxOut, largest)
				}
				if got := value(w.in.metrics.OutputInFlightBytes); got != float64(w.outBytes) {
					t.Fatalf("%s: output_inflight_bytes %v, want %d", when, got, w.outBytes)
				}
				c, ok := w.Safe()
				if !ok {
					return
				}
				for k, off := range first {
					if !acked[k] && c.Offset > off {
						t.Fatalf("%s: commit %d past offset %d of trace %s, not acknowledged", when, c.Offset, off, k)
					}
				}
			}
			check("before")
			clock.t = clock.t.Add(time.Second)
			if err := w.Tick(context.Background(), clock.t); err != nil {
				t.Fatal(err)
			}
			if n := len(out.msgs); n == 0 || n == len(want) {
				t.Fatalf("first Tick emitted %d of %d traces: want a portion", n, len(want))
			}
			if value(w.in.metrics.EmitWaiting) != 1 {
				t.Fatal("emit_waiting_partitions is not 1 with due traces waiting")
			}
			check("after the first Tick")
			next, rounds := 0, 0
			for next < len(out.msgs) {
				// Acknowledge what is in flight in two halves, with a Tick
				// between them every other round.
				end := len(out.msgs)
				for _, half := range []int{next + (end-next+1)/2, end} {
					for ; next < half; next++ {
						// Intact until acknowledged (buffers are reused after).
						if !bytes.Equal(out.msgs[next].Value, refOut.msgs[next].Value) {
							t.Fatalf("output %d changed before its acknowledgement", next)
						}
						acked[string(out.msgs[next].Key)] = true
						if err := w.Acked(kafka.Ack{Token: out.msgs[next].Token}); err != nil {
							t.Fatal(err)
						}
						check(fmt.Sprintf("ack %d", next))
					}
					if rounds++; rounds%2 == 0 {
						if err := w.Tick(context.Background(), clock.t); err != nil {
							t.Fatal(err)
						}
						check("tick")
					}
				}
				if rounds > 4*len(want) {
					t.Fatalf("no end after %d rounds", rounds)
				}
			}
			var got []string
			for _, m := range out.msgs {
				got = append(got, string(m.Key))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("emitted %d traces in the order %q,\nwant %d in %q", len(got), got, len(want), want)
			}
			if tc.maxOut < total && rounds < 2 {
				t.Errorf("emitted in %d rounds; want several", rounds)
			}
			if w.outBytes != 0 || value(w.in.metrics.EmitWaiting) != 0 {
				t.Errorf("after the last ack: %d bytes in flight, emit_waiting_partitions %v", w.outBytes, value(w.in.metrics.EmitWaiting))
			}
			if c, ok := w.Safe(); !ok || c.Offset != int64(len(recs)) {
				t.Errorf("final commit %v %v, want offset %d", c, ok, len(recs))
			}
			w.Release()
			if b := w.in.output.bytes.Load(); b != 0 {
				t.Errorf("output budget after release: %d", b)
			}
		})
	}
}

func hasKey(m map[string]int64, k string) bool { _, ok := m[k]; return ok }

// TestOutputBudgetReleasedWithoutAcks: Close leaves due traces waiting for
// output room to the next owner (nothing emitted after it, not even on an
// acknowledgement), and Release returns the partition's share of the
// instance's output budget also for output never acknowledged (close
// timeout).
func TestOutputBudgetReleasedWithoutAcks(t *testing.T) {
	wl := tracegen.Generate(tracegen.Config{Seed: 3, Traces: 10})
	enc, _ := tracegen.EncoderFor(wire.JaegerProto)
	msgs, err := tracegen.Messages(wl.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]kafka.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = kafka.Record{Offset: int64(i), Value: m.Value}
	}
	clock := &fixedClock{t: time.Unix(1_800_000_000, 0)}
	w, out := portionWorker(t, 1, clock, recs)
	clock.t = clock.t.Add(time.Second)
	if err := w.Tick(context.Background(), clock.t); err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 1 || !w.waiting.on {
		t.Fatalf("emitted %d, waiting %v: want one trace and the rest waiting", len(out.msgs), w.waiting.on)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if value(w.in.metrics.EmitWaiting) != 0 {
		t.Error("emit_waiting_partitions not 0 after Close")
	}
	// The runtime still delivers the acknowledgement of what was in
	// flight; nothing more is emitted.
	if err := w.Acked(kafka.Ack{Token: out.msgs[0].Token}); err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 1 {
		t.Fatalf("%d traces emitted after Close", len(out.msgs)-1)
	}
	if err := w.Tick(context.Background(), clock.t); err != nil {
		t.Fatal(err)
	}
	if c, ok := w.Safe(); ok && c.Offset > 0 {
		// The traces left start at offset 0 or just after.
		t.Errorf("commit %d with the traces left unemitted", c.Offset)
	}
	w.Release()
	if b := w.in.output.bytes.Load(); b != 0 || value(w.in.metrics.OutputInFlightBytes) != 0 {
		t.Errorf("output budget after release: %d", b)
	}
}
