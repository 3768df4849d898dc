package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAnalyzeFlagsAfterFiles: "analyze FILE --format json" reads --format as
// a flag, not as a file.
func TestAnalyzeFlagsAfterFiles(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"analyze", "testdata/analyze/hotrod.json", "--format", "json"}, nil, &stdout, &stderr)
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(stdout.String()), "{") {
		t.Fatalf("exit %d, stdout %.80q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestAnalyzeEmptyDocument: {"data":[]} is reported and exits non-zero.
func TestAnalyzeEmptyDocument(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.json")
	if err := os.WriteFile(empty, []byte(`{"data":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"analyze", empty}, nil, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "no traces") {
		t.Errorf("exit %d, stderr %q; want non-zero and 'no traces'", code, stderr.String())
	}
}

// TestAnalyzeGenFiles: analyze reads what 'tracepipe gen --out' writes, in
// every encoding, and explains every trace.
func TestAnalyzeGenFiles(t *testing.T) {
	for _, enc := range []string{"jaeger-proto", "jaeger-json", "otlp-proto", "otlp-json"} {
		t.Run(enc, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "spans."+enc)
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"gen", "--traces", "5", "--encoding", enc, "--out", out}, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("gen: exit %d: %s", code, stderr.String())
			}
			stdout.Reset()
			code := run(context.Background(), []string{"analyze", "--format", "json", out}, nil, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("analyze: exit %d: %s", code, stderr.String())
			}
			if n := strings.Count(stdout.String(), `"criticalPath"`); n != 5 {
				t.Errorf("traces explained = %d, want 5", n)
			}
		})
	}
}
