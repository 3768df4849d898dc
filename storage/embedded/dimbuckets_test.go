package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// dimCorpus writes synthetic traces over three hours around a UTC midnight,
// then new versions of a third of them moved to another hour with other
// spans (so other services and tag values; some twice in one transaction,
// some followed by an older version that loses), and returns the stored
// set.
func dimCorpus(t *testing.T, s *Store) map[model.TraceID]model.AssembledTrace {
	t.Helper()
	ctx := context.Background()
	day := storagetest.Day0
	bases := []model.Timestamp{day.Add(-time.Hour), day, day.Add(time.Hour)}
	all := map[model.TraceID]model.AssembledTrace{}
	var batch []model.AssembledTrace
	for i := 0; i < 300; i++ {
		at := storagetest.Synthetic(i, 3+i%7, bases[i%3])
		batch = append(batch, at)
		all[at.Trace.TraceID] = at
	}
	if err := s.WriteTraces(ctx, batch); err != nil {
		t.Fatal(err)
	}
	batch = batch[:0]
	for i := 0; i < 300; i += 3 {
		at := storagetest.Synthetic(i, 2+i%5, bases[(i+1)%3])
		at.Version = 2
		batch = append(batch, at)
		all[at.Trace.TraceID] = at
		if i%9 == 0 { // a third version in the same transaction
			at := storagetest.Synthetic(i, 4, bases[(i+2)%3])
			at.Version = 3
			batch = append(batch, at)
			all[at.Trace.TraceID] = at
		}
		if i%15 == 0 { // an older version after a newer one: skipped
			old := storagetest.Synthetic(i, 6, bases[0])
			old.Version = 1
			batch = append(batch, old)
		}
		if len(batch) == 17 { // several transactions
			if err := s.WriteTraces(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.WriteTraces(ctx, batch); err != nil {
		t.Fatal(err)
	}
	return all
}

// wantBottlenecks ranks the operations of the traces that started in
// [start, end) (zero: unbounded) and match the service or tag value.
func wantBottlenecks(all map[model.TraceID]model.AssembledTrace, q model.BottleneckQuery) []model.BottleneckRow {
	rows := map[model.OperationKey]*model.BottleneckRow{}
	var total time.Duration
	for _, at := range all {
		sum := storage.Summarize(&at, model.DefaultPromotedTags())
		if (q.Start != 0 && sum.Start < q.Start) || (q.End != 0 && sum.Start >= q.End) {
			continue
		}
		match := true
		if q.Service != "" {
			match = false
			for _, o := range sum.Operations {
				match = match || o.Service == q.Service
			}
		}
		for k, v := range q.Tags {
			has := false
			for _, x := range sum.PromotedTags[k] {
				has = has || x == v
			}
			match = match && has
		}
		if !match {
			continue
		}
		total += sum.Duration
		for _, o := range sum.Operations {
			r := rows[o.OperationKey]
			if r == nil {
				r = &model.BottleneckRow{OperationKey: o.OperationKey}
				rows[o.OperationKey] = r
			}
			r.Traces++
			r.Count += o.Count
			r.Errors += o.Errors
			r.Duration += o.Duration
			r.Self += o.Self
			r.CriticalPath += o.CriticalPath
		}
	}
	var out []model.BottleneckRow
	for _, r := range rows {
		out = append(out, *r)
	}
	return storage.RankBottlenecks(out, total, q.Limit)
}

func checkDimBottlenecks(t *testing.T, s *Store, all map[model.TraceID]model.AssembledTrace) {
	t.Helper()
	day := storagetest.Day0
	ranges := [][2]model.Timestamp{
		{0, 0},
		{day.Add(-time.Hour), day.Add(2 * time.Hour)},                                        // whole hours
		{day.Add(-37*time.Minute - 3*time.Second), day.Add(83*time.Minute + 11)},             // edges, minutes, hours
		{day.Add(12*time.Minute + 30*time.Second), day.Add(12*time.Minute + 50*time.Second)}, // within a minute
		{day.Add(5 * time.Minute), day.Add(50 * time.Minute)},                                // whole minutes
		{day.Add(30 * time.Minute), 0},
		{0, day.Add(30 * time.Minute)},
	}
	filters := []model.BottleneckQuery{
		{Service: "service-3"}, {Service: "service-9"}, {Service: "nope"},
		{Tags: map[string]string{"shard": "7"}}, {Tags: map[string]string{"client": "client-2"}},
		{Tags: map[string]string{"host": "host-11"}}, {Tags: map[string]string{"http.status_code": "500"}},
		{Tags: map[string]string{"shard": "nope"}},
		{Service: "service-1", Tags: map[string]string{"shard": "3"}}, // answered from the trace rows
	}
	for _, r := range ranges {
		for _, f := range filters {
			q := f
			q.Start, q.End, q.Limit = r[0], r[1], 100
			got, err := s.TopBottlenecks(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			want := wantBottlenecks(all, q)
			if len(got) == 0 && len(want) == 0 {
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%+v:\ngot  %+v\nwant %+v", q, got, want)
			}
		}
	}
}

// TestDimBuckets: bottlenecks by service and by tag value from dim_buckets
// equal the sums over the stored traces, for ranges cut into edges,
// minutes and hours, after versions moved traces between buckets.
func TestDimBuckets(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db"))
	defer s.Close()
	checkDimBottlenecks(t, s, dimCorpus(t, s))
}

// TestDimBucketsBuiltForOldStore: a store written before dim_buckets
// existed gets them built at Open.
func TestDimBucketsBuiltForOldStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s := open(t, path)
	all := dimCorpus(t, s)
	s.Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE dim_buckets`, `DELETE FROM meta WHERE key = 'dim_buckets'`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s = open(t, path)
	defer s.Close()
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM dim_buckets`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("dim_buckets rows after the upgrade: %d, %v", n, err)
	}
	checkDimBottlenecks(t, s, all)
}

// TestDimBucketsRebuiltForOtherLayout: buckets of another layout (here
// junk rows under an older layout marker) are replaced at Open.
func TestDimBucketsRebuiltForOtherLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s := open(t, path)
	all := dimCorpus(t, s)
	s.Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE meta SET value = '1m,1h' WHERE key = 'dim_buckets'`,
		`INSERT INTO dim_buckets VALUES ('service', '', 'service-3', 60000000000, 29500000, 5, 5, x'01')`,
		`UPDATE dim_buckets SET duration = duration + 1`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s = open(t, path)
	defer s.Close()
	var layout string
	if err := s.r.QueryRow(`SELECT value FROM meta WHERE key = 'dim_buckets'`).Scan(&layout); err != nil || layout != dimBucketsLayout {
		t.Fatalf("layout after Open: %q, %v", layout, err)
	}
	checkDimBottlenecks(t, s, all)
}

// TestDimBucketsRetention: retention removes the dim buckets of the days
// before the cutoff's day with their traces, and the rest still add up.
func TestDimBucketsRetention(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db"))
	defer s.Close()
	all := dimCorpus(t, s)
	if _, err := s.DeleteBefore(context.Background(), storagetest.Day0.Time()); err != nil {
		t.Fatal(err)
	}
	for id, at := range all {
		if at.Analysis.Start < storagetest.Day0 {
			delete(all, id)
		}
	}
	var n int
	for _, w := range dimBucketWidths {
		var k int
		if err := s.r.QueryRow(`SELECT count(*) FROM dim_buckets WHERE width = ? AND bucket < ?`, w, int64(storagetest.Day0)/w).Scan(&k); err != nil {
			t.Fatal(err)
		}
		n += k
	}
	if n != 0 {
		t.Errorf("%d dim buckets of the day before the cutoff left", n)
	}
	checkDimBottlenecks(t, s, all)
}

func TestDimOpsRoundTrip(t *testing.T) {
	ops := []dimOp{
		{model.OperationKey{Service: "a", Operation: "GET /x"}, opSums{1, 2, 0, 300, 100, 50}},
		{model.OperationKey{Service: "<b>", Operation: ""}, opSums{7, 1 << 40, 3, -1, 0, 1 << 62}},
	}
	got, err := decodeDimOps(encodeDimOps(nil, ops), nil)
	if err != nil || !reflect.DeepEqual(got, ops) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if got, err := decodeDimOps(encodeDimOps(nil, nil), nil); err != nil || len(got) != 0 {
		t.Fatalf("empty: %+v, %v", got, err)
	}
	for _, b := range [][]byte{nil, {0}, {2, 0}, {1}, {1, 1}, {1, 1, 5, 'a'}, append(encodeDimOps(nil, ops), 0)} {
		if _, err := decodeDimOps(b, nil); err == nil {
			t.Errorf("%q decoded without error", b)
		}
	}
}

// FuzzDecodeDimOps: any blob decodes or fails without panicking, and what
// decodes encodes back to the same bytes.
func FuzzDecodeDimOps(f *testing.F) {
	f.Add(encodeDimOps(nil, []dimOp{{model.OperationKey{Service: "s", Operation: "o"}, opSums{1, 2, 3, 4, 5, 6}}}))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 200, 200, 200, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ops, err := decodeDimOps(b, nil)
		if err != nil {
			return
		}
		if again := encodeDimOps(nil, ops); string(again) != string(b) {
			// Varints have one shortest form; longer forms are accepted
			// by binary.Uvarint, so compare the decoded values instead.
			back, err := decodeDimOps(again, nil)
			if err != nil || fmt.Sprint(back) != fmt.Sprint(ops) {
				t.Fatalf("re-encoding changed %+v to %+v (%v)", ops, back, err)
			}
		}
	})
}
