package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// queryStore writes traces 1..4 (trace i lasts i*10ms, shard i%2), a
// rollup and two 1m edge rollups frontend → db (Day0: 3 calls, 1 error,
// slowest trace 4; Day0+1m: a retraction), and returns the store's path.
func queryStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tracepipe.db")
	s, err := embedded.Open(context.Background(), embedded.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ats []model.AssembledTrace
	for i := 1; i <= 4; i++ {
		ats = append(ats, storagetest.Trace(storagetest.Spec{
			ID: model.TraceID{Low: uint64(i)}, Start: storagetest.Day0.Add(time.Duration(i) * time.Minute),
			Duration: time.Duration(i) * 10 * time.Millisecond, Shard: []string{"0", "1"}[i%2], Error: i == 4,
		}))
	}
	if err := s.WriteTraces(context.Background(), ats); err != nil {
		t.Fatal(err)
	}
	r := model.Rollup{Resolution: time.Minute, WindowStart: storagetest.Day0, Service: "db", Operation: "SELECT", Count: 7,
		Duration: model.Distribution{Quantiles: model.Quantiles{P50: time.Millisecond, P99: 9 * time.Millisecond}}}
	if err := s.WriteRollups(context.Background(), []model.Rollup{r}); err != nil {
		t.Fatal(err)
	}
	edges := []model.EdgeRollup{
		{Resolution: time.Minute, WindowStart: storagetest.Day0, Caller: "frontend", Callee: "db", Calls: 3, Errors: 1,
			Latency:   model.Distribution{Quantiles: model.Quantiles{P50: time.Millisecond, P99: 7 * time.Millisecond}},
			Exemplars: []model.Exemplar{{TraceID: model.TraceID{Low: 4}, Duration: 7 * time.Millisecond, Start: storagetest.Day0}}},
		{Resolution: time.Minute, WindowStart: storagetest.Day0.Add(time.Minute), Caller: "frontend", Callee: "db"},
	}
	if err := s.WriteEdgeRollups(context.Background(), edges); err != nil {
		t.Fatal(err)
	}
	return path
}

func runQ(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := runQuery(context.Background(), args, &out, &errb)
	return out.String() + errb.String(), err
}

