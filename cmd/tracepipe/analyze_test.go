package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/report"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden outputs under testdata/analyze")

// TestAnalyzeGolden runs `tracepipe analyze` on every testdata/analyze/*.json
// input and compares the text and JSON outputs with their golden files.
func TestAnalyzeGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/analyze/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.json") {
			continue
		}
		for _, format := range []string{"text", "json"} {
			name := strings.TrimSuffix(filepath.Base(in), ".json") + "/" + format
			t.Run(name, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), []string{"analyze", "--format", format, in}, nil, &stdout, &stderr)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr.String())
				}
				ext := ".golden.txt"
				if format == "json" {
					ext = ".golden.json"
				}
				golden := strings.TrimSuffix(in, ".json") + ext
				if *updateGolden {
					if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./cmd/tracepipe -run TestAnalyzeGolden -update)", err)
				}
				if !bytes.Equal(stdout.Bytes(), want) {
					t.Errorf("output differs from %s (run with -update after checking the change):\n%s", golden, stdout.String())
				}
			})
		}
	}
}

// TestAnalyzeJSONContract checks the invariants docs/analyze-json.md promises.
func TestAnalyzeJSONContract(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"analyze", "--format", "json", "testdata/analyze/hotrod.json"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var doc report.Document
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Traces) != 2 {
		t.Fatalf("got %d traces, want 2", len(doc.Traces))
	}
	for _, tr := range doc.Traces {
		var sum int64
		prevEnd := tr.StartUs
		for _, s := range tr.CriticalPath {
			if s.StartUs != prevEnd {
				t.Errorf("trace %s: critical path not contiguous at %s", tr.TraceID, s.SpanID)
			}
			prevEnd = s.EndUs
			sum += s.EndUs - s.StartUs
		}
		if sum != tr.DurationUs {
			t.Errorf("trace %s: critical path sums to %d µs, want %d", tr.TraceID, sum, tr.DurationUs)
		}
		var spanSum int64
		for _, s := range tr.Spans {
			spanSum += s.CriticalPathUs
			if s.SelfUs < 0 || s.SelfUs > s.DurationUs {
				t.Errorf("span %s: self %d outside [0, %d]", s.SpanID, s.SelfUs, s.DurationUs)
			}
		}
		if spanSum != tr.DurationUs {
			t.Errorf("trace %s: per-span critical-path times sum to %d, want %d", tr.TraceID, spanSum, tr.DurationUs)
		}
		if tr.Warnings == nil || tr.Operations == nil {
			t.Errorf("trace %s: arrays must never be null", tr.TraceID)
		}
	}
	if got := doc.Traces[0].Operations[0]; got.Service != "mysql" || got.Operation != "SQL SELECT" {
		t.Errorf("bottleneck = %s %s, want mysql SQL SELECT", got.Service, got.Operation)
	}
	if len(doc.Traces[1].Warnings) != 3 {
		t.Errorf("damaged trace: got warnings %q, want duplicate, orphan and skew", doc.Traces[1].Warnings)
	}
}

func TestAnalyzeErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"data":[{"traceID":"zz","spans":[`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no files", []string{"analyze"}, 2, "no input files"},
		{"bad format", []string{"analyze", "--format", "xml", bad}, 2, "--format must be text or json"},
		{"missing file", []string{"analyze", filepath.Join(dir, "nope.json")}, 1, "no such file"},
		{"malformed", []string{"analyze", bad}, 1, "read " + bad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, nil, &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d containing %q", code, stderr.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}

func TestAnalyzeStdin(t *testing.T) {
	in, err := os.ReadFile("testdata/analyze/hotrod.json")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"analyze", "-"}, bytes.NewReader(in), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "bottleneck: mysql SQL SELECT") {
		t.Errorf("stdin analysis lacks the bottleneck:\n%s", stdout.String())
	}
}
