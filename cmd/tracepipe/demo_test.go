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
		t.Skip("runs the pipeline and the demo for about 20 s")
	}
	dir := t.TempDir()
	// A saturated slow shard: 8 users put 36 of the 96 feed reads (and 9
	// posts) on shard-3, which serves one request at a time for 150ms, so
	// the 8 requests in flight queue on it and its reads' time (queue
	// included) dwarfs every other operation's, however slow the CPU makes
	// them. With 12 users (24 reads) at 50ms and 6 in flight it was not
	// saturated: under -race on a loaded machine the CPU-bound hops (25-30ms
	// each per trace) outranked it in 3 of 6 runs. Measured under -race at
	// load average 15-18 on 2 cores: ReadPosts shard-3 31-46s of critical
	// path (54-86%), the next operation 2.7-6s.
	args := []string{"demo", "--exit", "--requests", "120", "--concurrency", "8", "--users", "8",
		"--shard-latency", "5ms", "--slow-factor", "30",
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
	if len(lines) >= 4 {
		t.Logf("bottlenecks:\n%s\n%s\n%s", lines[1], lines[2], lines[3])
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
	// One row per trace (not the root operation's name, which the
	// BOTTLENECK column repeats when the root span is its own bottleneck);
	// a trace ID twice would be a trace stored twice.
	rows, ids := traceRows(stdout.String())
	if rows != 120 || ids != 120 {
		t.Errorf("--tag host=%s: %d rows of %d distinct traces, want 120 of 120:\n%s", host, rows, ids, stdout.String())
	}
}

// traceRows counts the rows of `query slowest` output (those starting with a
// trace ID) whose root is the api-gateway, and the distinct trace IDs among them.
func traceRows(out string) (rows, distinct int) {
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || len(f[0]) != 32 || strings.Trim(f[0], "0123456789abcdef") != "" || f[6] != "api-gateway" {
			continue
		}
		rows++
		seen[f[0]] = true
	}
	return rows, len(seen)
}

func TestTraceRows(t *testing.T) {
	out := `TRACE                             START (UTC)              DURATION  SPANS  ERRORS  ROOT                    BOTTLENECK                      TAGS
5e7c400930433c3d436068cfbb51d76a  2026-12-07 03:06:27.564  51.2ms    19     0       api-gateway GET /feed   api-gateway GET /feed (16.9ms)  client=ios
0c71e43cc3bbda2134e5dad14e475f12  2026-12-07 03:06:16.912  83.1ms    15     0       api-gateway POST /post  storage WritePosts shard-1      client=web
5e7c400930433c3d436068cfbb51d76a  2026-12-07 03:06:27.564  51.2ms    19     0       api-gateway GET /feed   api-gateway GET /feed (16.9ms)  client=ios
6e255313d7b22f3826058b259e514ab4  2026-12-07 03:06:15.619  304.3ms   19     0       feed HTTP GET           feed HTTP GET (2ms)             client=ios
`
	// The root operation named again as the bottleneck is one trace, not
	// two; a repeated trace ID is a second row of the same trace.
	if rows, ids := traceRows(out); rows != 3 || ids != 2 {
		t.Errorf("traceRows = %d rows, %d distinct; want 3, 2", rows, ids)
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
