package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// AddTarget makes Prometheus scrape addr (host:port, path /metrics) every
// second, with the given extra target labels, until the test ends: it writes
// a file_sd file into TargetsDir and removes it in t.Cleanup. The file is
// written atomically, so Prometheus never reads half of it. The returned job
// label value is "tracepipe"; the returned name is the file's unique base
// name, also set as the target label "testenv_target" so queries can select
// exactly this target.
func (p PrometheusServer) AddTarget(t testing.TB, addr string, labels map[string]string) string {
	t.Helper()
	name := Name(t, "target")
	all := map[string]string{"testenv_target": name}
	for k, v := range labels {
		all[k] = v
	}
	b, err := json.Marshal([]map[string]any{{"targets": []string{addr}, "labels": all}})
	if err != nil {
		t.Fatalf("testenv: file_sd target: %v", err)
	}
	final := filepath.Join(p.TargetsDir, name+".json")
	tmp := filepath.Join(p.TargetsDir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatalf("testenv: write file_sd target: %v", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		t.Fatalf("testenv: write file_sd target: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(final); err != nil && !os.IsNotExist(err) {
			t.Errorf("testenv: remove file_sd target: %v", err)
		}
	})
	return name
}

// queryClient keeps no idle connections, so tests that check for leaked
// goroutines (goleak) see none of its connection goroutines.
var queryClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// Sample is one element of an instant-query result vector.
type Sample struct {
	Metric map[string]string
	Time   time.Time
	Value  float64
}

// Query runs an instant PromQL query through the HTTP API and returns the
// result vector (empty when nothing matches). Errors are returned, not
// reported, so callers can poll until a scrape has happened.
func (p PrometheusServer) Query(ctx context.Context, expr string) ([]Sample, error) {
	u := p.URL + "/api/v1/query?" + url.Values{"query": {expr}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("prometheus query: %w", err)
	}
	resp, err := queryClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("prometheus query: read: %w", err)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("prometheus query: decode %q: %w", truncate(body, 200), err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus query %q: %s: %s", expr, r.Status, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("prometheus query %q: result type %q, want vector", expr, r.Data.ResultType)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, e := range r.Data.Result {
		ts, ok := e.Value[0].(float64)
		vs, ok2 := e.Value[1].(string)
		if !ok || !ok2 {
			return nil, fmt.Errorf("prometheus query %q: malformed sample %v", expr, e.Value)
		}
		v, err := strconv.ParseFloat(vs, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus query %q: sample value: %w", expr, err)
		}
		sec := int64(ts)
		out = append(out, Sample{Metric: e.Metric, Time: time.Unix(sec, int64((ts-float64(sec))*1e9)), Value: v})
	}
	return out, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
