package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"))
}

// TestHelpAndBadFlags: --help lists the flags with their environment
// variables (and the --traces-topic alias); a bad value is refused with
// every problem named.
func TestHelpAndBadFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"-traces-topic", "-topic", "TRACEPIPE_BATCH_SIZE", "-es-url", "-kafka-brokers"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	err := run(context.Background(), []string{"--batch-size=0", "--batch-wait=0"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "batch-size") || !strings.Contains(err.Error(), "batch-wait") {
		t.Errorf("bad flags: %v", err)
	}
}

// TestServesHealthAndLag: the binary joins its group on a (fake) cluster,
// commits past what it read, and serves /healthz 200 and the shared lag
// metrics labelled stage="indexer"; cancelled, it stops cleanly.
func TestServesHealthAndLag(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "traces", 1)
	c.Produce(t, "traces", kafka.Message{Value: []byte{0xff, 0x01}}) // undecodable: counted, committed past
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	var log testenv.SyncBuffer
	go func() {
		done <- run(ctx, []string{"--kafka-brokers=" + strings.Join(c.Brokers, ","), "--traces-topic=traces", "--group=ix",
			"--session-timeout=6s", "--store=" + filepath.Join(t.TempDir(), "t.db"), "--metrics-addr=127.0.0.1:0"}, &log, func(a string) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, log.String())
	case <-time.After(20 * time.Second):
		t.Fatal("no metrics server")
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, health := get("/healthz")
		_, metrics := get("/metrics")
		if code == 200 && strings.Contains(metrics, `tracepipe_kafka_consumer_lag{partition="0",stage="indexer",topic="traces"} 0`) &&
			c.Committed(t, "ix", "traces", 1)[0] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz %d %q; commits %v; metrics:\n%s\nlog:\n%s", code, health, c.Committed(t, "ix", "traces", 1), grep(metrics, "tracepipe_kafka_"), log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop")
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
