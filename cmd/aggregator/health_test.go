package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"))
}

// TestHealthCoversEveryStage: the aggregator binary's /healthz answers for
// each stage it runs — the map and reduce groups and the indexer it runs
// beside them by default — with a line each.
func TestHealthCoversEveryStage(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "traces", 2)
	c.CreateTopic(t, "partials", 2)
	const addr = "127.0.0.1:19483"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var log testenv.SyncBuffer
	go func() {
		done <- run(ctx, []string{"--kafka-brokers=" + strings.Join(c.Brokers, ","), "--traces-topic=traces",
			"--partials-topic=partials", "--partials-partitions=2", "--group=agg", "--reduce-group=red", "--index-group=ix",
			"--session-timeout=6s", "--store=" + filepath.Join(t.TempDir(), "t.db"), "--metrics-addr=" + addr}, &log)
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	var code int
	var body string
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if code, body = resp.StatusCode, strings.TrimSpace(string(b)); code == http.StatusOK {
			break
		}
	}
	if want := "aggregator-map ok\naggregator-reduce ok\nindexer ok"; code != http.StatusOK || body != want {
		t.Errorf("/healthz: %d %q, want 200 %q\nlog:\n%s", code, body, want, log.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("did not stop")
	}
}
