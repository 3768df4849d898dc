package rollup

import (
	"bytes"
	"testing"

	"github.com/tracepipe/tracepipe/model"
)

// seedPartials returns wire forms of real partials for the fuzz corpora.
func seedPartials(t testing.TB) [][]byte {
	w := genWorkload(7, defaultWorkload(20))
	cfg := simConfig()
	p, err := NewPartition(cfg, 3, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range w.msgs {
		if rw, err := p.Add(Message{Offset: int64(i), Time: m.arrival, Trace: m.at}); err != nil || rw != nil {
			t.Fatalf("add: %v %v", rw, err)
		}
	}
	var out [][]byte
	for i, pt := range p.Collect(FlushPolicy{All: true}) {
		if i%7 == 0 {
			out = append(out, pt.AppendBinary(nil, cfg.Dimensions))
		}
	}
	return out
}

func FuzzDecodePartial(f *testing.F) {
	for _, b := range seedPartials(f) {
		f.Add(b)
	}
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, names, err := DecodePartial(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to a form that decodes to the same thing
		// (varints may be non-minimal in the input).
		again := pt.AppendBinary(nil, names)
		pt2, names2, err := DecodePartial(again)
		if err != nil {
			t.Fatalf("re-encoded partial does not decode: %v", err)
		}
		if third := pt2.AppendBinary(nil, names2); !bytes.Equal(again, third) {
			t.Fatalf("re-encoding is not stable:\n%x\n%x", again, third)
		}
		if !pt.Stats.Duration.Sketch.Valid() || pt.Stats.Duration.Sketch.Count() != pt.Stats.Count {
			t.Fatal("inconsistent sketch accepted")
		}
		o := Output{Resolution: 60e9, Window: pt.Window, Key: pt.Key, Stats: pt.Stats}
		if pt.Key.Edge {
			e := o.EdgeRollup()
			if _, err := OutputFromEdge(&e); err != nil {
				t.Fatalf("edge rollup does not read back: %v", err)
			}
		} else {
			r := o.Rollup(names)
			if _, err := OutputFromRollup(names, &r); err != nil {
				t.Fatalf("rollup does not read back: %v", err)
			}
		}
	})
}

func FuzzDecodeCheckpoint(f *testing.F) {
	c := checkpoint{fingerprint: 9, hw: 100, maxEvent: 5e18, hor: 4e18, idxHor: 3e18,
		hist: history{{10, 1e18}, {50, 2e18}}}
	f.Add(c.encode())
	f.Add([]byte("AQ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ck, err := decodeCheckpoint(b)
		if err != nil {
			return
		}
		if _, err := decodeCheckpoint(ck.encode()); err != nil {
			t.Fatalf("re-encoded checkpoint does not decode: %v", err)
		}
		cfg := Config{}.Normalized()
		ck.fingerprint = cfg.fingerprint()
		if _, err := NewPartition(cfg, 0, min(ck.hw, 0), ck.encode()); err != nil && ck.hw >= 0 {
			t.Fatalf("valid checkpoint refused: %v", err)
		}
	})
}

func FuzzSketchFromProto(f *testing.F) {
	var s Sketch
	for _, v := range []int64{0, 1, 1e3, 1e6, 1e9} {
		s.Add(v)
	}
	f.Add(s.ProtoBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, err := SketchFromProto(b)
		if err != nil {
			return
		}
		if !sk.Valid() {
			t.Fatal("invalid sketch accepted")
		}
		_ = sk.Quantile(0.5)
		back, err := SketchFromProto(sk.ProtoBytes())
		if err != nil || !back.Equal(&sk) {
			t.Fatalf("proto round trip: %v", err)
		}
	})
}

var _ = model.Timestamp(0)
