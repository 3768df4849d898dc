package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// BenchmarkBurstMemory measures the ingester process's memory under a burst:
// a workload of tracegen traces (TRACEPIPE_BENCH_BURST_TRACES, default
// 10,000 ≈ 200,000 Jaeger protobuf spans) waits in a 4-partition topic of
// the real broker; the cmd/ingester binary, started as it would be in
// production (GC tuned by ingest.TuneGC unless TRACEPIPE_BENCH_INGESTER_ENV
// sets e.g. "GOGC=100 GOMEMLIMIT=300MiB" for it), reads it with an idle
// timeout long enough for the whole burst to be buffered at once, then
// emits every trace. Reported:
//
//   - buffered-MiB: the peak of tracepipe_ingester_inflight_bytes (span bytes
//     buffered, as the ingester's budget counts them), polled every 50 ms;
//   - peak-RSS-MiB: VmHWM of /proc/<pid>/status at the end (the peak resident
//     set over buffering and emission);
//   - RSS-over-2x-buffered-MiB: peak RSS minus twice the buffered bytes
//     (issue 16's goal: at most 150);
//   - cpu-s: the process's CPU time (utime+stime) from start to the last
//     trace emitted, GC included.
//
// The log line also has the scraped peaks of the Go heap in use, the
// runtime's total and the encoded output in flight
// (tracepipe_ingester_output_inflight_bytes, bounded by
// --max-output-bytes-in-flight; TRACEPIPE_BENCH_INGESTER_ENV may set
// TRACEPIPE_MAX_OUTPUT_BYTES_IN_FLIGHT).
func BenchmarkBurstMemory(b *testing.B) {
	if os.Getenv(testenv.EnvKafka) == "" {
		b.Skip(testenv.HowToStart)
	}
	brokers := testenv.KafkaBrokers(b)
	bin := testenv.Build(b, "github.com/tracepipe/tracepipe/cmd/ingester") + "/ingester"
	traces := 10000
	if v, err := strconv.Atoi(os.Getenv("TRACEPIPE_BENCH_BURST_TRACES")); err == nil && v > 0 {
		traces = v
	}
	var env []string
	if v := os.Getenv("TRACEPIPE_BENCH_INGESTER_ENV"); v != "" {
		env = strings.Fields(v)
		b.Logf("ingester environment: %v", env)
	}
	const partitions = 4
	var peakRSS, buffered, cpu float64
	for i := 0; i < b.N; i++ {
		in, out, dlq, group := testenv.Name(b, "mspans"), testenv.Name(b, "mtraces"), testenv.Name(b, "mdlq"), testenv.Name(b, "mgroup")
		kafkatest.CreateTopic(b, brokers, in, partitions)
		kafkatest.CreateTopic(b, brokers, out, partitions)
		kafkatest.CreateTopic(b, brokers, dlq, 1)
		w := tracegen.Generate(tracegen.Config{Seed: 16, Traces: traces, Interleave: 50})
		enc, _ := tracegen.EncoderFor(wire.JaegerProto)
		msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
		if err != nil {
			b.Fatal(err)
		}
		spans := w.Truth().Spans
		tr := &kafka.Transport{}
		kw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: in, Balancer: &kafka.Hash{}, Transport: tr,
			RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 2000}
		if err := tracegen.Publish(context.Background(), kafkatest.Sender(kw), msgs, 0, 2000); err != nil {
			b.Fatal(err)
		}
		kw.Close()
		tr.CloseIdleConnections()

		addr := freeAddr(b)
		cmd := exec.Command(bin, "--kafka-brokers", strings.Join(brokers, ","), "--spans-topic", in, "--traces-topic", out,
			"--dlq-topic", dlq, "--group", group, "--encoding", "jaeger-proto", "--metrics-addr", addr,
			"--idle-timeout", "20s", "--max-wait", "60s", "--late-horizon", "-1s")
		cmd.Env = append(os.Environ(), env...)
		var log testenv.SyncBuffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		stop := func() {
			cmd.Process.Kill()
			cmd.Wait()
		}
		var peak, heap, sys, outPeak float64
		deadline := time.Now().Add(5 * time.Minute)
		for {
			m, err := scrape("http://" + addr + "/metrics")
			if err == nil {
				peak = max(peak, m["tracepipe_ingester_inflight_bytes"])
				heap = max(heap, m["go_memstats_heap_inuse_bytes"])
				sys = max(sys, m["go_memstats_sys_bytes"])
				outPeak = max(outPeak, m["tracepipe_ingester_output_inflight_bytes"])
				if m["tracepipe_ingester_traces_out_total"] >= float64(traces) && m["tracepipe_ingester_spans_in_total"] >= float64(spans) {
					break
				}
			}
			if time.Now().After(deadline) {
				stop()
				b.Fatalf("not every trace emitted after 5 minutes (last scrape error: %v); output:\n%s", err, tail(log.String()))
			}
			time.Sleep(50 * time.Millisecond)
		}
		c, rss, err := testenv.ProcUsage(cmd.Process.Pid)
		hwm := float64(rss)
		stop()
		if err != nil {
			b.Fatal(err)
		}
		peakRSS += hwm
		buffered += peak
		cpu += c.Seconds()
		b.Logf("%d traces, %d spans: peak buffered %.1f MiB, peak RSS %.1f MiB (scraped peaks: heap in use %.1f MiB, runtime total %.1f MiB, output in flight %.1f MiB), CPU %.2f s",
			traces, spans, peak/(1<<20), hwm/(1<<20), heap/(1<<20), sys/(1<<20), outPeak/(1<<20), c.Seconds())
	}
	n := float64(b.N)
	b.ReportMetric(buffered/n/(1<<20), "buffered-MiB")
	b.ReportMetric(peakRSS/n/(1<<20), "peak-RSS-MiB")
	b.ReportMetric((peakRSS-2*buffered)/n/(1<<20), "RSS-over-2x-buffered-MiB")
	b.ReportMetric(cpu/n, "cpu-s")
	b.ReportMetric(0, "ns/op")
}

func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape sums each metric's samples over its labels.
func scrape(url string) (map[string]float64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, sc.Err()
}

func tail(s string) string {
	if len(s) > 4096 {
		return s[len(s)-4096:]
	}
	return s
}
