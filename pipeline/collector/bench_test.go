package collector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/uber/jaeger-client-go/thrift"
	"github.com/uber/jaeger-client-go/thrift-gen/jaeger"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

// benchSpans is a batch of 100 spans, 10 traces of 10, shaped like the
// golden client payloads (6 tags, a process with 3 tags, one log on every
// tenth span).
func benchSpans() []*model.Span {
	var spans []*model.Span
	proc := model.Process{ServiceName: "feed", Tags: model.KeyValues{
		model.String("hostname", "host-a"), model.String("ip", "10.0.0.7"), model.String("jaeger.version", "Go-2.30.0")}}
	for i := range 100 {
		tid := model.TraceID{High: 0x1234, Low: uint64(1 + i/10)}
		sp := &model.Span{TraceID: tid, SpanID: model.SpanID(1000 + i), Operation: "db.query", Flags: 1,
			Start: model.Timestamp(1_700_000_000_000_000_000 + int64(i)*1000), Duration: 1500 * time.Microsecond,
			Tags: model.KeyValues{model.String("span.kind", "client"), model.String("db.statement", "SELECT * FROM feed WHERE user = ?"),
				model.Int64("rows", int64(i)), model.Bool("cached", i%2 == 0), model.Float64("ratio", 0.5), model.String("shard", "shard-3")},
			Process: proc}
		if i%10 != 0 {
			sp.References = []model.Reference{{Type: model.ChildOf, TraceID: tid, SpanID: model.SpanID(1000 + i - i%10)}}
		} else {
			sp.Logs = []model.Log{{Timestamp: sp.Start + 100, Fields: model.KeyValues{model.String("event", "error"), model.String("message", "timeout")}}}
		}
		spans = append(spans, sp)
	}
	return spans
}

