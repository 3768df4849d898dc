package elasticsearch

import (
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

func TestDayIndexMatchesIndexNames(t *testing.T) {
	x := newIndices("p")
	d := dayIndex{x: x}
	day := model.Timestamp(24 * time.Hour)
	for _, ts := range []model.Timestamp{0, 1, day - 1, day, day + 1, day - 1, -1, -day, -day - 1, -day + 1, 1700000000123456789, 1700000000123456789 + day, 0} {
		span, service := d.of(ts)
		if span != x.span(ts) || service != x.service(ts) {
			t.Errorf("%d: %s %s, want %s %s", ts, span, service, x.span(ts), x.service(ts))
		}
	}
}
