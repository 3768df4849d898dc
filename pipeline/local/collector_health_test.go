package local

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type servingStage struct {
	checkStage
	serving *bool
}

func (s servingStage) Healthy() bool { return *s.serving }

// TestHealthCoversServingStages: a stage with only Healthy (the collector:
// no consumer group) is on /healthz too, "not serving" while it is not.
func TestHealthCoversServingStages(t *testing.T) {
	serving := false
	h := metricsHandler(prometheus.NewRegistry(), []namedStage{{"collector", servingStage{serving: &serving}}})
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	if code, body := get(); code != http.StatusServiceUnavailable || body != "collector not serving" {
		t.Errorf("not serving: %d %q", code, body)
	}
	serving = true
	if code, body := get(); code != http.StatusOK || body != "collector ok" {
		t.Errorf("serving: %d %q", code, body)
	}
}

// TestRunHealthNamesEveryStage: `tracepipe run`'s /healthz (here with the
// ingester and the collector; the indexer and aggregator come from Deps)
// answers 200 with a line per stage once each is up.
func TestRunHealthNamesEveryStage(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.MetricsAddr = "127.0.0.1:19474"
	_, stop := start(t, cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	var code int
	var body string
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + cfg.MetricsAddr + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, strings.TrimSpace(string(b))
			if code == http.StatusOK {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != http.StatusOK || body != "ingester ok\ncollector ok" {
		t.Fatalf("/healthz: %d %q, want 200 with a line for the ingester and the collector", code, body)
	}
}

// TestRekeyerLagInTheSharedFamily: tracepipe run's re-key stage prefixes
// its ingester metrics (rekey_) but reports its consumer group in the one
// tracepipe_kafka_* family, labelled stage="rekeyer", beside the ingester,
// so the lag alerts and dashboards see it.
func TestRekeyerLagInTheSharedFamily(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.RekeyTo = "spans-by-trace"
	cfg.MetricsAddr = "127.0.0.1:19475"
	_, stop := start(t, cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	var body string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get("http://" + cfg.MetricsAddr + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = "\n" + string(b) // every series starts a line
		if strings.Contains(body, "\n"+`tracepipe_kafka_group_member{stage="rekeyer"} 1`) && strings.Contains(body, "\n"+`tracepipe_kafka_group_member{stage="ingester"} 1`) {
			break
		}
	}
	for _, want := range []string{`tracepipe_kafka_group_member{stage="rekeyer"} 1`, `tracepipe_kafka_group_member{stage="ingester"} 1`, "rekey_tracepipe_ingester_spans_in_total"} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "rekey_tracepipe_kafka_") {
		t.Errorf("/metrics has rekey_tracepipe_kafka_* series: the re-key stage's group metrics are outside the shared family")
	}
}