func TestQueryCLI(t *testing.T) {
	t.Setenv("TRACEPIPE_ES_URL", "")
	path := queryStore(t)
	id := func(n uint64) string { return model.TraceID{Low: n}.String() }
	cases := []struct {
		name  string
		args  []string
		usage bool     // want an errUsage error
		fail  string   // want another error containing this
		want  []string // output contains
	}{
		{"trace text", []string{"trace", "--store", path, id(4)}, false, "", []string{"trace " + id(4), "bottleneck: payments charge (20ms on the critical path, 50% of the trace)", "critical path:", "clock-skew-adjusted", "ERROR"}},
		{"trace json", []string{"trace", "--store", path, "--format", "json", id(2)}, false, "", []string{`"traceID": "` + id(2) + `"`, `"criticalPath"`}},
		{"trace not found", []string{"trace", "--store", path, "ffff"}, false, "trace ffff not found", nil},
		{"trace bad id", []string{"trace", "--store", path, "xyz"}, true, "", nil},
		{"trace without id", []string{"trace", "--store", path}, true, "", nil},
		{"trace with two ids", []string{"trace", "--store", path, id(1), id(2)}, true, "", nil},
		{"flags after the id", []string{"trace", id(1), "--store", path, "--format", "json"}, false, "", []string{`"traceID": "` + id(1) + `"`}},
		{"stray argument", []string{"slowest", "--store", path, "extra"}, true, "", nil},
		{"slowest", []string{"slowest", "--store", path, "--limit", "2"}, false, "", []string{"TRACE", id(4), id(3), "40ms"}},
		{"search by tag", []string{"search", "--store", path, "--tag", "shard=1", "--min-duration", "15ms"}, false, "", []string{id(3), "shard=1"}},
		{"search json", []string{"search", "--store", path, "--format", "json", "--tag", "shard=0", "--order", "newest"}, false, "", []string{`"traces"`, id(4), id(2)}},
		{"search no match", []string{"search", "--store", path, "--service", "nope"}, false, "", []string{"no traces match"}},
		{"search unpromoted tag", []string{"search", "--store", path, "--tag", "color=red"}, true, "", nil},
		{"bad limit", []string{"slowest", "--store", path, "--limit", "-3"}, true, "", nil},
		{"since and start", []string{"slowest", "--store", path, "--since", "1h", "--start", "2026-03-10"}, true, "", nil},
		{"bottlenecks", []string{"bottlenecks", "--store", path, "--start", "2026-03-10", "--end", "2026-03-11"}, false, "", []string{"RANK", "payments", "charge", "50%"}},
		{"rollups", []string{"rollups", "--store", path, "--service", "db", "--operation", "SELECT", "--start", "2026-03-10"}, false, "", []string{"2026-03-10 00:00", "1m", "9ms"}},
		{"rollups without operation", []string{"rollups", "--store", path, "--service", "db"}, true, "", nil},
		{"edges", []string{"edges", "--store", path, "--caller", "frontend", "--callee", "db", "--start", "2026-03-10"}, false, "",
			[]string{"WINDOW (UTC)      CALLS  ERRORS  ERROR %  P50  P99  SLOWEST", "2026-03-10 00:00  3      1       33.3%    1ms  7ms  " + id(4), "2026-03-10 00:01  0      0       -"}},
		{"edges json", []string{"edges", "--store", path, "--caller", "frontend", "--callee", "db", "--end", "2026-03-10T00:01:00Z", "--format", "json"}, false, "",
			[]string{`"edges": [`, `"windowStart": "2026-03-10T00:00:00Z"`, `"calls": 3`, `"p99Nanos": 7000000`, `"traceID": "` + id(4) + `"`}},
		{"edges other resolution", []string{"edges", "--store", path, "--caller", "frontend", "--callee", "db", "--resolution", "1h"}, false, "", []string{"no edge rollups in range"}},
		{"edges without callee", []string{"edges", "--store", path, "--caller", "frontend"}, true, "", nil},
		{"edges bad resolution", []string{"edges", "--store", path, "--caller", "frontend", "--callee", "db", "--resolution", "soon"}, true, "", nil},
		{"edges start after end", []string{"edges", "--store", path, "--caller", "frontend", "--callee", "db", "--start", "2026-03-11", "--end", "2026-03-10"}, true, "", nil},
		{"edges since and start", []string{"edges", "--store", path, "--caller", "frontend", "--callee", "db", "--since", "1h", "--start", "2026-03-10"}, true, "", nil},
		{"edges stray argument", []string{"edges", "--store", path, "--caller", "frontend", "--callee", "db", "extra"}, true, "", nil},
		{"unknown flag", []string{"slowest", "--store", path, "--colour"}, true, "", nil},
		{"unknown command", []string{"fastest"}, true, "", nil},
		{"bad format", []string{"slowest", "--store", path, "--format", "xml"}, true, "", nil},
		{"missing store", []string{"slowest", "--store", filepath.Join(t.TempDir(), "none.db")}, false, "no embedded store", nil},
		{"retention needs age", []string{"retention", "--store", path}, true, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := runQ(t, c.args...)
			switch {
			case c.usage:
				if !errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want a usage error; output:\n%s", err, out)
				}
				return
			case c.fail != "":
				if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.fail) {
					t.Fatalf("err = %v, want one containing %q", err, c.fail)
				}
				return
			case err != nil:
				t.Fatalf("err = %v; output:\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(strings.Join(c.args, " "), "json") {
				var v any
				if err := json.Unmarshal([]byte(out), &v); err != nil {
					t.Errorf("not JSON: %v", err)
				}
			}
		})
	}
}

func TestQueryRetentionCLI(t *testing.T) {
	path := queryStore(t)
	out, err := runQ(t, "retention", "--store", path, "--older-than", "0d", "--yes")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "4 traces, 1 rollups, 2 edge rollups") {
		t.Errorf("output: %s", out)
	}
	if out, _ = runQ(t, "slowest", "--store", path); !strings.Contains(out, "no traces match") {
		t.Errorf("after retention: %s", out)
	}
}

func TestQueryServe(t *testing.T) {
	path := queryStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runQuery(ctx, []string{"serve", "--store", path, "--listen", "127.0.0.1:0"}, &out, io.Discard)
	}()
	re := regexp.MustCompile(`url=(http://\S+)/api/v1/traces`)
	var base string
	for i := 0; i < 500 && base == ""; i++ {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if base == "" {
		cancel()
		t.Fatalf("server did not start: %s (%v)", out.String(), <-done)
	}
	resp, err := http.Get(base + "/api/v1/traces/" + model.TraceID{Low: 3}.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"spans"`)) {
		t.Errorf("GET trace: %d %s", resp.StatusCode, body)
	}
	if resp, err = http.Get(base + "/api/v1/edges?caller=frontend&callee=db"); err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"calls": 3`)) {
		t.Errorf("GET edges: %d %s", resp.StatusCode, body)
	}
	// The web UI beside the API.
	for path, want := range map[string]string{"/?range=all": "GET /checkout", "/api/v1/services": `"service": "frontend"`, "/services": "frontend"} {
		if resp, err = http.Get(base + path); err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET %s: %d, want 200 with %q: %s", path, resp.StatusCode, want, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve returned %v", err)
	}
}
