package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

func TestGenToFile(t *testing.T) {
	dir := t.TempDir()
	out, truthFile := filepath.Join(dir, "spans.bin"), filepath.Join(dir, "truth.json")
	var stdout, stderr bytes.Buffer
	err := runGen(context.Background(), []string{"--traces", "25", "--seed", "4", "--encoding", "otlp-json", "--batch", "5",
		"--slow", "inventory:Reserve:10", "--start", "2026-03-10T00:00:00Z", "--out", out, "--truth", truthFile}, &stdout, &stderr)
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
	if truth.Traces != 25 || len(truth.Slow) != 1 || truth.Slow[0].Factor != 10 {
		t.Fatalf("truth = %+v", truth)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msgs, err := tracegen.ReadFile(f, wire.OTLPJSON)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range msgs {
		spans, err := wire.Decode(wire.Auto, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		n += len(spans)
	}
	if n != truth.Spans || !strings.Contains(stdout.String(), "wrote 25 traces") {
		t.Fatalf("%d spans in file, truth %d; stdout %q", n, truth.Spans, stdout.String())
	}
	// Deterministic: the same seed and start write the same bytes.
	out2 := filepath.Join(dir, "again.bin")
	if err := runGen(context.Background(), []string{"--traces", "25", "--seed", "4", "--encoding", "otlp-json", "--batch", "5",
		"--slow", "inventory:Reserve:10", "--start", "2026-03-10T00:00:00Z", "--out", out2}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	c, _ := os.ReadFile(out2)
	if !bytes.Equal(a, c) {
		t.Fatal("same seed, different output")
	}
}

func TestGenUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--encoding", "zipkin"},
		{"--encoding", "auto"},
		{"--slow", "checkout"},
		{"--slow", "a:b:-1"},
		{"--traces", "0"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		err := runGen(context.Background(), args, &stdout, &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

// TestGenDefaultStartIsRecent: without --start the traces end now, so a
// running pipeline aggregates them (before: 2026-01-01, dropped as too
// late); an old --start gets a note.
func TestGenDefaultStartIsRecent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "spans.json")
	var stdout, stderr bytes.Buffer
	before := time.Now()
	if err := runGen(context.Background(), []string{"--traces", "10", "--interval", "1s", "--encoding", "jaeger-json", "--out", out}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	traces, err := readTraceFile(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range traces {
		for _, sp := range tr.Spans {
			if st := sp.Start.Time(); st.Before(before.Add(-11*time.Second)) || st.After(time.Now().Add(time.Minute)) {
				t.Fatalf("span starts at %v, want within the last ~10s", st)
			}
		}
	}
	if strings.Contains(stderr.String(), "note:") {
		t.Errorf("note without --start: %s", stderr.String())
	}
	stderr.Reset()
	if err := runGen(context.Background(), []string{"--traces", "1", "--start", "2020-01-01T00:00:00Z", "--out", out}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "--max-lateness") {
		t.Errorf("no note for an old --start: %q", stderr.String())
	}
}
