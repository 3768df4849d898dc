package storagetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

func testServices(t *testing.T, s storage.Store) {
	got, truncated, err := s.Services(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 || truncated {
		t.Errorf("empty store: services %+v, truncated %v; want none", got, truncated)
	}
	write(t, s,
		Trace(Spec{ID: tid(1), Start: Day0, Backend: "payments", ExtraSpans: 1}),
		Trace(Spec{ID: tid(2), Start: Day0.Add(25 * time.Hour), Backend: "billing"}), // another day (index)
		Trace(Spec{ID: tid(3), Start: Day0.Add(time.Minute), Backend: "payments"}),
	)
	got, truncated, err = s.Services(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []model.ServiceOperations{
		{Service: "billing", Operations: []string{"charge"}},
		{Service: "db", Operations: []string{"SELECT"}},
		{Service: "frontend", Operations: []string{"GET /checkout"}},
		{Service: "payments", Operations: []string{"charge", "validate"}},
	}
	if !reflect.DeepEqual(got, want) || truncated {
		t.Errorf("services:\ngot  %+v (truncated %v)\nwant %+v", got, truncated, want)
	}
}

func testEdgeRollups(t *testing.T, s storage.Store) {
	var es []model.EdgeRollup
	for w := 3; w >= -2; w-- { // windows -2 and -1 are on the day before Day0
		es = append(es, edge(time.Minute, w, "api", "db", int64(10+w)))
		es = append(es, edge(time.Minute, w, "frontend", "api", int64(50+w)))
	}
	es = append(es, edge(time.Minute, 1, "api", "cache", 0)) // a retraction
	es = append(es, edge(time.Hour, 0, "api", "db", 999))
	if err := s.WriteEdgeRollups(ctx(t), es); err != nil {
		t.Fatal(err)
	}
	at := func(w int) model.Timestamp { return Day0.Add(time.Duration(w) * time.Minute) }
	series := func(caller, callee string, base int64, from, to int) []model.EdgeRollup {
		var out []model.EdgeRollup
		for w := from; w < to; w++ {
			out = append(out, edge(time.Minute, w, caller, callee, base+int64(w)))
		}
		return out
	}
	cat := func(parts ...[]model.EdgeRollup) []model.EdgeRollup {
		var out []model.EdgeRollup
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name       string
		res        time.Duration
		start, end model.Timestamp
		limit      int
		want       []model.EdgeRollup
	}{
		{"range", time.Minute, at(0), at(2), 100, cat(series("api", "cache", 0, 1, 1), []model.EdgeRollup{edge(time.Minute, 1, "api", "cache", 0)},
			series("api", "db", 10, 0, 2), series("frontend", "api", 50, 0, 2))},
		{"across days", time.Minute, at(-2), at(0), 100, cat(series("api", "db", 10, -2, 0), series("frontend", "api", 50, -2, 0))},
		{"unbounded, limited", time.Minute, 0, 0, 3, []model.EdgeRollup{edge(time.Minute, 1, "api", "cache", 0), edge(time.Minute, -2, "api", "db", 8), edge(time.Minute, -1, "api", "db", 9)}},
		{"hour", time.Hour, 0, 0, 100, []model.EdgeRollup{edge(time.Hour, 0, "api", "db", 999)}},
		{"empty", 24 * time.Hour, 0, 0, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.EdgeRollups(ctx(t), tt.res, tt.start, tt.end, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("edges:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []struct {
		name       string
		res        time.Duration
		start, end model.Timestamp
		limit      int
	}{
		{"zero resolution", 0, 0, 0, 10},
		{"start after end", time.Minute, at(2), at(1), 10},
		{"zero limit", time.Minute, 0, 0, 0},
		{"limit too large", time.Minute, 0, 0, model.MaxLimit + 1},
	} {
		if _, err := s.EdgeRollups(ctx(t), bad.res, bad.start, bad.end, bad.limit); !errors.Is(err, model.ErrBadQuery) {
			t.Errorf("%s: err = %v, want ErrBadQuery", bad.name, err)
		}
	}
}
