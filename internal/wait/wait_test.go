package wait

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("a sleep without cancellation reported false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t0 := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Error("a sleep on a done context reported true")
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("a sleep on a done context took %v", d)
	}
}
