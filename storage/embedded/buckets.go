package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Bottleneck pre-aggregates.
//
// Ranking operations over a range by summing every trace's per-operation
// totals costs a row per (trace, operation): about a second for a million
// spans. So each write also keeps per-minute and per-hour sums of those
// totals (op_buckets) and of trace durations (trace_buckets), keyed by the
// trace's start. A replaced trace version subtracts its old contribution in
// the same transaction, so the sums always equal the stored summaries.
// TopBottlenecks without a service filter answers the whole hours of its
// range from hour buckets, the whole minutes around them from minute
// buckets, and only the partial minutes at either end from the trace rows:
// exact for any range, at a cost bounded by the range's length in hours.
const bucketSchema = `
CREATE TABLE IF NOT EXISTS op_buckets (
	width         INTEGER NOT NULL,
	bucket        INTEGER NOT NULL,
	service       TEXT NOT NULL,
	operation     TEXT NOT NULL,
	traces        INTEGER NOT NULL,
	count         INTEGER NOT NULL,
	errors        INTEGER NOT NULL,
	duration      INTEGER NOT NULL,
	self          INTEGER NOT NULL,
	critical_path INTEGER NOT NULL,
	PRIMARY KEY (width, bucket, service, operation)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trace_buckets (
	width    INTEGER NOT NULL,
	bucket   INTEGER NOT NULL,
	traces   INTEGER NOT NULL,
	duration INTEGER NOT NULL,
	PRIMARY KEY (width, bucket)
) WITHOUT ROWID;
`

var bucketWidths = [...]int64{int64(time.Minute), int64(time.Hour)}

type opBucketKey struct {
	width, bucket      int64
	service, operation string
}

type opSums struct{ traces, count, errors, duration, self, cp int64 }

type traceSums struct{ traces, duration int64 }

// deltas accumulates a write transaction's changes to the buckets.
type deltas struct {
	ops    map[opBucketKey]*opSums
	traces map[[2]int64]*traceSums
}

