package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// TestGenClockSkew: `tracepipe gen --clock-skew` writes skewed spans and a
// truth with the hosts' offsets and every trace's true-time analysis; the
// repaired analysis of the written spans matches the truth far more often
// than the unrepaired one.
func TestGenClockSkew(t *testing.T) {
	dir := t.TempDir()
	out, truthFile := filepath.Join(dir, "spans.json"), filepath.Join(dir, "truth.json")
	var stdout, stderr bytes.Buffer
	err := runGen(context.Background(), []string{"--traces", "200", "--seed", "6", "--encoding", "jaeger-json",
		"--clock-skew", "2ms", "--asymmetric-latency", "--uninstrumented-clients", "0.1",
		"--start", "2026-03-10T00:00:00Z", "--out", out, "--truth", truthFile}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var truth tracegen.Truth
	b, err := os.ReadFile(truthFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &truth); err != nil {
		t.Fatal(err)
	}
	if len(truth.Analyses) != 200 || len(truth.ClockOffsets) == 0 {
		t.Fatalf("truth: %d analyses, %d clock offsets", len(truth.Analyses), len(truth.ClockOffsets))
	}
	skewed := 0
	for _, o := range truth.ClockOffsets {
		if d := time.Duration(o.OffsetNanos); d < -2*time.Millisecond || d > 2*time.Millisecond {
			t.Errorf("host %s offset %v beyond ±2ms", o.Host, d)
		} else if d != 0 {
			skewed++
		}
	}
	if skewed == 0 {
		t.Error("no host has a clock offset")
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msgs, err := tracegen.ReadFile(f, wire.JaegerJSON)
	if err != nil {
		t.Fatal(err)
	}
	traces := map[string]*model.Trace{}
	for _, m := range msgs {
		spans, err := wire.Decode(wire.JaegerJSON, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range spans {
			id := s.TraceID.String()
			if traces[id] == nil {
				traces[id] = &model.Trace{TraceID: s.TraceID}
			}
			traces[id].Spans = append(traces[id].Spans, s)
		}
	}
	exact := func(opts dag.Options) int {
		n := 0
		for _, want := range truth.Analyses {
			tr := traces[want.TraceID]
			cp := &model.Trace{TraceID: tr.TraceID}
			for _, s := range tr.Spans {
				c := *s
				cp.Spans = append(cp.Spans, &c)
			}
			a := dag.Analyze(cp, opts)
			same := len(a.CriticalPath) == len(want.CriticalPath)
			for i := 0; same && i < len(a.CriticalPath); i++ {
				same = a.CriticalPath[i].SpanID.String() == want.CriticalPath[i]
			}
			if same {
				n++
			}
		}
		return n
	}
	repaired, raw := exact(dag.Options{}), exact(dag.Options{MaxClockSkewAdjust: -1})
	if repaired < 160 || raw > 20 {
		t.Errorf("critical path exactly right in %d of 200 traces repaired, %d unrepaired", repaired, raw)
	}

	err = runGen(context.Background(), []string{"--clock-skew", "-1ms", "--out", filepath.Join(dir, "x")}, &stdout, &stderr)
	if !errors.Is(err, errUsage) {
		t.Errorf("negative --clock-skew: %v", err)
	}
}
