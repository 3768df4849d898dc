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

	"github.com/tracepipe/tracepipe/gen"
	"github.com/tracepipe/tracepipe/wire"
)

func TestGenToFile(t *testing.T) {
	dir := t.TempDir()
	out, truthFile := filepath.Join(dir, "spans.bin"), filepath.Join(dir, "truth.json")
	var stdout, stderr bytes.Buffer
	err := runGen(context.Background(), []string{"--traces", "25", "--seed", "4", "--encoding", "otlp-json", "--batch", "5",
		"--slow", "inventory:Reserve:10", "--out", out, "--truth", truthFile}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var truth gen.Truth
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
	msgs, err := gen.ReadFile(f, wire.OTLPJSON)
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
	// Deterministic: the same seed writes the same bytes.
	out2 := filepath.Join(dir, "again.bin")
	if err := runGen(context.Background(), []string{"--traces", "25", "--seed", "4", "--encoding", "otlp-json", "--batch", "5",
		"--slow", "inventory:Reserve:10", "--out", out2}, &stdout, &stderr); err != nil {
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
