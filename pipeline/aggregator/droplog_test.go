package aggregator

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
)

// TestDropsAreLogged: traces the map stage drops as too late are counted
// and logged with the reason, at most once per interval per reason (before:
// only counted).
func TestDropsAreLogged(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	m := newMetrics(prometheus.NewRegistry(), 100)
	m.drops = ratelog.New(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute, func() time.Time { return now })
	prev := rollup.PartitionCounters{Dropped: map[string]int64{}}
	for i, n := range []int64{3, 5, 9} {
		now = time.Unix(0, 0).Add([]time.Duration{0, 30 * time.Second, 70 * time.Second}[i])
		cur := rollup.PartitionCounters{Dropped: map[string]int64{"too-late": n}}
		m.partitionCounters(&prev, &cur)
		prev = cur
	}
	if got := testutil.ToFloat64(m.dropped.WithLabelValues("map", "too-late")); got != 9 {
		t.Errorf("dropped{map,too-late} = %v, want 9", got)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "reason=map/too-late") || !strings.Contains(lines[0], "count=3") ||
		!strings.Contains(lines[0], "max-lateness") || !strings.Contains(lines[1], "suppressed=1") {
		t.Errorf("log lines:\n%s", buf.String())
	}
}
