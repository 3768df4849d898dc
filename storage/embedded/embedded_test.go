package embedded

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	closeBench()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, filepath.Join(t.TempDir(), "sub", "tracepipe.db"))
	})
}

// TestSurvivesRestart writes, closes, reopens and reads.
func TestSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tracepipe.db")
	ctx := context.Background()
	s := open(t, path)
	at := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 42}, Start: storagetest.Day0, Shard: "3"})
	if err := s.WriteTraces(ctx, []model.AssembledTrace{at}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	got, err := s.GetTrace(ctx, model.TraceID{Low: 42})
	if err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	want := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 42}, Start: storagetest.Day0, Shard: "3"})
	if !reflect.DeepEqual(got.Trace, want.Trace) {
		t.Errorf("spans differ after reopen")
	}
	res, err := s.FindTraces(ctx, model.TraceQuery{Tags: map[string]string{"shard": "3"}})
	if err != nil || len(res) != 1 {
		t.Fatalf("search after reopen: %v %v", res, err)
	}
}

// TestEdgeRollupsSurviveRestartAndRetention: edge rollups (a retraction
// among them) are read back after a reopen, and retention removes the rows of
// days before the cutoff's day and counts them.
func TestEdgeRollupsSurviveRestartAndRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tracepipe.db")
	ctx := context.Background()
	day := 24 * time.Hour
	edge := func(start model.Timestamp, calls int64) model.EdgeRollup {
		return model.EdgeRollup{Resolution: time.Hour, WindowStart: start, Caller: "api", Callee: "db", Calls: calls}
	}
	edges := []model.EdgeRollup{
		edge(storagetest.Day0.Add(-2*day), 1),
		edge(storagetest.Day0.Add(-2*day+time.Hour), 0), // retraction
		edge(storagetest.Day0.Add(-day), 2),
		edge(storagetest.Day0, 3),
	}
	s := open(t, path)
	if err := s.WriteEdgeRollups(ctx, edges); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	got, err := s.EdgeSeries(ctx, time.Hour, "api", "db", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, edges) {
		t.Fatalf("after reopen:\ngot  %+v\nwant %+v", got, edges)
	}
	rep, err := s.DeleteBefore(ctx, storagetest.Day0.Add(-day+time.Hour).Time())
	if err != nil {
		t.Fatal(err)
	}
	if rep.EdgeRollups != 2 {
		t.Errorf("retention removed %d edge rollups, want 2", rep.EdgeRollups)
	}
	if got, err = s.EdgeSeries(ctx, time.Hour, "api", "db", 0, 0); err != nil || !reflect.DeepEqual(got, edges[2:]) {
		t.Errorf("after retention: %+v %v, want %+v", got, err, edges[2:])
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(context.Background(), Options{}); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "x.db"), PromotedTags: []string{"a", "a"}}); err == nil {
		t.Error("repeated promoted tag accepted")
	}
}

func TestDecompose(t *testing.T) {
	m, h := int64(60e9), int64(3600e9)
	cases := []struct {
		name         string
		lo, hi       int64
		raw, minutes int
		hours        bool
	}{
		{"within a minute", 5, 50, 1, 0, false},
		{"minutes", 30e9, 10*m + 5, 2, 1, false},
		{"hours", 30e9, 3*h + 5*m + 1, 2, 2, true},
		{"aligned", h, 3 * h, 2, 2, true},
	}
	for _, c := range cases {
		raw, minutes, hours := decompose(c.lo, c.hi)
		if len(raw) != c.raw || len(minutes) != c.minutes || (hours != nil) != c.hours {
			t.Errorf("%s: raw %v minutes %v hours %v", c.name, raw, minutes, hours)
		}
		// The pieces tile [lo, hi) exactly.
		covered := int64(0)
		for _, s := range append(append([]span{}, raw...), minutes...) {
			covered += s.hi - s.lo
		}
		if hours != nil {
			covered += hours.hi - hours.lo
		}
		if covered != c.hi-c.lo {
			t.Errorf("%s: pieces cover %d, want %d", c.name, covered, c.hi-c.lo)
		}
	}
}

// TestVersionColumnAdded opens a store created before rollups carried a
// version: the column is added, old rows have version 0, and versioned
// writes replace them and fence older ones.
func TestVersionColumnAdded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tracepipe.db")
	ctx := context.Background()
	s := open(t, path)
	r := model.Rollup{Resolution: time.Minute, WindowStart: model.TimestampOf(time.Unix(1700000040, 0)), Service: "a", Operation: "b", Count: 1}
	if err := s.WriteRollups(ctx, []model.Rollup{r}); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"rollups", "edge_rollups"} {
		if _, err := s.w.ExecContext(ctx, `ALTER TABLE `+table+` DROP COLUMN version`); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	for i, w := range []struct{ count, version int64 }{{2, 10}, {3, 9}} {
		r.Count, r.Version = w.count, w.version
		if err := s.WriteRollups(ctx, []model.Rollup{r}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	got, err := s.RollupSeries(ctx, model.RollupQuery{Service: "a", Operation: "b", Resolution: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Count != 2 {
		t.Errorf("got %+v, want the version-10 write (count 2)", got)
	}
}
