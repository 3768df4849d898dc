package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address free at the time of the call.
func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDemo runs `tracepipe demo --exit` with a small load on free ports: the
// whole story in one command — pipeline, collector, instrumented services —
// must store every trace and name the slow shard first.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline and the demo for about 15 s")
	}
	dir := t.TempDir()
	// A pronounced slow shard: the ranking must hold under -race on a
	// loaded machine, where every span costs more.
	args := []string{"demo", "--exit", "--requests", "120", "--concurrency", "6", "--users", "12",
		"--shard-latency", "5ms", "--slow-factor", "10",
		"--data-dir", filepath.Join(dir, "data"), "--broker-listen", freeAddr(t, "tcp"), "--listen", freeAddr(t, "tcp"),
		"--metrics-addr", "", "--services-metrics", "", "--jaeger-compact-udp", freeAddr(t, "udp"), "--jaeger-binary-udp", "",
		"--jaeger-http", freeAddr(t, "tcp"), "--otlp-grpc", freeAddr(t, "tcp"), "--otlp-http", freeAddr(t, "tcp"),
		"--sampling-http", freeAddr(t, "tcp")}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"120 traces stored", "0 failed", "$ tracepipe query bottlenecks"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The first bottleneck row names the slow shard.
	_, table, _ := strings.Cut(out, "$ tracepipe query bottlenecks")
	lines := strings.Split(table, "\n")
	if len(lines) < 3 || !strings.Contains(lines[2], "ReadPosts shard-3") {
		t.Errorf("first bottleneck is not ReadPosts shard-3:\n%s", table)
	}
	// Search by host finds the real clients' traces (jaeger-client-go's
	// hostname, OTel's host.name).
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	q := []string{"query", "slowest", "--store", filepath.Join(dir, "data", "tracepipe.db"), "--since", "1h", "--tag", "host=" + host, "--limit", "200"}
	if code := run(ctx, q, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("%v: exit %d: %s", q, code, stderr.String())
	}
	if n := strings.Count(stdout.String(), "api-gateway GET /feed") + strings.Count(stdout.String(), "api-gateway POST /post"); n != 120 {
		t.Errorf("--tag host=%s: %d traces, want 120:\n%s", host, n, stdout.String())
	}
}

func TestDemoUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--requests", "0"},
		{"demo", "--listen", ""},
		{"demo", "--slow-shard", "9"},
		{"demo", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, nil, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, stderr %q; want 2", args, code, stderr.String())
		}
	}
}
