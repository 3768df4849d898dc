package local

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/pipeline/kafka"
)

type checkStage struct {
	checks []kafka.Check
}

func (checkStage) Run(context.Context) error { return nil }

type oneCheck struct {
	checkStage
}

func (o oneCheck) Check() kafka.Check { return o.checks[0] }

type manyChecks struct {
	checkStage
}

func (m manyChecks) Checks() []kafka.Check { return m.checks }

// TestHealthCoversEveryStage: /healthz answers for every stage with a
// health check (one Check or several Checks), 503 naming the one that is
// not a group member; stages without checks (the collector) are left out.
func TestHealthCoversEveryStage(t *testing.T) {
	up := func(name string, ok *bool) kafka.Check {
		return kafka.Check{Name: name, Healthy: func() bool { return *ok }}
	}
	yes, reduce := true, true
	stages := []namedStage{
		{"ingester", oneCheck{checkStage{[]kafka.Check{up("ingester", &yes)}}}},
		{"stage-2", manyChecks{checkStage{[]kafka.Check{up("aggregator-map", &yes), up("aggregator-reduce", &reduce)}}}},
		{"collector", checkStage{}},
	}
	h := metricsHandler(prometheus.NewRegistry(), stages)
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 || strings.Count(body, " ok") != 3 {
		t.Errorf("all healthy: %d %q", code, body)
	}
	reduce = false
	if code, body := get(); code != 503 || !strings.Contains(body, "aggregator-reduce not") {
		t.Errorf("reduce down: %d %q", code, body)
	}
}
