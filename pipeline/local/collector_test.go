package local

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/collector"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// TestRunCollector: spans posted to the built-in collector (OTLP/HTTP)
// come out of the ingester as complete traces.
func TestRunCollector(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan collector.Addrs, 1)
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{Collector: func(a collector.Addrs) { addrs <- a }}, func(b []string) { ready <- b })
	}()
	var brokers []string
	select {
	case brokers = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("Run did not become ready")
	}
	a := <-addrs
	if a.OTLPHTTP == "" || a.JaegerCompactUDP == "" || a.OTLPGRPC == "" {
		t.Errorf("collector addresses missing: %+v", a)
	}

	w := tracegen.Generate(tracegen.Config{Seed: 5, Traces: 20})
	want := map[model.TraceID]int{}
	for _, s := range w.Order() {
		want[s.TraceID]++
	}
	body, err := wire.EncodeOTLPProto(w.Order())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+a.OTLPHTTP+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/traces: %s", resp.Status)
	}
	got := readTraces(t, brokers, cfg.Ingest.TracesTopic, cfg.Partitions, want, 60*time.Second)
	for id, n := range want {
		if tr := got[id]; tr == nil || len(tr.Trace.Spans) != n {
			t.Errorf("trace %s: not emitted complete (%d spans wanted)", id, n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
