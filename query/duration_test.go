package query

import (
	"net/url"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "150ms", want: 150 * time.Millisecond},
		{in: "36h", want: 36 * time.Hour},
		{in: "1d", want: 24 * time.Hour},
		{in: "0d", want: 0},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "-1h", want: -time.Hour},
		{in: "d", bad: true},
		{in: "1.5d", bad: true},
		{in: "-1d", bad: true},
		{in: "1d-1h", bad: true},
		{in: "1dx", bad: true},
		{in: "", bad: true},
		{in: "99999999d", bad: true},
		{in: "73000d2562047h", bad: true},
	} {
		got, err := ParseDuration(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v (bad %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestSinceAndLimitZero: since takes days like retention's --older-than,
// and limit=0 means the default as in the CLI.
func TestSinceAndLimitZero(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	q, err := ParseTraceQuery(url.Values{"since": {"1d"}, "limit": {"0"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := model.TimestampOf(now.Add(-24 * time.Hour)); q.Start != want {
		t.Errorf("start = %v, want %v", q.Start, want)
	}
	if q.Limit != model.DefaultLimit {
		t.Errorf("limit = %d, want the default %d", q.Limit, model.DefaultLimit)
	}
}