// thriftBatch encodes spans as a binary thrift Batch with jaeger-client-go's
// generated code, as its HTTP sender does.
func thriftBatch(tb testing.TB, spans []*model.Span) []byte {
	tags := func(kvs model.KeyValues) []*jaeger.Tag {
		var out []*jaeger.Tag
		for _, kv := range kvs {
			t := &jaeger.Tag{Key: kv.Key}
			switch kv.Type {
			case model.StringType:
				s := kv.Str
				t.VType, t.VStr = jaeger.TagType_STRING, &s
			case model.Int64Type:
				n := kv.Num
				t.VType, t.VLong = jaeger.TagType_LONG, &n
			case model.BoolType:
				v := kv.BoolValue()
				t.VType, t.VBool = jaeger.TagType_BOOL, &v
			case model.Float64Type:
				f := kv.Float64Value()
				t.VType, t.VDouble = jaeger.TagType_DOUBLE, &f
			}
			out = append(out, t)
		}
		return out
	}
	b := &jaeger.Batch{Process: &jaeger.Process{ServiceName: spans[0].Process.ServiceName, Tags: tags(spans[0].Process.Tags)}}
	for _, sp := range spans {
		js := &jaeger.Span{TraceIdLow: int64(sp.TraceID.Low), TraceIdHigh: int64(sp.TraceID.High), SpanId: int64(sp.SpanID),
			OperationName: sp.Operation, Flags: int32(sp.Flags), StartTime: sp.Start.Micros(), Duration: sp.Duration.Microseconds(), Tags: tags(sp.Tags)}
		if p, _, ok := sp.ParentSpanID(); ok {
			js.ParentSpanId = int64(p)
		}
		for _, l := range sp.Logs {
			js.Logs = append(js.Logs, &jaeger.Log{Timestamp: l.Timestamp.Micros(), Fields: tags(l.Fields)})
		}
		b.Spans = append(b.Spans, js)
	}
	buf := thrift.NewTMemoryBuffer()
	if err := b.Write(context.Background(), thrift.NewTBinaryProtocolConf(buf, &thrift.TConfiguration{})); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// benchBroker returns brokers and a producer transport for the benchmark's
// target: the in-process kfake or the real broker.
func benchBroker(b *testing.B, target string) ([]string, Options, string) {
	topic := "spans"
	switch target {
	case "kfake":
		cl := kafkatest.NewCluster(b)
		cl.CreateTopic(b, topic, 4)
		return cl.Brokers, Options{Transport: kafkatest.NewTransport(b)}, topic
	default:
		brokers := testenv.KafkaBrokers(b)
		topic = testenv.Name(b, "bench-collector")
		kafkatest.CreateTopic(b, brokers, topic, 4)
		return brokers, Options{}, topic
	}
}

// BenchmarkCollector measures spans per second from request to Kafka's
// acknowledgement: clients send batches of 100 spans over 8 connections,
// and the clock stops once the producer's buffer is empty (every span
// acknowledged by Kafka, acks=all). Run with -cpu 1 for a per-core
// figure; the in-process clients (and kfake) share that core.
func BenchmarkCollector(b *testing.B) {
	spans := benchSpans()
	otlp, err := wire.EncodeOTLPProto(spans)
	if err != nil {
		b.Fatal(err)
	}
	jt := thriftBatch(b, spans)
	for _, target := range []string{"kfake", "kafka"} {
		for _, proto := range []string{"otlp-grpc", "jaeger-http"} {
			b.Run(proto+"/"+target, func(b *testing.B) {
				brokers, opts, topic := benchBroker(b, target)
				cfg := testConfig(brokers, topic)
				r := start(b, cfg, opts)
				var send func() error
				switch proto {
				case "otlp-grpc":
					conn, err := grpc.NewClient(r.addrs.OTLPGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
						grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{proto: encoding.GetCodecV2("proto")})))
					if err != nil {
						b.Fatal(err)
					}
					defer conn.Close()
					req := &rawRequest{b: otlp}
					send = func() error {
						var resp coltracepb.ExportTraceServiceResponse
						return conn.Invoke(context.Background(), coltracepb.TraceService_Export_FullMethodName, req, &resp)
					}
				case "jaeger-http":
					tr := &http.Transport{MaxIdleConnsPerHost: 16}
					defer tr.CloseIdleConnections()
					client := &http.Client{Transport: tr}
					url := "http://" + r.addrs.JaegerHTTP + "/api/traces"
					send = func() error {
						resp, err := client.Post(url, "application/x-thrift", bytes.NewReader(jt))
						if err != nil {
							return err
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							return fmt.Errorf("%s", resp.Status)
						}
						return nil
					}
				}
				if err := send(); err != nil { // warm up: connections, metadata
					b.Fatal(err)
				}
				waitDrained(b, r)
				b.ReportAllocs()
				b.SetBytes(int64(len(otlp)))
				b.SetParallelism(8)
				cpu0 := testenv.SelfUsage().CPU()
				b.ResetTimer()
				var refusals atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						for {
							err := send()
							if err == nil {
								break
							}
							// Refused (the queue is full): back off and
							// retry, as clients do.
							refusals.Add(1)
							time.Sleep(10 * time.Millisecond)
						}
					}
				})
				waitDrained(b, r)
				b.StopTimer()
				b.ReportMetric(float64(b.N*len(spans))/b.Elapsed().Seconds(), "spans/s")
				// Spans per second of CPU time of the whole test process
				// (collector, clients and, for kfake, the broker).
				b.ReportMetric(float64(b.N*len(spans))/(testenv.SelfUsage().CPU()-cpu0).Seconds(), "spans/cpu-s")
				b.ReportMetric(float64(refusals.Load())/float64(b.N), "refusals/op")
				if err := r.stop(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkBurstMemory measures memory while a burst far beyond what Kafka
// takes arrives: Kafka holds every produce request and 64 clients send
// batches of 100 spans over OTLP/gRPC as fast as they can for 2 seconds, so
// the queue fills to its limit and the rest is refused. Reported, above
// the heap before the burst: live-heap-MB (after a GC with the queue full:
// the queue, kafka-go's copy of what it is sending, and fixed overhead),
// peak-heap-MB (sampled every millisecond during the burst, garbage
// included), beside queue-MB (the limit) and queued-MB (what it held).
func BenchmarkBurstMemory(b *testing.B) {
	spans := benchSpans()
	otlp, err := wire.EncodeOTLPProto(spans)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		cl := kafkatest.NewCluster(b)
		cl.CreateTopic(b, "spans", 4)
		cfg := testConfig(cl.Brokers, "spans")
		cfg.QueueBytes = 16 << 20
		r := start(b, cfg, Options{Transport: kafkatest.NewTransport(b)})
		postOK(b, "http://"+r.addrs.OTLPHTTP+"/v1/traces", "application/x-protobuf", otlp, http.StatusOK)
		waitDrained(b, r)
		release := make(chan struct{})
		cl.Fake.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			cl.Fake.KeepControl()
			cl.Fake.SleepControl(func() { <-release })
			return nil, nil, false
		})
		conn, err := grpc.NewClient(r.addrs.OTLPGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{proto: encoding.GetCodecV2("proto")})))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		base := heapBytes()
		var peak atomic.Uint64
		stopSampling := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Add(1)
		go func() {
			defer sampler.Done()
			for {
				if h := heapBytes(); h > peak.Load() {
					peak.Store(h)
				}
				select {
				case <-stopSampling:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		var accepted, refused atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(2 * time.Second)
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := &rawRequest{b: otlp}
				for time.Now().Before(deadline) {
					var resp coltracepb.ExportTraceServiceResponse
					if err := conn.Invoke(context.Background(), coltracepb.TraceService_Export_FullMethodName, req, &resp); err != nil {
						refused.Add(1)
					} else {
						accepted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		close(stopSampling)
		sampler.Wait()
		queued := r.c.prod.Buffered()
		runtime.GC()
		live := heapBytes()
		conn.Close()
		close(release)
		waitDrained(b, r)
		if err := r.stop(); err != nil {
			b.Fatal(err)
		}
		mb := func(n uint64) float64 { return float64(n) / (1 << 20) }
		b.ReportMetric(mb(live-base), "live-heap-MB")
		b.ReportMetric(mb(peak.Load()-base), "peak-heap-MB")
		b.ReportMetric(mb(uint64(cfg.QueueBytes)), "queue-MB")
		b.ReportMetric(mb(uint64(queued)), "queued-MB")
		b.ReportMetric(float64(accepted.Load()), "accepted-requests")
		b.ReportMetric(float64(refused.Load()), "refused-requests")
	}
}

func heapBytes() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkOTLPRequestDecode compares the gRPC receiver's way in (the
// request's bytes straight into wire.DecodeOTLPProto, by rawCodec) with
// what registering the generated service would cost: unmarshal into
// ExportTraceServiceRequest, marshal again, then decode.
func BenchmarkOTLPRequestDecode(b *testing.B) {
	payload, err := wire.EncodeOTLPProto(benchSpans())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		var dst []*model.Span
		for b.Loop() {
			if dst, err = wire.DecodeOTLPProto(payload, dst[:0]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "spans/s")
	})
	b.Run("generated+remarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		var dst []*model.Span
		for b.Loop() {
			var req coltracepb.ExportTraceServiceRequest
			if err := proto.Unmarshal(payload, &req); err != nil {
				b.Fatal(err)
			}
			again, err := proto.Marshal(&req)
			if err != nil {
				b.Fatal(err)
			}
			if dst, err = wire.DecodeOTLPProto(again, dst[:0]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "spans/s")
	})
}
