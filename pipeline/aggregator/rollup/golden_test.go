package rollup

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden pins the rollups of a small fixed workload, as the stage
// writes them (model.Rollup and model.EdgeRollup, JSON), and checks them
// against the brute-force oracle. Run with -update after an intended change.
func TestGolden(t *testing.T) {
	o := defaultWorkload(12)
	o.span = 5 * time.Minute
	w := genWorkload(5, o)
	cfg := Config{Coarse: []time.Duration{5 * time.Minute}, Dimensions: []string{"shard"}, DimensionLimit: 2, Exemplars: 2}
	s := newSim(t, cfg, w.logs(2, 1), simOpts{seed: 5, sources: 2, reducers: 1, batch: 10, flushRate: 0.5, checkpointRate: 0.5})
	s.run()
	compare(t, "golden workload", oracle(cfg, allMessagesOf(w)), s.store)

	type doc struct {
		ID   string
		Kind string
		Doc  any
	}
	var docs []doc
	for _, o := range s.store.m {
		if o.Stats.IsZero() {
			continue
		}
		// Versions say when the simulation last wrote a rollup, not what
		// it holds: left out.
		if o.Key.Edge {
			e := o.EdgeRollup()
			e.Version = 0
			docs = append(docs, doc{e.ID(), "edge", e})
		} else {
			r := o.Rollup(cfg.Dimensions)
			r.Version = 0
			docs = append(docs, doc{r.ID(), "rollup", r})
		}
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].ID < docs[j].ID })
	// One document per line, so that a diff shows which rollup changed.
	var got []byte
	for _, d := range docs {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		got = append(append(got, b...), '\n')
	}
	path := filepath.Join("testdata", "golden", "rollups.json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("rollups differ from %s (run with -update after an intended change); got %d bytes, want %d", path, len(got), len(want))
	}
}
