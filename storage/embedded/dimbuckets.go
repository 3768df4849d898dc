package embedded

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Bottleneck pre-aggregates per service and per promoted tag value.
//
// TopBottlenecks with a service filter (traces that have an operation of
// the service) or a promoted-tag filter (traces carrying the tag value)
// would otherwise sum a row per (matching trace, operation): about a
// second for a million spans. So each write also keeps, per 5 minutes and
// per hour of trace start and per dimension value — every service of the
// trace, every promoted tag value of its summary — the sums of the trace's
// operation totals and of its duration, as op_buckets and trace_buckets do
// without a filter (same subtraction of a replaced version, same
// decomposition of a range into raw edges, small buckets and hours). A
// trace contributes to as many dimension values as it has services and
// promoted tag values, which the summary caps bound (storage.MaxServices,
// storage.MaxPromotedValues per key).
//
// The small width is 5 minutes rather than op_buckets' minute because a
// write costs a row update per (dimension value, bucket) it touches: a
// batch of traces spread over an hour (a backfill, the benchmark's
// dataset, with ~110 dimension values per trace) touches nearly 5 times
// fewer rows. The price is raw edges of up to 5 minutes at either end of a
// range that is not aligned to 5 minutes.
//
// One row holds one (dimension value, bucket): its trace count and
// duration sum as columns and its per-operation sums as a small binary
// blob (encodeDimOps), so that a write touches one row per dimension value
// and bucket rather than one per operation too, and a query reads one row
// per bucket. The key starts with the dimension so that a query reads only
// its value's rows.
//
// A query with more than one filter (service and tag, or two tags) is
// answered from the trace rows.
const dimBucketSchema = `
CREATE TABLE IF NOT EXISTS dim_buckets (
	kind     TEXT NOT NULL,
	key      TEXT NOT NULL,
	value    TEXT NOT NULL,
	width    INTEGER NOT NULL,
	bucket   INTEGER NOT NULL,
	traces   INTEGER NOT NULL,
	duration INTEGER NOT NULL,
	ops      BLOB NOT NULL,
	PRIMARY KEY (kind, key, value, width, bucket)
) WITHOUT ROWID;
`

// dimBucketWidths are the small and large widths of dim_buckets.
var dimBucketWidths = [...]int64{int64(5 * time.Minute), int64(time.Hour)}

// dimBucketsLayout is the meta value dim_buckets has when the table holds
// buckets of dimBucketWidths for every stored trace; any other value (or
// none: a store from before the table) rebuilds them at Open.
const dimBucketsLayout = "5m,1h"

// Kinds of dimension: a service (key "") or a promoted tag.
const (
	dimService = "service"
	dimTag     = "tag"
)

// dim is one filter value a dim bucket answers.
type dim struct{ kind, key, value string }

// queryDim is the single dimension of a service or tag filter (ok=false
// when there are none or more than one).
func queryDim(service string, tags map[string]string) (d dim, ok bool) {
	switch {
	case service != "" && len(tags) == 0:
		return dim{dimService, "", service}, true
	case service == "" && len(tags) == 1:
		for k, v := range tags {
			return dim{dimTag, k, v}, true
		}
	}
	return dim{}, false
}

type dimBucketKey struct {
	dim
	width, bucket int64
}

type dimSums struct {
	traces, duration int64
	ops              map[int32]*opSums // by dimDeltas.ids
}

// dimDeltas accumulates a write transaction's changes to dim_buckets.
// Operation keys are numbered once per transaction so that adding a trace's
// operations to each of its dimension values hashes small integers.
type dimDeltas struct {
	ids     map[model.OperationKey]int32
	keys    []model.OperationKey
	buckets map[dimBucketKey]*dimSums
}

func newDimDeltas() *dimDeltas {
	return &dimDeltas{ids: map[model.OperationKey]int32{}, buckets: map[dimBucketKey]*dimSums{}}
}

// add adds (sign=1) or removes (sign=-1) one trace's contribution to the
// buckets of its services and promoted tag values.
func (d *dimDeltas) add(sign int64, start, duration int64, ops []model.OperationSummary, tags map[string][]string) {
	type opDelta struct {
		id int32
		s  opSums
	}
	deltas := make([]opDelta, 0, len(ops))
	var dims []dim
	seen := map[string]bool{}
	for _, o := range ops {
		id, ok := d.ids[o.OperationKey]
		if !ok {
			id = int32(len(d.keys))
			d.ids[o.OperationKey] = id
			d.keys = append(d.keys, o.OperationKey)
		}
		deltas = append(deltas, opDelta{id, opSums{sign, sign * int64(o.Count), sign * int64(o.Errors), sign * int64(o.Duration), sign * int64(o.Self), sign * int64(o.CriticalPath)}})
		if !seen[o.Service] {
			seen[o.Service] = true
			dims = append(dims, dim{dimService, "", o.Service})
		}
	}
	for k, vs := range tags {
		for _, v := range vs {
			dims = append(dims, dim{dimTag, k, v})
		}
	}
	for _, w := range dimBucketWidths {
		b := floorDiv(start, w)
		for _, dm := range dims {
			k := dimBucketKey{dm, w, b}
			s := d.buckets[k]
			if s == nil {
				s = &dimSums{ops: make(map[int32]*opSums, len(deltas))}
				d.buckets[k] = s
			}
			s.traces += sign
			s.duration += sign * duration
			for i := range deltas {
				od := &deltas[i]
				t := s.ops[od.id]
				if t == nil {
					t = &opSums{}
					s.ops[od.id] = t
				}
				t.traces += od.s.traces
				t.count += od.s.count
				t.errors += od.s.errors
				t.duration += od.s.duration
				t.self += od.s.self
				t.cp += od.s.cp
			}
		}
	}
}

