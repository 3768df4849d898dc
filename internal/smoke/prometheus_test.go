package smoke

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tracepipe/tracepipe/internal/testenv"
)

// promtool runs promtool with args in dir and returns its combined output.
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPromtoolCheckRules(t *testing.T) {
	cases := []struct {
		name    string
		rules   string // file content; empty: testdata/rules.yml
		wantErr bool
		want    string
	}{
		{"valid rules", "", false, "SUCCESS: 2 rules found"},
		{"bad expression", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[1m]\n", true, "parse error"},
		{"duplicate group", "groups:\n- name: g\n  rules: [{record: a, expr: '1'}]\n- name: g\n  rules: [{record: b, expr: '1'}]\n", true, "repeated in the same file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file, err := filepath.Abs("testdata/rules.yml")
			if err != nil {
				t.Fatal(err)
			}
			if c.rules != "" {
				file = filepath.Join(t.TempDir(), "rules.yml")
				if err := os.WriteFile(file, []byte(c.rules), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := promtool(t, ".", "check", "rules", file)
			if (err != nil) != c.wantErr || !strings.Contains(out, c.want) {
				t.Fatalf("promtool check rules: err %v, output:\n%s\nwant error=%v and output containing %q", err, out, c.wantErr, c.want)
			}
		})
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out, err := promtool(t, "testdata", "test", "rules", "rules_test.yml")
	if err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	// The unit test is not vacuous: a wrong expectation fails it.
	b, err := os.ReadFile("testdata/rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(b), "value: 1\n", "value: 2\n", 1)
	if broken == string(b) {
		t.Fatal("testdata/rules_test.yml has no 'value: 1' expectation to break")
	}
	dir := t.TempDir()
	rules, err := os.ReadFile("testdata/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"rules.yml": string(rules), "rules_test.yml": broken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err = promtool(t, dir, "test", "rules", "rules_test.yml")
	if err == nil || !strings.Contains(out, "FAILED") {
		t.Fatalf("promtool test rules with a wrong expectation: err %v\n%s", err, out)
	}
}

// TestPrometheusScrapesFileSDTarget serves a registry on /metrics, registers
// it with the real Prometheus through file_sd and waits until Prometheus's
// query API returns the exact sample.
func TestPrometheusScrapesFileSDTarget(t *testing.T) {
	prom := testenv.Prometheus(t)
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracepipe_smoke_value", Help: "A value the smoke test sets."})
	reg.MustRegister(g)
	want := float64(rand.IntN(1_000_000))
	g.Set(want)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	name := prom.AddTarget(t, strings.TrimPrefix(srv.URL, "http://"), map[string]string{"component": "smoke"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	query := fmt.Sprintf(`tracepipe_smoke_value{job="tracepipe",testenv_target=%q,component="smoke"}`, name)
	var lastErr error
	for {
		got, err := prom.Query(ctx, query)
		if err == nil && len(got) == 1 {
			if got[0].Value != want {
				t.Fatalf("Prometheus has %v, the target serves %v", got[0].Value, want)
			}
			break
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Prometheus at %s never scraped the target (last error: %v)", prom.URL, lastErr)
		case <-time.After(250 * time.Millisecond):
		}
	}
	up, err := prom.Query(ctx, fmt.Sprintf(`up{testenv_target=%q}`, name))
	if err != nil || len(up) != 1 || up[0].Value != 1 {
		t.Fatalf("up = %+v, %v; want one sample of 1", up, err)
	}
}
