package elasticsearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// jaegerQuery returns the path of an unmodified Jaeger v1 query binary
// (TRACEPIPE_JAEGER_QUERY, built by deploy/local/jaeger-query.sh, which
// scripts/check.sh runs). Without it the test skips, or fails under CI=true.
func jaegerQuery(t *testing.T) string {
	return testenv.JaegerQuery(t)
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// jaegerTrace is the part of Jaeger's UI JSON the test checks.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		StartTime     int64  `json:"startTime"`
		Duration      int64  `json:"duration"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Type  string `json:"type"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// TestJaegerQueryReadsOurIndices runs an unmodified Jaeger Query on the same
// cluster and prefix and fetches tracepipe-written traces by ID, by service
// and operation, and by tag, as the Jaeger UI does.
//
// It does so for Jaeger's default tag layout (every tag nested) and for
// tracepipe's default (well-known keys such as hostname, span.kind and
// error as fields).
func TestJaegerQueryReadsOurIndices(t *testing.T) {
	bin := jaegerQuery(t)
	for _, c := range []struct {
		name string
		o    dbmodel.SpanOptions
	}{
		{"nested-tags", dbmodel.SpanOptions{}},
		{"well-known-tags-as-fields", dbmodel.SpanOptions{WellKnownTagsAsFields: true}},
	} {
		t.Run(c.name, func(t *testing.T) { testJaegerQueryReads(t, bin, c.o) })
	}
}

func testJaegerQueryReads(t *testing.T, bin string, o dbmodel.SpanOptions) {
	esu := esURL(t)
	prefix := testPrefix(t, esu)
	ctx := context.Background()
	s := newTestStore(t, Config{URLs: []string{esu}, IndexPrefix: prefix, Refresh: "wait_for", SpanOptions: o})
	defer s.Close()
	// Jaeger searches only recent indices (--es.max-span-age), so the traces start now.
	now := model.TimestampOf(time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond))
	var ats []model.AssembledTrace
	for i := 1; i <= 3; i++ {
		at := storagetest.Trace(storagetest.Spec{ID: model.TraceID{High: 0xfeed, Low: uint64(i)}, Start: now.Add(time.Duration(i) * time.Second),
			Shard: fmt.Sprint(i), Host: "h1", Error: i == 2, ExtraSpans: 1})
		for _, sp := range at.Trace.Spans { // a well-known process tag, as jaeger-client-go sets it
			sp.Process.Tags = append(sp.Process.Tags, model.String("hostname", fmt.Sprintf("host-%d", i)))
		}
		ats = append(ats, at)
	}
	if err := s.WriteTraces(ctx, ats); err != nil {
		t.Fatal(err)
	}

	httpAddr := freePort(t)
	cmd := exec.Command(bin, "--es.server-urls="+esu, "--es.index-prefix="+prefix,
		"--query.http-server.host-port="+httpAddr, "--query.grpc-server.host-port="+freePort(t), "--admin.http.host-port="+freePort(t))
	cmd.Env = append(os.Environ(), "SPAN_STORAGE_TYPE=elasticsearch")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("jaeger-query output:\n%s", logs.String())
		}
	}()
	get := func(path string, into any) error {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(into)
	}
	var services struct{ Data []string }
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := get("/api/services", &services)
		if err == nil && len(services.Data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger-query did not list services: %v %v", err, services)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Strings(services.Data)
	if strings.Join(services.Data, ",") != "db,frontend,payments" {
		t.Errorf("services = %v", services.Data)
	}
	var ops struct{ Data []string }
	if err := get("/api/services/payments/operations", &ops); err != nil || len(ops.Data) != 2 {
		t.Errorf("operations of payments = %v (%v)", ops.Data, err)
	}

	// By ID: every span, with its references, timing, service and tags.
	want := ats[1]
	var byID struct{ Data []jaegerTrace }
	if err := get("/api/traces/"+want.Trace.TraceID.String(), &byID); err != nil || len(byID.Data) != 1 {
		t.Fatalf("trace by id: %v %+v", err, byID)
	}
	jt := byID.Data[0]
	if jt.TraceID != want.Trace.TraceID.String() || len(jt.Spans) != len(want.Trace.Spans) {
		t.Fatalf("trace %s with %d spans, want %s with %d", jt.TraceID, len(jt.Spans), want.Trace.TraceID, len(want.Trace.Spans))
	}
	bySpan := map[string]*model.Span{}
	for _, sp := range want.Trace.Spans {
		bySpan[sp.SpanID.String()] = sp
	}
	for _, js := range jt.Spans {
		sp := bySpan[js.SpanID]
		if sp == nil {
			t.Errorf("unknown span %s", js.SpanID)
			continue
		}
		if js.OperationName != sp.Operation || js.StartTime != sp.Start.Micros() || js.Duration != int64(sp.Duration/time.Microsecond) ||
			jt.Processes[js.ProcessID].ServiceName != sp.Process.ServiceName {
			t.Errorf("span %s: got %s %d %d %s", js.SpanID, js.OperationName, js.StartTime, js.Duration, jt.Processes[js.ProcessID].ServiceName)
		}
		if p, blocking, ok := sp.ParentSpanID(); ok {
			wantType := "FOLLOWS_FROM"
			if blocking {
				wantType = "CHILD_OF"
			}
			if len(js.References) != 1 || js.References[0].SpanID != p.String() || js.References[0].RefType != wantType {
				t.Errorf("span %s references %+v, want %s of %s", js.SpanID, js.References, wantType, p)
			}
		}
		tags := map[string]string{}
		for _, tg := range js.Tags {
			tags[tg.Key] = fmt.Sprint(tg.Value)
		}
		for _, kv := range sp.Tags {
			if tags[kv.Key] != kv.AsString() {
				t.Errorf("span %s tag %s = %q, want %q", js.SpanID, kv.Key, tags[kv.Key], kv.AsString())
			}
		}
	}

	// By service and operation, and by tag, within a time range.
	find := func(params url.Values) []string {
		params.Set("start", fmt.Sprint(now.Add(-time.Minute).Micros()))
		params.Set("end", fmt.Sprint(now.Add(time.Minute).Micros()))
		params.Set("limit", "20")
		var res struct{ Data []jaegerTrace }
		if err := get("/api/traces?"+params.Encode(), &res); err != nil {
			t.Fatalf("find %v: %v", params, err)
		}
		var ids []string
		for _, tr := range res.Data {
			ids = append(ids, tr.TraceID)
		}
		sort.Strings(ids)
		return ids
	}
	id := func(n uint64) string { return model.TraceID{High: 0xfeed, Low: n}.String() }
	if got := find(url.Values{"service": {"payments"}, "operation": {"charge"}}); strings.Join(got, ",") != strings.Join([]string{id(1), id(2), id(3)}, ",") {
		t.Errorf("by service/operation: %v", got)
	}
	if got := find(url.Values{"service": {"frontend"}, "tags": {`{"shard":"3"}`}}); len(got) != 1 || got[0] != id(3) {
		t.Errorf("by span tag: %v", got)
	}
	if got := find(url.Values{"service": {"db"}, "tags": {`{"host":"h1","error":"true"}`}}); len(got) != 1 || got[0] != id(2) {
		t.Errorf("by process and span tag: %v", got)
	}
	if got := find(url.Values{"service": {"payments"}, "tags": {`{"hostname":"host-3"}`}}); len(got) != 1 || got[0] != id(3) {
		t.Errorf("by a well-known process tag: %v", got)
	}
	if got := find(url.Values{"service": {"db"}, "tags": {`{"hostname":"host-2","error":"true"}`}}); len(got) != 1 || got[0] != id(2) {
		t.Errorf("by well-known process and span tags: %v", got)
	}

	// The System Architecture view: /api/dependencies reads the links
	// written from daily edge rollups; a retracted edge and a 1-minute
	// rollup add none.
	today := model.TimestampOf(time.Now().UTC().Truncate(24 * time.Hour))
	edges := []model.EdgeRollup{
		{Resolution: 24 * time.Hour, WindowStart: today, Caller: "frontend", Callee: "payments", Calls: 3},
		{Resolution: 24 * time.Hour, WindowStart: today, Caller: "payments", Callee: "db", Calls: 5, Errors: 1},
		{Resolution: 24 * time.Hour, WindowStart: today, Caller: "frontend", Callee: "db", Calls: 2},
		{Resolution: time.Minute, WindowStart: now, Caller: "frontend", Callee: "cache", Calls: 9},
	}
	if err := s.WriteEdgeRollups(ctx, edges); err != nil {
		t.Fatal(err)
	}
	// The frontend → db edge went away (its traces were replaced): the
	// reducer rewrites the day with no calls.
	if err := s.WriteEdgeRollups(ctx, []model.EdgeRollup{{Resolution: 24 * time.Hour, WindowStart: today, Caller: "frontend", Callee: "db"}}); err != nil {
		t.Fatal(err)
	}
	var deps struct {
		Data []struct {
			Parent    string `json:"parent"`
			Child     string `json:"child"`
			CallCount int64  `json:"callCount"`
		}
	}
	q := url.Values{"endTs": {fmt.Sprint(time.Now().UnixMilli())}, "lookback": {fmt.Sprint((48 * time.Hour).Milliseconds())}}
	if err := get("/api/dependencies?"+q.Encode(), &deps); err != nil {
		t.Fatalf("dependencies: %v", err)
	}
	var links []string
	for _, d := range deps.Data {
		links = append(links, fmt.Sprintf("%s->%s:%d", d.Parent, d.Child, d.CallCount))
	}
	sort.Strings(links)
	if got, want := strings.Join(links, " "), "frontend->payments:3 payments->db:5"; got != want {
		t.Errorf("jaeger dependencies = %q, want %q", got, want)
	}
}
