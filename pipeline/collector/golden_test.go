package collector

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/uber/jaeger-client-go/thrift"
	"github.com/uber/jaeger-client-go/thrift-gen/agent"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

var update = flag.Bool("update", false, "capture the golden payloads again from the real client libraries")

// The golden payloads: what jaeger-client-go and the OTel SDK really send,
// captured by TestGolden with -update, and the spans the collector must
// publish for each (as the ingester decodes them from Kafka).
var goldens = []struct {
	name string
	send func(tb testing.TB, r *running, payload []byte)
}{
	{"jaeger-compact-udp", func(tb testing.TB, r *running, p []byte) {
		sendUDP(tb, r.addrs.JaegerCompactUDP, p)
		waitCount(tb, r.c.m.requests.WithLabelValues(RecvJaegerCompactUDP, "accepted"), 1)
	}},
	{"jaeger-binary-udp", func(tb testing.TB, r *running, p []byte) {
		sendUDP(tb, r.addrs.JaegerBinaryUDP, p)
		waitCount(tb, r.c.m.requests.WithLabelValues(RecvJaegerBinaryUDP, "accepted"), 1)
	}},
	{"jaeger-http", func(tb testing.TB, r *running, p []byte) {
		postOK(tb, "http://"+r.addrs.JaegerHTTP+"/api/traces", "application/x-thrift", p, http.StatusAccepted)
	}},
	{"otlp-http", func(tb testing.TB, r *running, p []byte) {
		postOK(tb, "http://"+r.addrs.OTLPHTTP+"/v1/traces", "application/x-protobuf", p, http.StatusOK)
	}},
	{"otlp-grpc", func(tb testing.TB, r *running, p []byte) { exportGRPC(tb, r.addrs.OTLPGRPC, p) }},
}

func goldenPath(name, ext string) string { return filepath.Join("testdata", "golden", name+ext) }

// decodeGolden decodes a payload as its receiver does.
func decodeGolden(name string, p []byte) ([]*model.Span, error) {
	switch name {
	case "jaeger-compact-udp":
		return wire.DecodeAgentEmitBatch(p, wire.ThriftCompact, nil)
	case "jaeger-binary-udp":
		return wire.DecodeAgentEmitBatch(p, wire.ThriftBinary, nil)
	case "jaeger-http":
		return wire.DecodeJaegerThrift(p, wire.ThriftBinary, nil)
	}
	return wire.DecodeOTLPProto(p, nil)
}

// viaKafka is what the ingester reads back for spans: each encoded as the
// collector publishes it, then decoded.
func viaKafka(tb testing.TB, spans []*model.Span) []*model.Span {
	var out []*model.Span
	for _, sp := range spans {
		b, err := wire.EncodeJaegerProto(sp)
		if err != nil {
			tb.Fatal(err)
		}
		d, err := wire.DecodeJaegerProto(b)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, d)
	}
	sortSpans(out)
	return out
}

func sortSpans(s []*model.Span) {
	slices.SortFunc(s, func(a, b *model.Span) int {
		return cmp.Or(cmp.Compare(a.Process.ServiceName, b.Process.ServiceName), cmp.Compare(a.TraceID.High, b.TraceID.High),
			cmp.Compare(a.TraceID.Low, b.TraceID.Low), cmp.Compare(a.SpanID, b.SpanID))
	})
}

func spansJSON(tb testing.TB, s []*model.Span) []byte {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		tb.Fatal(err)
	}
	return append(b, '\n')
}

// TestGolden sends each golden payload to its receiver and checks that the
// spans topic then holds exactly the golden spans.
func TestGolden(t *testing.T) {
	if *update {
		captureGoldens(t)
	}
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			payload, err := os.ReadFile(goldenPath(g.name, ".bin"))
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to capture)", err)
			}
			want, err := os.ReadFile(goldenPath(g.name, ".json"))
			if err != nil {
				t.Fatal(err)
			}
			spans, err := decodeGolden(g.name, payload)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := spansJSON(t, viaKafka(t, spans)); !bytes.Equal(got, want) {
				t.Fatalf("decoded spans differ from %s", goldenPath(g.name, ".json"))
			}
			cl := kafkatest.NewCluster(t)
			cl.CreateTopic(t, "spans", 2)
			r := start(t, testConfig(cl.Brokers, "spans"), Options{Transport: kafkatest.NewTransport(t)})
			g.send(t, r, payload)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			got := readSpans(t, cl.Brokers, "spans", 2, len(spans))
			sortSpans(got)
			if b := spansJSON(t, got); !bytes.Equal(b, want) {
				t.Errorf("spans in Kafka differ from %s:\n%s", goldenPath(g.name, ".json"), b)
			}
		})
	}
}

