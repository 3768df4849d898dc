package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/uber/jaeger-client-go"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

func golden(tb testing.TB, name string) []byte {
	b, err := os.ReadFile(goldenPath(name, ".bin"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// rawExport calls Export with b as the request's bytes.
func rawExport(tb testing.TB, addr string, b []byte) (*coltracepb.ExportTraceServiceResponse, error) {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{proto: encoding.GetCodecV2("proto")}), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp coltracepb.ExportTraceServiceResponse
	err = conn.Invoke(ctx, coltracepb.TraceService_Export_FullMethodName, &rawRequest{b: b}, &resp)
	return &resp, err
}

// TestBadInput: every kind of bad request gets its 4xx or gRPC code, is
// counted by receiver and reason, and the collector keeps serving.
func TestBadInput(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "spans", 1)
	cfg := testConfig(cl.Brokers, "spans")
	cfg.MaxRequestBytes = 16 << 10
	r := start(t, cfg, Options{Transport: kafkatest.NewTransport(t)})
	jaegerURL := "http://" + r.addrs.JaegerHTTP + "/api/traces"
	otlpURL := "http://" + r.addrs.OTLPHTTP + "/v1/traces"
	big := bytes.Repeat([]byte{0}, 20<<10)
	bomb := gz(bytes.Repeat([]byte{0}, 1<<20)) // 1 MiB once unzipped

	for _, tc := range []struct {
		name, url, method, ctype string
		body                     []byte
		header                   []string
		code                     int
		receiver, reason         string
	}{
		{"jaeger GET", jaegerURL, http.MethodGet, "application/x-thrift", nil, nil, 405, RecvJaegerHTTP, ReasonMethod},
		{"jaeger content type", jaegerURL, http.MethodPost, "application/json", []byte("{}"), nil, 415, RecvJaegerHTTP, ReasonContentType},
		{"jaeger malformed", jaegerURL, http.MethodPost, "application/x-thrift", []byte("not thrift"), nil, 400, RecvJaegerHTTP, ReasonMalformed},
		{"jaeger truncated", jaegerURL, http.MethodPost, "application/vnd.apache.thrift.binary", golden(t, "jaeger-http")[:100], nil, 400, RecvJaegerHTTP, ReasonMalformed},
		{"jaeger too large", jaegerURL, http.MethodPost, "application/x-thrift", big, nil, 413, RecvJaegerHTTP, ReasonTooLarge},
		{"otlp GET", otlpURL, http.MethodGet, "application/x-protobuf", nil, nil, 405, RecvOTLPHTTP, ReasonMethod},
		{"otlp content type", otlpURL, http.MethodPost, "text/plain", []byte("x"), nil, 415, RecvOTLPHTTP, ReasonContentType},
		{"otlp encoding", otlpURL, http.MethodPost, "application/x-protobuf", []byte("x"), []string{"Content-Encoding", "br"}, 415, RecvOTLPHTTP, ReasonContentType},
		{"otlp malformed proto", otlpURL, http.MethodPost, "application/x-protobuf", []byte{0x0a, 0xff}, nil, 400, RecvOTLPHTTP, ReasonMalformed},
		{"otlp malformed json", otlpURL, http.MethodPost, "application/json", []byte(`{"resourceSpans":[{`), nil, 400, RecvOTLPHTTP, ReasonMalformed},
		{"otlp bad gzip", otlpURL, http.MethodPost, "application/x-protobuf", []byte("not gzip"), []string{"Content-Encoding", "gzip"}, 400, RecvOTLPHTTP, ReasonMalformed},
		{"otlp gzip bomb", otlpURL, http.MethodPost, "application/x-protobuf", bomb, []string{"Content-Encoding", "gzip"}, 413, RecvOTLPHTTP, ReasonTooLarge},
		{"otlp too large", otlpURL, http.MethodPost, "application/x-protobuf", big, nil, 413, RecvOTLPHTTP, ReasonTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := r.c.m.badRequests.WithLabelValues(tc.receiver, tc.reason)
			before := testutil.ToFloat64(c)
			req, _ := http.NewRequest(tc.method, tc.url, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %s (%s), want %d", resp.Status, b, tc.code)
			}
			if len(b) == 0 && tc.method == http.MethodPost {
				t.Errorf("no error message in the body")
			}
			if got := testutil.ToFloat64(c) - before; got != 1 {
				t.Errorf("bad_requests_total{%s,%s} rose by %g, want 1", tc.receiver, tc.reason, got)
			}
		})
	}
	t.Run("otlp json error body", func(t *testing.T) {
		resp := post(t, otlpURL, "application/json", []byte(`[`))
		defer resp.Body.Close()
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Code != int(codes.InvalidArgument) || st.Message == "" {
			t.Errorf("body is not a google.rpc.Status in JSON: %+v %v", st, err)
		}
	})
	t.Run("grpc malformed", func(t *testing.T) {
		_, err := rawExport(t, r.addrs.OTLPGRPC, []byte{0x0a, 0xff, 0xff})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("err %v, want InvalidArgument", err)
		}
		if testutil.ToFloat64(r.c.m.badRequests.WithLabelValues(RecvOTLPGRPC, ReasonMalformed)) != 1 {
			t.Error("not counted")
		}
	})
	t.Run("grpc too large", func(t *testing.T) {
		// grpc-go itself answers RESOURCE_EXHAUSTED (without RetryInfo,
		// so OTel exporters do not retry it).
		_, err := rawExport(t, r.addrs.OTLPGRPC, big)
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("err %v, want ResourceExhausted", err)
		}
		if testutil.ToFloat64(r.c.m.badRequests.WithLabelValues(RecvOTLPGRPC, ReasonTooLarge)) != 1 {
			t.Error("not counted")
		}
	})
	t.Run("udp garbage", func(t *testing.T) {
		for _, addr := range []string{r.addrs.JaegerCompactUDP, r.addrs.JaegerBinaryUDP} {
			sendUDP(t, addr, []byte("garbage"))
		}
		sendUDP(t, r.addrs.JaegerCompactUDP, golden(t, "jaeger-binary-udp")) // the wrong protocol
		waitCount(t, r.c.m.badRequests.WithLabelValues(RecvJaegerCompactUDP, ReasonMalformed), 2)
		waitCount(t, r.c.m.badRequests.WithLabelValues(RecvJaegerBinaryUDP, ReasonMalformed), 1)
	})
	// Still serving: good requests of every receiver are accepted.
	postOK(t, jaegerURL, "application/x-thrift", golden(t, "jaeger-http"), http.StatusAccepted)
	postOK(t, otlpURL, "application/x-protobuf", golden(t, "otlp-http"), http.StatusOK)
	resp := post(t, otlpURL, "application/x-protobuf", gz(golden(t, "otlp-http")), "Content-Encoding", "gzip")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("gzip request: %s", resp.Status)
	}
	exportGRPC(t, r.addrs.OTLPGRPC, golden(t, "otlp-grpc"))
	sendUDP(t, r.addrs.JaegerCompactUDP, golden(t, "jaeger-compact-udp"))
	waitCount(t, r.c.m.requests.WithLabelValues(RecvJaegerCompactUDP, "accepted"), 1)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestPartialSuccess: a span over the message limit is rejected alone,