// dimOp is one operation's sums in a dim bucket.
type dimOp struct {
	model.OperationKey
	opSums
}

// flush applies the deltas: a read-modify-write of each touched row, which
// is deleted when no trace is left in it.
func (d *dimDeltas) flush(ctx context.Context, tx *sql.Tx) error {
	if len(d.buckets) == 0 {
		return nil
	}
	stmts, err := prepare(ctx, tx,
		`SELECT traces, duration, ops FROM dim_buckets WHERE kind=? AND key=? AND value=? AND width=? AND bucket=?`,
		`INSERT OR REPLACE INTO dim_buckets (kind, key, value, width, bucket, traces, duration, ops) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		`DELETE FROM dim_buckets WHERE kind=? AND key=? AND value=? AND width=? AND bucket=?`)
	if err != nil {
		return err
	}
	get, put, del := stmts[0], stmts[1], stmts[2]
	var blob []byte
	var cur []dimOp
	for k, s := range d.buckets {
		if s.traces == 0 && s.duration == 0 && allZero(s.ops) {
			continue
		}
		var traces, duration int64
		var old []byte
		err := get.QueryRowContext(ctx, k.kind, k.key, k.value, k.width, k.bucket).Scan(&traces, &duration, &old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			cur = cur[:0]
		case err != nil:
			return err
		default:
			if cur, err = decodeDimOps(old, cur[:0]); err != nil {
				return fmt.Errorf("dim bucket %s %s=%s: %w", k.kind, k.key, k.value, err)
			}
		}
		traces += s.traces
		duration += s.duration
		if traces <= 0 {
			if _, err := del.ExecContext(ctx, k.kind, k.key, k.value, k.width, k.bucket); err != nil {
				return err
			}
			continue
		}
		cur = mergeDimOps(cur, s.ops, d.keys)
		blob = encodeDimOps(blob[:0], cur)
		if _, err := put.ExecContext(ctx, k.kind, k.key, k.value, k.width, k.bucket, traces, duration, blob); err != nil {
			return err
		}
	}
	return nil
}

func allZero(ops map[int32]*opSums) bool {
	for _, s := range ops {
		if *s != (opSums{}) {
			return false
		}
	}
	return true
}

// mergeDimOps adds the deltas to cur, drops operations left with no trace
// and sorts by service and operation.
func mergeDimOps(cur []dimOp, deltas map[int32]*opSums, keys []model.OperationKey) []dimOp {
	at := make(map[model.OperationKey]int, len(cur))
	for i := range cur {
		at[cur[i].OperationKey] = i
	}
	for id, s := range deltas {
		k := keys[id]
		i, ok := at[k]
		if !ok {
			cur = append(cur, dimOp{OperationKey: k})
			i = len(cur) - 1
			at[k] = i
		}
		c := &cur[i].opSums
		c.traces += s.traces
		c.count += s.count
		c.errors += s.errors
		c.duration += s.duration
		c.self += s.self
		c.cp += s.cp
	}
	out := cur[:0]
	for _, o := range cur {
		if o.traces > 0 {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Operation < out[j].Operation
	})
	return out
}

// dimOpsFormat is the first byte of an encoded ops blob.
const dimOpsFormat = 1

// encodeDimOps appends the blob of ops to b: the format byte, the number of
// operations, then per operation its service and operation name (length
// and bytes) and six varints (traces, count, errors, duration, self,
// critical path).
func encodeDimOps(b []byte, ops []dimOp) []byte {
	b = append(b, dimOpsFormat)
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, o := range ops {
		b = binary.AppendUvarint(b, uint64(len(o.Service)))
		b = append(b, o.Service...)
		b = binary.AppendUvarint(b, uint64(len(o.Operation)))
		b = append(b, o.Operation...)
		for _, v := range [...]int64{o.traces, o.count, o.errors, o.duration, o.self, o.cp} {
			b = binary.AppendVarint(b, v)
		}
	}
	return b
}

var errDimOps = errors.New("corrupt operation sums")

// decodeDimOps appends the operations of blob b to out.
func decodeDimOps(b []byte, out []dimOp) ([]dimOp, error) {
	if len(b) == 0 || b[0] != dimOpsFormat {
		return out, errDimOps
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) { // every operation takes at least 8 bytes
		return out, errDimOps
	}
	b = b[k:]
	str := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s, true
	}
	for range n {
		var o dimOp
		var ok bool
		if o.Service, ok = str(); !ok {
			return out, errDimOps
		}
		if o.Operation, ok = str(); !ok {
			return out, errDimOps
		}
		for _, p := range [...]*int64{&o.traces, &o.count, &o.errors, &o.duration, &o.self, &o.cp} {
			v, k := binary.Varint(b)
			if k <= 0 {
				return out, errDimOps
			}
			*p, b = v, b[k:]
		}
		out = append(out, o)
	}
	if len(b) != 0 {
		return out, errDimOps
	}
	return out, nil
}

// dimCond is the condition on traces t of the dimension.
func dimCond(d dim) (string, []any) {
	if d.kind == dimService {
		return "EXISTS (SELECT 1 FROM trace_ops o2 WHERE o2.trace_id = t.trace_id AND o2.service = ?)", []any{d.value}
	}
	return "EXISTS (SELECT 1 FROM trace_tags g WHERE g.trace_id = t.trace_id AND g.key = ? AND g.value = ?)", []any{d.key, d.value}
}

// readDimBuckets adds the dim buckets of width w in s to rows and returns
// their trace duration sum.
func readDimBuckets(ctx context.Context, tx *sql.Tx, d dim, s span, w int64, add func(dimOp)) (int64, error) {
	cond, args := rangeCond("bucket", s, w)
	rs, err := tx.QueryContext(ctx, `SELECT duration, ops FROM dim_buckets WHERE kind = ? AND key = ? AND value = ? AND width = ? AND `+cond,
		append([]any{d.kind, d.key, d.value, w}, args...)...)
	if err != nil {
		return 0, err
	}
	defer rs.Close()
	var total int64
	var ops []dimOp
	for rs.Next() {
		var dur int64
		var blob []byte
		if err := rs.Scan(&dur, &blob); err != nil {
			return 0, err
		}
		total += dur
		if ops, err = decodeDimOps(blob, ops[:0]); err != nil {
			return 0, fmt.Errorf("dim bucket %s %s=%s: %w", d.kind, d.key, d.value, err)
		}
		for _, o := range ops {
			add(o)
		}
	}
	return total, rs.Err()
}

// storedTags reads a stored trace's promoted tag values.
func storedTags(ctx context.Context, tx *sql.Tx, id string) (map[string][]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT key, value FROM trace_tags WHERE trace_id = ?`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	tags := map[string][]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		tags[k] = append(tags[k], v)
	}
	return tags, rows.Err()
}

