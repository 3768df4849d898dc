package model

import (
	"errors"
	"testing"
	"time"
)

func TestRollupID(t *testing.T) {
	base := Rollup{Resolution: time.Minute, WindowStart: 1700000040000000000, Service: "db", Operation: "SELECT", Kind: KindClient,
		Dimensions: []Dimension{{"shard", "7"}}}
	same := base
	same.Count, same.Exemplars = 99, []Exemplar{{Duration: time.Second}}
	if base.ID() != same.ID() {
		t.Error("statistics change the id")
	}
	if got := base.ID(); got[:23] != "1m-1700000040000000000-" || len(got) != 23+16 {
		t.Errorf("id %q", got)
	}
	variants := map[string]func(r *Rollup){
		"resolution": func(r *Rollup) { r.Resolution = time.Hour },
		"window":     func(r *Rollup) { r.WindowStart += Timestamp(time.Minute) },
		"service":    func(r *Rollup) { r.Service = "dbx" },
		"operation":  func(r *Rollup) { r.Operation = "INSERT" },
		"kind":       func(r *Rollup) { r.Kind = KindServer },
		"dimension":  func(r *Rollup) { r.Dimensions = []Dimension{{"shard", "8"}} },
		"no dims":    func(r *Rollup) { r.Dimensions = nil },
		"boundary":   func(r *Rollup) { r.Service, r.Operation = "dbS", "ELECT" },
	}
	for name, change := range variants {
		r := base
		change(&r)
		if r.ID() == base.ID() {
			t.Errorf("%s: same id", name)
		}
	}
}

func TestResolution(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		name string
	}{
		{"1m", time.Minute, "1m"}, {"1h", time.Hour, "1h"}, {"1d", 24 * time.Hour, "1d"}, {"10s", 10 * time.Second, "10s"},
		{"90s", 90 * time.Second, "90s"}, {"1500ms", 1500 * time.Millisecond, "1.5s"}, {"7d", 7 * 24 * time.Hour, "7d"},
	}
	for _, c := range cases {
		got, err := ParseResolution(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseResolution(%q) = %v, %v", c.in, got, err)
		}
		if n := ResolutionName(got); n != c.name {
			t.Errorf("ResolutionName(%v) = %q, want %q", got, n, c.name)
		}
	}
	for _, bad := range []string{"", "0m", "-1h", "xd", "0d", "fast"} {
		if _, err := ParseResolution(bad); err == nil {
			t.Errorf("ParseResolution(%q) accepted", bad)
		}
	}
}

func TestQueryNormalize(t *testing.T) {
	q, err := TraceQuery{}.Normalize()
	if err != nil || q.Limit != DefaultLimit {
		t.Fatalf("defaults: %+v %v", q, err)
	}
	bad := map[string]TraceQuery{
		"negative limit": {Limit: -1},
		"huge limit":     {Limit: MaxLimit + 1},
		"min > max":      {MinDuration: 2, MaxDuration: 1},
		"start > end":    {Start: 2, End: 1},
		"empty tag key":  {Tags: map[string]string{"": "x"}},
		"order":          {Order: 7},
	}
	for name, q := range bad {
		if _, err := q.Normalize(); !errors.Is(err, ErrBadQuery) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if err := CheckPromoted(map[string]string{"shard": "1", "zone": "a"}, DefaultPromotedTags()); !errors.Is(err, ErrBadQuery) {
		t.Errorf("unpromoted tag accepted: %v", err)
	}
	r := Rollup{Dimensions: []Dimension{{"shard", "7"}, {"host", "h"}}}
	if !(RollupQuery{Dimensions: map[string]string{"shard": "7"}}).MatchesDimensions(&r) ||
		(RollupQuery{Dimensions: map[string]string{"shard": "8"}}).MatchesDimensions(&r) {
		t.Error("MatchesDimensions")
	}
}