// and OTLP says so with partial success; the others are published.
func TestPartialSuccess(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "spans", 1)
	cfg := testConfig(cl.Brokers, "spans")
	cfg.Producer.MaxMessageBytes = 4096
	r := start(t, cfg, Options{Transport: kafkatest.NewTransport(t)})
	span := func(id byte, attr string) *tracepb.Span {
		return &tracepb.Span{TraceId: bytes.Repeat([]byte{7}, 16), SpanId: []byte{0, 0, 0, 0, 0, 0, 0, id}, Name: "op",
			StartTimeUnixNano: 1e18, EndTimeUnixNano: 1e18 + 1000,
			Attributes: []*commonpb.KeyValue{{Key: "a", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: attr}}}}}
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span(1, "small"), span(2, strings.Repeat("x", 5000)), span(3, "small")}}},
	}}}
	b, _ := proto.Marshal(req)
	resp, err := rawExport(t, r.addrs.OTLPGRPC, b)
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.GetPartialSuccess(); ps.GetRejectedSpans() != 1 || !strings.Contains(ps.GetErrorMessage(), "limit") {
		t.Errorf("grpc partial success %v, want 1 rejected span", ps)
	}
	hr := post(t, "http://"+r.addrs.OTLPHTTP+"/v1/traces", "application/x-protobuf", b)
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	var hresp coltracepb.ExportTraceServiceResponse
	if err := proto.Unmarshal(body, &hresp); err != nil || hr.StatusCode != 200 || hresp.GetPartialSuccess().GetRejectedSpans() != 1 {
		t.Errorf("http: %s %v %v, want 200 with 1 rejected span", hr.Status, &hresp, err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got := readSpans(t, cl.Brokers, "spans", 1, 4); len(got) != 4 {
		t.Errorf("%d spans published, want 4", len(got))
	}
	if n := testutil.ToFloat64(r.c.m.dropped.WithLabelValues(RecvOTLPGRPC, ReasonTooLarge)); n != 1 {
		t.Errorf("dropped{too_large} = %g", n)
	}
}

// TestSampling: jaeger-client-go's remote sampler takes the strategies the
// collector serves from a strategies file.
func TestSampling(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "strategies.json")
	os.WriteFile(file, []byte(`{
  "default_strategy": {"type": "probabilistic", "param": 0.25},
  "service_strategies": [
    {"service": "feed", "type": "probabilistic", "param": 0.8},
    {"service": "gateway", "type": "ratelimiting", "param": 5},
    {"service": "cache", "type": "probabilistic", "param": 0.5,
     "operation_strategies": [{"operation": "GET /health", "type": "probabilistic", "param": 0}]}
  ]
}`), 0o644)
	cfg := testConfig([]string{"127.0.0.1:1"}, "spans")
	cfg.SamplingStrategies = file
	r := start(t, cfg, Options{})
	url := "http://" + r.addrs.SamplingHTTP + "/sampling"
	for _, tc := range []struct{ service, want string }{
		{"feed", "ProbabilisticSampler(samplingRate=0.8)"},
		{"gateway", "RateLimitingSampler(maxTracesPerSecond=5)"},
		{"unknown", "ProbabilisticSampler(samplingRate=0.25)"},
		{"cache", "PerOperationSampler"},
	} {
		s := jaeger.NewRemotelyControlledSampler(tc.service, jaeger.SamplerOptions.SamplingServerURL(url),
			jaeger.SamplerOptions.InitialSampler(jaeger.NewConstSampler(false)),
			jaeger.SamplerOptions.SamplingRefreshInterval(time.Hour))
		s.UpdateSampler()
		got := samplerString(s.Sampler())
		s.Close()
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: sampler %s, want %s", tc.service, got, tc.want)
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no service: %s, want 400", resp.Status)
	}
	if n := testutil.ToFloat64(r.c.m.sampling.WithLabelValues("ok")); n != 4 {
		t.Errorf("sampling_requests_total{ok} = %g, want 4", n)
	}
}

func samplerString(s jaeger.SamplerV2) string {
	switch v := s.(type) {
	case *jaeger.ProbabilisticSampler:
		return v.String()
	case *jaeger.RateLimitingSampler:
		return v.String()
	case *jaeger.PerOperationSampler:
		return "PerOperationSampler"
	}
	return "other"
}

func TestStrategiesFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"bad type", `{"service_strategies":[{"service":"a","type":"always","param":1}]}`, "must be probabilistic or ratelimiting"},
		{"rate", `{"default_strategy":{"type":"probabilistic","param":2}}`, "between 0 and 1"},
		{"duplicate", `{"service_strategies":[{"service":"a","type":"probabilistic","param":1},{"service":"a","type":"probabilistic","param":1}]}`, "named twice"},
		{"unknown field", `{"services":[]}`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseStrategies([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