// buildDimBuckets fills dim_buckets from the stored traces when the store
// was created before them or with other widths (the meta key dim_buckets
// is not dimBucketsLayout), in one transaction: an interrupted build
// starts over at the next Open.
func buildDimBuckets(ctx context.Context, db *sql.DB) error {
	var layout string
	err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'dim_buckets'`).Scan(&layout)
	if err == nil && layout == dimBucketsLayout {
		return nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("dim buckets: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("dim buckets: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM dim_buckets`); err != nil {
		return fmt.Errorf("dim buckets: %w", err)
	}
	var ids []string
	rows, err := tx.QueryContext(ctx, `SELECT trace_id FROM traces`)
	if err != nil {
		return fmt.Errorf("dim buckets: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("dim buckets: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("dim buckets: %w", err)
	}
	dl := newDimDeltas()
	for i, id := range ids {
		start, dur, ops, ok, err := storedOps(ctx, tx, id)
		if err != nil {
			return fmt.Errorf("dim buckets: trace %s: %w", id, err)
		}
		tags, err := storedTags(ctx, tx, id)
		if err != nil {
			return fmt.Errorf("dim buckets: trace %s: %w", id, err)
		}
		if ok {
			dl.add(1, start, dur, ops, tags)
		}
		if (i+1)%1000 == 0 {
			if err := dl.flush(ctx, tx); err != nil {
				return fmt.Errorf("dim buckets: %w", err)
			}
			dl = newDimDeltas()
		}
	}
	if err := dl.flush(ctx, tx); err != nil {
		return fmt.Errorf("dim buckets: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES ('dim_buckets', ?)`, dimBucketsLayout); err != nil {
		return fmt.Errorf("dim buckets: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("dim buckets: commit: %w", err)
	}
	return nil
}

// rawDimQueries are the queries of a raw edge with a dimension filter.
func rawDimQueries(d dim, s span) (opQuery, totalQuery string, args []any) {
	cond, args := rangeCond("t.start", s, 1)
	dc, dargs := dimCond(d)
	where := " WHERE " + strings.Join([]string{cond, dc}, " AND ")
	return `SELECT o.service, o.operation, COUNT(*), SUM(o.count), SUM(o.errors), SUM(o.duration), SUM(o.self), SUM(o.critical_path)
		FROM traces t JOIN trace_ops o ON o.trace_id = t.trace_id` + where + ` GROUP BY o.service, o.operation`,
		`SELECT SUM(t.duration) FROM traces t` + where, append(args, dargs...)
}
