package dag

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/model"
)

var update = flag.Bool("update", false, "rewrite the golden analyses in testdata/golden")

// goldenInputs are the generators of the committed input traces; with -update
// the inputs are rewritten too (they are deterministic).
var goldenInputs = map[string]func() *model.Trace{
	"realistic-30-skewed": func() *model.Trace {
		return realisticTrace(rand.New(rand.NewPCG(30, 30)), 30, true)
	},
	"broken": func() *model.Trace {
		return buildTrace(
			sp{id: 2, parent: 99, start: 60, dur: 40, svc: "b", host: "h1"},
			sp{id: 1, parent: 99, start: 0, dur: 50, svc: "a", host: "h2"},
			sp{id: 3, parent: 1, start: -10, dur: 10, svc: "c", host: "h3"},
			sp{id: 3, parent: 1, start: -10, dur: 10, svc: "c", host: "h3"},
			sp{id: 4, parent: 5, start: 10, dur: 10, svc: "d"},
			sp{id: 5, parent: 4, start: 12, dur: 5, svc: "d"},
			sp{id: 6, parent: 1, ref: model.FollowsFrom, start: 40, dur: 100, svc: "e", host: "h4"},
			sp{id: 7, parent: 1, start: 30, rawDur: &negDur, svc: "a"},
			sp{id: 8, parent: 1, start: 30, dur: 5, trace: &otherTrace},
		)
	},
}

// TestGolden analyses each testdata/golden/NAME.trace.json and compares the
// analysis with NAME.analysis.json. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, mk := range goldenInputs {
			writeJSON(t, filepath.Join(dir, name+".trace.json"), mk())
		}
	}
	inputs, err := filepath.Glob(filepath.Join(dir, "*.trace.json"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs in %s (run with -update): %v", dir, err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".trace.json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var tr model.Trace
			if err := json.Unmarshal(raw, &tr); err != nil {
				t.Fatalf("decode %s: %v", in, err)
			}
			an := Analyze(&tr, Options{})
			checkInvariants(t, &tr, an, Options{})
			out := filepath.Join(dir, name+".analysis.json")
			if *update {
				writeJSON(t, out, an)
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got := encodeJSON(t, an); !bytes.Equal(got, want) {
				t.Errorf("analysis of %s differs from %s (run with -update and review the diff):\n%s", in, out, got)
			}
		})
	}
}

func encodeJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := os.WriteFile(path, encodeJSON(t, v), 0o644); err != nil {
		t.Fatal(err)
	}
}
