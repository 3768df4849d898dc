package aggregator

import (
	"math"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

func TestWatermarks(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ts := func(sec int64) model.Timestamp { return model.Timestamp(sec * 1e9) }
	const idle, lateness = 10 * time.Second, 5 * time.Second
	type part struct {
		max    model.Timestamp
		ago    time.Duration
		behind bool
	}
	for _, tc := range []struct {
		name  string
		parts []part
		want  model.Timestamp
	}{
		{"none: everything may close", nil, math.MaxInt64},
		{"lowest active partition minus lateness", []part{{ts(100), 0, false}, {ts(50), time.Second, false}}, ts(45)},
		{"idle and caught up: ignored", []part{{ts(100), 0, false}, {ts(50), time.Minute, false}}, ts(95)},
		{"quiet but behind (slow fetch, rewind): holds the watermark", []part{{ts(100), 0, false}, {ts(50), time.Minute, true}}, ts(45)},
		{"a partition without messages yet holds everything back", []part{{ts(100), 0, false}, {math.MinInt64, 0, true}}, math.MinInt64},
		{"all idle", []part{{ts(100), time.Minute, false}, {ts(50), time.Minute, false}}, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &watermarks{parts: map[int]wmPart{}}
			for i, p := range tc.parts {
				w.update(i, p.max, now.Add(-p.ago), p.behind)
			}
			if got := w.get(now, idle, lateness); got != tc.want {
				t.Errorf("watermark %d, want %d", got, tc.want)
			}
		})
	}
}
