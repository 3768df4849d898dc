package aggregator

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/testenv"
)

// TestPrometheusRules runs promtool on deploy/prometheus: the rules parse
// and their unit tests (a slowing operation fires the critical-path alert;
// health alerts) pass.
func TestPrometheusRules(t *testing.T) {
	promtool := testenv.Promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "tracepipe-aggregator-rules.yml"},
		{"test", "rules", "tracepipe-aggregator-rules.test.yml"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = "../../deploy/prometheus"
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestDashboardMetrics checks that the Grafana dashboard and the rules use
// only metric names the aggregator exports.
func TestDashboardMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(testConfig([]string{"127.0.0.1:1"}, "t"), nopStore{}, Options{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	descs := make(chan *prometheus.Desc, 1000)
	for _, c := range newMetrics(prometheus.NewRegistry(), 1).collectors() {
		c.Describe(descs)
	}
	close(descs)
	nameRE := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		if m := nameRE.FindStringSubmatch(d.String()); m != nil {
			known[m[1]] = true
		}
	}
	used := regexp.MustCompile(`tracepipe_aggregator_[a-z_]+`)
	strip := regexp.MustCompile(`_(bucket|sum|count)$`)
	for _, f := range []string{"../../deploy/grafana/tracepipe-aggregator.json", "../../deploy/prometheus/tracepipe-aggregator-rules.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f[len(f)-5:] == ".json" {
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		for _, name := range used.FindAllString(string(b), -1) {
			if !known[name] && !known[strip.ReplaceAllString(name, "")] {
				t.Errorf("%s uses %s, which the aggregator does not export", f, name)
			}
		}
	}
}
