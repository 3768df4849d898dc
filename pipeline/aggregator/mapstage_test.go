package aggregator

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

// TestMapCheckpointWaitsForItsFlush: a checkpoint taken after flush n is
// offered for commit only once no partial of flush n or an earlier one
// is unacknowledged (acknowledgements of later flushes do not count), and
// a failed acknowledgement stops the partition.
func TestMapCheckpointWaitsForItsFlush(t *testing.T) {
	a, err := New(testConfig([]string{"127.0.0.1:1"}, "t"), nopStore{}, Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	w := &mapProc{a: a, unacked: map[uint64]int{2: 1, 3: 2, 5: 1}}
	for _, tc := range []struct {
		ack  uint64 // 0: none
		seq  uint64
		want bool
	}{
		{0, 1, true},
		{0, 2, false},
		{2, 2, true},
		{0, 3, false}, // flush 3 has two
		{5, 4, false}, // a later flush's ack does not help flush 3
		{3, 4, false},
		{3, 4, true},
		{0, 9, true},
	} {
		if tc.ack != 0 {
			if err := w.Acked(tpkafka.Ack{Token: tc.ack}); err != nil {
				t.Fatal(err)
			}
		}
		if got := w.acked(tc.seq); got != tc.want {
			t.Errorf("after ack of flush %d: acked(%d) = %v, want %v (unacked %v)", tc.ack, tc.seq, got, tc.want, w.unacked)
		}
	}
	if err := w.Acked(tpkafka.Ack{Token: uint64(7), Err: errors.New("broker gone")}); err == nil || !w.broken {
		t.Errorf("a failed acknowledgement: err %v, broken %v; want an error and a broken partition", err, w.broken)
	}
}