func newDeltas() *deltas {
	return &deltas{ops: map[opBucketKey]*opSums{}, traces: map[[2]int64]*traceSums{}}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// add adds (sign=1) or removes (sign=-1) one trace's contribution.
func (d *deltas) add(sign int64, start, duration int64, ops []model.OperationSummary) {
	for _, w := range bucketWidths {
		b := floorDiv(start, w)
		t := d.traces[[2]int64{w, b}]
		if t == nil {
			t = &traceSums{}
			d.traces[[2]int64{w, b}] = t
		}
		t.traces += sign
		t.duration += sign * duration
		for _, o := range ops {
			k := opBucketKey{w, b, o.Service, o.Operation}
			s := d.ops[k]
			if s == nil {
				s = &opSums{}
				d.ops[k] = s
			}
			s.traces += sign
			s.count += sign * int64(o.Count)
			s.errors += sign * int64(o.Errors)
			s.duration += sign * int64(o.Duration)
			s.self += sign * int64(o.Self)
			s.cp += sign * int64(o.CriticalPath)
		}
	}
}

// storedOps reads a stored trace's start, duration and operation totals
// (ok=false when the trace is not stored).
func storedOps(ctx context.Context, tx *sql.Tx, id string) (start, duration int64, ops []model.OperationSummary, ok bool, err error) {
	err = tx.QueryRowContext(ctx, `SELECT start, duration FROM traces WHERE trace_id = ?`, id).Scan(&start, &duration)
	if err == sql.ErrNoRows {
		return 0, 0, nil, false, nil
	}
	if err != nil {
		return 0, 0, nil, false, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT service, operation, count, errors, duration, self, critical_path FROM trace_ops WHERE trace_id = ?`, id)
	if err != nil {
		return 0, 0, nil, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var o model.OperationSummary
		var dur, self, cp int64
		if err := rows.Scan(&o.Service, &o.Operation, &o.Count, &o.Errors, &dur, &self, &cp); err != nil {
			return 0, 0, nil, false, err
		}
		o.Duration, o.Self, o.CriticalPath = time.Duration(dur), time.Duration(self), time.Duration(cp)
		ops = append(ops, o)
	}
	return start, duration, ops, true, rows.Err()
}

// flush applies the deltas and drops buckets that became empty.
func (d *deltas) flush(ctx context.Context, tx *sql.Tx) error {
	const chunk = maxVars / 10
	var args []any
	var emptied []opBucketKey
	n := 0
	exec := func() error {
		if n == 0 {
			return nil
		}
		q := `INSERT INTO op_buckets (width, bucket, service, operation, traces, count, errors, duration, self, critical_path) VALUES ` +
			placeholders(n, 10) + ` ON CONFLICT DO UPDATE SET traces=traces+excluded.traces, count=count+excluded.count,
			errors=errors+excluded.errors, duration=duration+excluded.duration, self=self+excluded.self,
			critical_path=critical_path+excluded.critical_path`
		_, err := tx.ExecContext(ctx, q, args...)
		args, n = args[:0], 0
		return err
	}
	for k, s := range d.ops {
		if *s == (opSums{}) {
			continue
		}
		if s.traces < 0 {
			emptied = append(emptied, k)
		}
		args = append(args, k.width, k.bucket, k.service, k.operation, s.traces, s.count, s.errors, s.duration, s.self, s.cp)
		if n++; n == chunk {
			if err := exec(); err != nil {
				return err
			}
		}
	}
	if err := exec(); err != nil {
		return err
	}
	for _, k := range emptied {
		if _, err := tx.ExecContext(ctx, `DELETE FROM op_buckets WHERE width=? AND bucket=? AND service=? AND operation=? AND traces<=0`,
			k.width, k.bucket, k.service, k.operation); err != nil {
			return err
		}
	}
	for k, s := range d.traces {
		if *s == (traceSums{}) {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO trace_buckets (width, bucket, traces, duration) VALUES (?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET traces=traces+excluded.traces, duration=duration+excluded.duration`, k[0], k[1], s.traces, s.duration); err != nil {
			return err
		}
		if s.traces < 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM trace_buckets WHERE width=? AND bucket=? AND traces<=0`, k[0], k[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// span is a half-open range [lo, hi) of trace starts; math.MinInt64 and
// math.MaxInt64 stand for unbounded.
type span struct{ lo, hi int64 }

func ceilTo(t, w int64) int64 {
	if t == math.MinInt64 || t == math.MaxInt64 {
		return t
	}
	return -floorDiv(-t, w) * w
}

func floorTo(t, w int64) int64 {
	if t == math.MinInt64 || t == math.MaxInt64 {
		return t
	}
	return floorDiv(t, w) * w
}

// decompose splits [lo, hi) into raw edges, minute runs and an hour run.
func decompose(lo, hi int64) (raw, minutes []span, hours *span) {
	return decomposeBy(lo, hi, int64(time.Minute), int64(time.Hour))
}

// decomposeBy splits [lo, hi) into raw edges, runs of whole small buckets
// and a run of whole large buckets (large a multiple of small).
func decomposeBy(lo, hi, minute, hour int64) (raw, minutes []span, hours *span) {
	m0, m1 := ceilTo(lo, minute), floorTo(hi, minute)
	if m0 >= m1 {
		return []span{{lo, hi}}, nil, nil
	}
	raw = []span{{lo, m0}, {m1, hi}}
	h0, h1 := ceilTo(m0, hour), floorTo(m1, hour)
	if h0 >= h1 {
		return raw, []span{{m0, m1}}, nil
	}
	return raw, []span{{m0, h0}, {h1, m1}}, &span{h0, h1}
}

func rangeCond(col string, s span, scale int64) (string, []any) {
	var conds []string
	var args []any
	if s.lo != math.MinInt64 {
		conds, args = append(conds, col+" >= ?"), append(args, s.lo/scale)
	}
	if s.hi != math.MaxInt64 {
		conds, args = append(conds, col+" < ?"), append(args, s.hi/scale)
	}
	if len(conds) == 0 {
		return "1", nil
	}
	return strings.Join(conds, " AND "), args
}

// bucketBottlenecks sums operation totals and trace durations of traces
// that started in [start, end) from the buckets and the edge rows: of all
// traces (d nil, op_buckets and trace_buckets) or of the traces of one
// service or tag value (dim_buckets).
func bucketBottlenecks(ctx context.Context, tx *sql.Tx, start, end model.Timestamp, d *dim) (map[model.OperationKey]*model.BottleneckRow, time.Duration, error) {
	lo, hi := int64(start), int64(end)
	if start == 0 {
		lo = math.MinInt64
	}
	if end == 0 {
		hi = math.MaxInt64
	}
	rows := map[model.OperationKey]*model.BottleneckRow{}
	var total int64
	collect := func(opQuery, totalQuery string, args []any) error {
		var t sql.NullInt64
		if err := tx.QueryRowContext(ctx, totalQuery, args...).Scan(&t); err != nil {
			return err
		}
		total += t.Int64
		rs, err := tx.QueryContext(ctx, opQuery, args...)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var k model.OperationKey
			var traces, count, errors, dur, self, cp int64
			if err := rs.Scan(&k.Service, &k.Operation, &traces, &count, &errors, &dur, &self, &cp); err != nil {
				return err
			}
			r := rows[k]
			if r == nil {
				r = &model.BottleneckRow{OperationKey: k}
				rows[k] = r
			}
			r.Traces += int(traces)
			r.Count += int(count)
			r.Errors += int(errors)
			r.Duration += time.Duration(dur)
			r.Self += time.Duration(self)
			r.CriticalPath += time.Duration(cp)
		}
		return rs.Err()
	}
	addOp := func(o dimOp) {
		r := rows[o.OperationKey]
		if r == nil {
			r = &model.BottleneckRow{OperationKey: o.OperationKey}
			rows[o.OperationKey] = r
		}
		r.Traces += int(o.traces)
		r.Count += int(o.count)
		r.Errors += int(o.errors)
		r.Duration += time.Duration(o.duration)
		r.Self += time.Duration(o.self)
		r.CriticalPath += time.Duration(o.cp)
	}
	small, widths := int64(time.Minute), bucketWidths
	if d != nil {
		small, widths = dimBucketWidths[0], dimBucketWidths
	}
	raw, minutes, hours := decomposeBy(lo, hi, widths[0], widths[1])
	for _, s := range raw {
		if s.lo >= s.hi {
			continue
		}
		if d != nil {
			opQuery, totalQuery, args := rawDimQueries(*d, s)
			if err := collect(opQuery, totalQuery, args); err != nil {
				return nil, 0, err
			}
			continue
		}
		cond, args := rangeCond("start", s, 1)
		if err := collect(`SELECT service, operation, COUNT(*), SUM(count), SUM(errors), SUM(duration), SUM(self), SUM(critical_path)
			FROM trace_ops WHERE `+cond+` GROUP BY service, operation`, `SELECT SUM(duration) FROM traces WHERE `+cond, args); err != nil {
			return nil, 0, err
		}
	}
	bucketed := func(s span, w int64) error {
		if d != nil {
			t, err := readDimBuckets(ctx, tx, *d, s, w, addOp)
			total += t
			return err
		}
		cond, args := rangeCond("bucket", s, w)
		args = append([]any{w}, args...)
		return collect(`SELECT service, operation, SUM(traces), SUM(count), SUM(errors), SUM(duration), SUM(self), SUM(critical_path)
			FROM op_buckets WHERE width = ? AND `+cond+` GROUP BY service, operation`, `SELECT SUM(duration) FROM trace_buckets WHERE width = ? AND `+cond, args)
	}
	for _, s := range minutes {
		if s.lo < s.hi {
			if err := bucketed(s, small); err != nil {
				return nil, 0, err
			}
		}
	}
	if hours != nil {
		if err := bucketed(*hours, widths[1]); err != nil {
			return nil, 0, err
		}
	}
	return rows, time.Duration(total), nil
}

// deleteBuckets removes buckets of days before day (ns, a UTC midnight).
func deleteBuckets(ctx context.Context, tx *sql.Tx, day int64) error {
	for _, w := range bucketWidths {
		for _, table := range []string{"op_buckets", "trace_buckets"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE width = ? AND bucket < ?`, w, day/w); err != nil {
				return fmt.Errorf("retention: %w", err)
			}
		}
	}
	for _, w := range dimBucketWidths {
		if _, err := tx.ExecContext(ctx, `DELETE FROM dim_buckets WHERE width = ? AND bucket < ?`, w, day/w); err != nil {
			return fmt.Errorf("retention: %w", err)
		}
	}
	return nil
}
