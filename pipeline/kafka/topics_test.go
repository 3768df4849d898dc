package kafka

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
)

// waitThenCreate runs WaitForTopics for a topic that does not exist, creates
// it after a while and checks that the wait returns nil only then, having
// logged that it waited.
func waitThenCreate(t *testing.T, brokers []string, topic string) {
	var out testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	done := make(chan error, 1)
	go func() {
		done <- WaitForTopics(context.Background(), brokers, []string{topic}, TopicWait{Logger: log, Stage: "test", MaxBackoff: 200 * time.Millisecond})
	}()
	select {
	case err := <-done:
		t.Fatalf("WaitForTopics returned %v before the topic existed", err)
	case <-time.After(time.Second):
	}
	kafkatest.CreateTopic(t, brokers, topic, 3)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WaitForTopics did not return after the topic was created")
	}
	got := out.String()
	if n := strings.Count(got, "waiting for topic "+topic+" to exist"); n != 1 {
		t.Errorf("want one waiting line (rate-limited), got %d in:\n%s", n, got)
	}
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, "topics ready") {
		t.Errorf("want a WARN waiting line and a ready line, got:\n%s", got)
	}
}

func TestWaitForTopicsKfake(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	waitThenCreate(t, cl.Brokers, "late")
	// Ready topics return at once, without logging.
	var out testenv.SyncBuffer
	if err := WaitForTopics(context.Background(), cl.Brokers, []string{"late"}, TopicWait{Logger: slog.New(slog.NewTextHandler(&out, nil))}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "" {
		t.Errorf("ready topic logged: %s", out.String())
	}
}

func TestWaitForTopicsRealKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	waitThenCreate(t, brokers, testenv.Name(t, "late"))
}

// TestWaitForTopicsCancel: the wait ends promptly with ctx, naming what was
// missing, whether the broker answers or cannot be reached.
func TestWaitForTopicsCancel(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	for name, brokers := range map[string][]string{"missing topic": cl.Brokers, "no broker": {"127.0.0.1:1"}} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := WaitForTopics(ctx, brokers, []string{"never"}, TopicWait{MaxBackoff: 10 * time.Second})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("want DeadlineExceeded, got %v", err)
			}
			if name == "missing topic" && !strings.Contains(err.Error(), "never does not exist") {
				t.Errorf("error does not say what was missing: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("returned %s after ctx ended", d)
			}
		})
	}
}