func sendUDP(tb testing.TB, addr string, p []byte) {
	tb.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(p); err != nil {
		tb.Fatal(err)
	}
}

func post(tb testing.TB, url, contentType string, body []byte, header ...string) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

func postOK(tb testing.TB, url, contentType string, body []byte, want int) {
	tb.Helper()
	resp := post(tb, url, contentType, body)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		tb.Fatalf("POST %s: %s %s, want %d", url, resp.Status, b, want)
	}
}

func exportGRPC(tb testing.TB, addr string, p []byte) {
	tb.Helper()
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(p, &req); err != nil {
		tb.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, &req)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.GetPartialSuccess().GetRejectedSpans() != 0 {
		tb.Fatalf("partial success: %v", resp.GetPartialSuccess())
	}
}

// captureGoldens runs the real clients against capturing servers and writes
// each first payload with its expected spans.
func captureGoldens(t *testing.T) {
	const service, traces, children = "golden", 2, 2
	write := func(name string, payload []byte) {
		spans, err := decodeGolden(name, payload)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		os.MkdirAll(filepath.Dir(goldenPath(name, "")), 0o755)
		if err := os.WriteFile(goldenPath(name, ".bin"), payload, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath(name, ".json"), spansJSON(t, viaKafka(t, spans)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// jaeger-client-go, UDP: one datagram holds the whole small workload.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sendJaegerUDP(t, pc.LocalAddr().String(), service+"-udp", traces, children)
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	pc.Close()
	if err != nil {
		t.Fatal(err)
	}
	compact := append([]byte(nil), buf[:n]...)
	write("jaeger-compact-udp", compact)
	// Binary UDP, as non-Go clients send to 6832: the same call re-encoded
	// by jaeger-client-go's generated code in the binary protocol.
	write("jaeger-binary-udp", toBinaryEmitBatch(t, compact))

	// jaeger-client-go, HTTP; OTel SDK, OTLP/HTTP.
	var mu sync.Mutex
	bodies := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if _, ok := bodies[r.URL.Path]; !ok {
			bodies[r.URL.Path] = b
		}
		mu.Unlock()
		if r.URL.Path == "/v1/traces" {
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	addr := srv.Listener.Addr().String()
	sendJaegerHTTP(t, addr, service+"-http", traces, children)
	sendOTLPHTTP(t, addr, service+"-otlp-http", traces, children)
	srv.Close()
	write("jaeger-http", bodies["/api/traces"])
	write("otlp-http", bodies["/v1/traces"])

	// OTel SDK, OTLP/gRPC: the request's bytes as they arrive.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var grpcBody []byte
	gs := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{proto: encoding.GetCodecV2("proto")}))
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService", HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Export", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req rawRequest
			if err := dec(&req); err != nil {
				return nil, err
			}
			mu.Lock()
			if grpcBody == nil {
				grpcBody = req.b
			}
			mu.Unlock()
			return &coltracepb.ExportTraceServiceResponse{}, nil
		}}},
	}, struct{}{})
	go gs.Serve(ln)
	sendOTLPGRPC(t, ln.Addr().String(), service+"-otlp-grpc", traces, children)
	gs.Stop()
	write("otlp-grpc", grpcBody)
}

func toBinaryEmitBatch(tb testing.TB, compact []byte) []byte {
	ctx := context.Background()
	in := thrift.NewTMemoryBufferLen(len(compact))
	in.Write(compact)
	ip := thrift.NewTCompactProtocolConf(in, &thrift.TConfiguration{})
	if _, _, _, err := ip.ReadMessageBegin(ctx); err != nil {
		tb.Fatal(err)
	}
	var args agent.AgentEmitBatchArgs
	if err := args.Read(ctx, ip); err != nil {
		tb.Fatal(err)
	}
	out := thrift.NewTMemoryBuffer()
	op := thrift.NewTBinaryProtocolConf(out, &thrift.TConfiguration{})
	if err := op.WriteMessageBegin(ctx, "emitBatch", thrift.ONEWAY, 1); err != nil {
		tb.Fatal(err)
	}
	if err := args.Write(ctx, op); err != nil {
		tb.Fatal(err)
	}
	op.WriteMessageEnd(ctx)
	op.Flush(ctx)
	return out.Bytes()
}
