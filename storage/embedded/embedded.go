// Package embedded is tracepipe's single-machine store: one SQLite file,
// through modernc.org/sqlite, implementing storage.Store with the same
// semantics as the Elasticsearch backend (checked by storage/storagetest).
//
// # Why SQLite through modernc.org/sqlite
//
//   - Pure Go (SQLite transpiled to Go): no cgo, so `go build` and cross
//     compilation work with no C toolchain, and the binary stays static.
//   - Transactional and durable: a write returns after its transaction
//     committed in WAL mode with synchronous=FULL, i.e. after fsync; a crash or
//     power loss keeps every acknowledged write and never a half-written batch.
//   - The queries are relational and small: B-tree indexes on duration and
//     start answer "N slowest"/"newest" by walking an index, primary-key
//     lookups answer trace-by-ID, and GROUP BY answers the bottleneck ranking.
//     Embedded key-value stores (bbolt, badger) would need those indexes
//     written by hand.
//
// # Layout
//
// traces (one row per trace: latest version, start, duration, the summary and
// the per-operation totals and analysis of a dbmodel.Trace, as two
// zstd-compressed JSON documents, the first small for listings), spans (one row per trace: the
// trace's spans as a zstd-compressed JSON array of Jaeger-schema
// dbmodel.Span documents — one row per trace instead of one per span, since a
// trace version always carries all of its spans and is always read whole),
// trace_ops and trace_tags (search and aggregation indexes over the summary),
// op_buckets, trace_buckets and dim_buckets (bottleneck sums pre-aggregated
// per time bucket, and per service or tag value: see buckets.go and
// dimbuckets.go),
// rollups (one row per Rollup.ID(), dbmodel.Rollup JSON, and its Version:
// a write with a lower Version loses), edge_rollups (one
// row per EdgeRollup.ID(), dbmodel.EdgeRollup JSON).
//
// # Concurrency
//
// One writer connection (SQLite allows one writer at a time; serialising in
// the pool avoids SQLITE_BUSY) and a pool of read-only connections, which in
// WAL mode read a consistent snapshot while a write is in progress. All
// methods are safe for concurrent use.
package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
)

// Options configures a Store.
type Options struct {
	// Path of the database file; its directory is created if missing.
	Path string
	// PromotedTags are the searchable tag keys (default model.DefaultPromotedTags()).
	// Changing them applies to traces written afterwards.
	PromotedTags []string
	// ReadConns is the size of the read pool (default: number of CPUs, at
	// least 2, plus 4, so that cheap lookups find a connection while heavy
	// queries hold one per CPU; see query.Limits).
	ReadConns int
}

// Store is an embedded store. Close it when done.
type Store struct {
	w, r     *sql.DB
	promoted []string
	enc      *zstd.Encoder
	dec      *zstd.Decoder
}

var _ storage.Store = (*Store)(nil)

const schemaVersion = 1

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS traces (
	trace_id TEXT PRIMARY KEY,
	version  INTEGER NOT NULL,
	start    INTEGER NOT NULL,
	duration INTEGER NOT NULL,
	summary  BLOB NOT NULL,
	analysis BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_duration ON traces (duration DESC, start DESC, trace_id);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start DESC, duration DESC, trace_id);
CREATE TABLE IF NOT EXISTS spans (
	trace_id TEXT PRIMARY KEY,
	doc      BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS trace_ops (
	trace_id      TEXT NOT NULL,
	start         INTEGER NOT NULL,
	service       TEXT NOT NULL,
	operation     TEXT NOT NULL,
	count         INTEGER NOT NULL,
	errors        INTEGER NOT NULL,
	duration      INTEGER NOT NULL,
	self          INTEGER NOT NULL,
	critical_path INTEGER NOT NULL,
	PRIMARY KEY (trace_id, service, operation)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trace_ops_by_start ON trace_ops (start);
CREATE TABLE IF NOT EXISTS trace_tags (
	trace_id TEXT NOT NULL,
	key      TEXT NOT NULL,
	value    TEXT NOT NULL,
	PRIMARY KEY (trace_id, key, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trace_tags_by_value ON trace_tags (key, value);
CREATE TABLE IF NOT EXISTS rollups (
	id           TEXT PRIMARY KEY,
	resolution   INTEGER NOT NULL,
	window_start INTEGER NOT NULL,
	service      TEXT NOT NULL,
	operation    TEXT NOT NULL,
	kind         TEXT NOT NULL,
	doc          BLOB NOT NULL,
	version      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS rollups_by_key ON rollups (service, operation, resolution, window_start);
CREATE INDEX IF NOT EXISTS rollups_by_start ON rollups (window_start);
CREATE TABLE IF NOT EXISTS edge_rollups (
	id           TEXT PRIMARY KEY,
	resolution   INTEGER NOT NULL,
	window_start INTEGER NOT NULL,
	caller       TEXT NOT NULL,
	callee       TEXT NOT NULL,
	doc          BLOB NOT NULL,
	version      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS edge_rollups_by_key ON edge_rollups (caller, callee, resolution, window_start);
CREATE INDEX IF NOT EXISTS edge_rollups_by_start ON edge_rollups (window_start);
`

// Open opens (creating if needed) the store at o.Path.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Path == "" {
		return nil, errors.New("embedded store: empty path")
	}
	if o.PromotedTags == nil {
		o.PromotedTags = model.DefaultPromotedTags()
	}
	if err := validatePromoted(o.PromotedTags); err != nil {
		return nil, err
	}
	if o.ReadConns <= 0 {
		o.ReadConns = max(runtime.NumCPU(), 2) + 4
	}
	if dir := filepath.Dir(o.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded store: %w", err)
		}
	}
	dsn := func(extra ...string) string {
		q := url.Values{}
		for _, p := range append([]string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "cache_size(-65536)", "temp_store(MEMORY)"}, extra...) {
			q.Add("_pragma", p)
		}
		return "file:" + (&url.URL{Path: o.Path}).EscapedPath() + "?" + q.Encode()
	}
	w, err := sql.Open("sqlite", dsn())
	if err != nil {
		return nil, fmt.Errorf("embedded store: open %s: %w", o.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	if _, err := w.ExecContext(ctx, schema+bucketSchema+dimBucketSchema); err != nil {
		w.Close()
		return nil, fmt.Errorf("embedded store: create schema in %s: %w", o.Path, err)
	}
	if err := addVersionColumns(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("embedded store %s: %w", o.Path, err)
	}
	if err := buildDimBuckets(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("embedded store %s: %w", o.Path, err)
	}
	var v string
	err = w.QueryRowContext(ctx, `SELECT value FROM meta WHERE key='schema_version'`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('schema_version', ?)`, fmt.Sprint(schemaVersion))
	case err == nil && v != fmt.Sprint(schemaVersion):
		err = fmt.Errorf("schema version %s, this build reads %d", v, schemaVersion)
	}
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("embedded store %s: %w", o.Path, err)
	}
	r, err := sql.Open("sqlite", dsn("query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("embedded store: open %s: %w", o.Path, err)
	}
	r.SetMaxOpenConns(o.ReadConns)
	r.SetMaxIdleConns(o.ReadConns)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
	return &Store{w: w, r: r, promoted: o.PromotedTags, enc: enc, dec: dec}, nil
}

// addVersionColumns adds the version column to the rollup tables of a
// store created before rollups were versioned (their rows get 0, which any
// versioned write replaces).
func addVersionColumns(ctx context.Context, db *sql.DB) error {
	for _, table := range []string{"rollups", "edge_rollups"} {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = 'version'`, table).Scan(&n); err != nil {
			return fmt.Errorf("inspect %s: %w", table, err)
		}
		if n == 0 {
			if _, err := db.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN version INTEGER NOT NULL DEFAULT 0`); err != nil {
				return fmt.Errorf("add version to %s: %w", table, err)
			}
		}
	}
	return nil
}

func validatePromoted(keys []string) error {
	seen := map[string]bool{}
	for _, k := range keys {
		if k == "" || seen[k] {
			return fmt.Errorf("promoted tags: empty or repeated key %q", k)
		}
		seen[k] = true
	}
	return nil
}

// Close closes the database. Pending writes have committed when their
// WriteTraces/WriteRollups returned.
func (s *Store) Close() error {
	s.dec.Close()
	return errors.Join(s.r.Close(), s.enc.Close(), s.w.Close())
}

// WriteTraces stores the traces in one transaction: all or nothing. A trace
// whose stored version is newer is skipped; under storage.WithFill, one
// whose stored version is equal too (nothing of it is rewritten: summary,
// spans, search rows, buckets).
func (s *Store) WriteTraces(ctx context.Context, traces []model.AssembledTrace) error {
	if len(traces) == 0 {
		return nil
	}
	type row struct {
		id                 string
		summary            model.TraceSummary
		doc, analysis, spn []byte
	}
	rows := make([]row, len(traces))
	var buf []byte
	spans := []dbmodel.Span{}
	for i := range traces {
		at := &traces[i]
		sum := storage.Summarize(at, s.promoted)
		d := dbmodel.FromDomainTrace(&sum, &at.Analysis)
		// The summary row stays small for listings; the per-operation totals
		// travel with the analysis, which only GetTrace reads.
		analysis, err := json.Marshal(detail{Operations: d.Operations, Analysis: d.Analysis})
		if err != nil {
			return fmt.Errorf("encode analysis of %s: %w: %w", sum.TraceID, storage.ErrPermanent, err)
		}
		d.Analysis, d.Operations = dbmodel.Analysis{}, nil
		doc, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode trace %s: %w: %w", sum.TraceID, storage.ErrPermanent, err)
		}
		spans = spans[:0]
		for _, sp := range at.Trace.Spans {
			spans = append(spans, dbmodel.FromDomainSpan(sp, dbmodel.SpanOptions{}))
		}
		buf, err = json.Marshal(spans)
		if err != nil {
			return fmt.Errorf("encode spans of %s: %w: %w", sum.TraceID, storage.ErrPermanent, err)
		}
		rows[i] = row{id: sum.TraceID.String(), summary: sum, doc: s.enc.EncodeAll(doc, nil), analysis: s.enc.EncodeAll(analysis, nil), spn: s.enc.EncodeAll(buf, nil)}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write traces: %w", err)
	}
	defer tx.Rollback()
	newer := ">=" // an equal version replaces
	if storage.Fill(ctx) {
		newer = ">" // only a strictly newer version replaces
	}
	stmts, err := prepare(ctx, tx,
		`INSERT INTO traces (trace_id, version, start, duration, summary, analysis) VALUES (?, ?, ?, ?, ?, ?)
		 ON CONFLICT (trace_id) DO UPDATE SET version=excluded.version, start=excluded.start,
		   duration=excluded.duration, summary=excluded.summary, analysis=excluded.analysis
		 WHERE excluded.version `+newer+` traces.version`,
		`INSERT INTO spans (trace_id, doc) VALUES (?, ?) ON CONFLICT (trace_id) DO UPDATE SET doc=excluded.doc`,
		`DELETE FROM trace_ops WHERE trace_id = ?`,
		`DELETE FROM trace_tags WHERE trace_id = ?`,
	)
	if err != nil {
		return fmt.Errorf("write traces: %w", err)
	}
	upTrace, upSpans, delOps, delTags := stmts[0], stmts[1], stmts[2], stmts[3]
	var args []any
	dl, ddl := newDeltas(), newDimDeltas()
	for _, r := range rows {
		oldStart, oldDur, oldOps, existed, err := storedOps(ctx, tx, r.id)
		if err != nil {
			return fmt.Errorf("write trace %s: %w", r.id, err)
		}
		var oldTags map[string][]string
		if existed {
			if oldTags, err = storedTags(ctx, tx, r.id); err != nil {
				return fmt.Errorf("write trace %s: %w", r.id, err)
			}
		}
		res, err := upTrace.ExecContext(ctx, r.id, r.summary.Version, int64(r.summary.Start), int64(r.summary.Duration), r.doc, r.analysis)
		if err != nil {
			return fmt.Errorf("write trace %s: %w", r.id, classify(err))
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			// A newer version is stored (under fill: or the same one).
			// Nothing below ran for this trace: its spans, search rows and
			// buckets stay as they are.
			continue
		}
		if existed {
			dl.add(-1, oldStart, oldDur, oldOps)
			ddl.add(-1, oldStart, oldDur, oldOps, oldTags)
		}
		dl.add(1, int64(r.summary.Start), int64(r.summary.Duration), r.summary.Operations)
		ddl.add(1, int64(r.summary.Start), int64(r.summary.Duration), r.summary.Operations, r.summary.PromotedTags)
		if _, err := upSpans.ExecContext(ctx, r.id, r.spn); err != nil {
			return fmt.Errorf("write spans of %s: %w", r.id, classify(err))
		}
		for _, st := range []*sql.Stmt{delOps, delTags} {
			if _, err := st.ExecContext(ctx, r.id); err != nil {
				return fmt.Errorf("write trace %s: %w", r.id, err)
			}
		}
		// Multi-row inserts, since each statement costs far more than a
		// row, in chunks of at most maxVars variables (SQLite's limit is
		// 32766 per statement).
		if len(r.summary.Operations) > 0 {
			args = args[:0]
			for _, o := range r.summary.Operations {
				args = append(args, r.id, int64(r.summary.Start), o.Service, o.Operation, o.Count, o.Errors, int64(o.Duration), int64(o.Self), int64(o.CriticalPath))
			}
			if err := insertRows(ctx, tx, `INSERT INTO trace_ops (trace_id, start, service, operation, count, errors, duration, self, critical_path) VALUES `,
				` ON CONFLICT DO UPDATE SET count=count+excluded.count, errors=errors+excluded.errors,
				  duration=duration+excluded.duration, self=self+excluded.self, critical_path=critical_path+excluded.critical_path`,
				9, args); err != nil {
				return fmt.Errorf("write trace %s: operations: %w", r.id, classify(err))
			}
		}
		if len(r.summary.PromotedTags) > 0 {
			args = args[:0]
			for k, vs := range r.summary.PromotedTags {
				for _, v := range vs {
					args = append(args, r.id, k, v)
				}
			}
			if err := insertRows(ctx, tx, `INSERT OR IGNORE INTO trace_tags (trace_id, key, value) VALUES `, "", 3, args); err != nil {
				return fmt.Errorf("write trace %s: tags: %w", r.id, classify(err))
			}
		}
	}
	if err := dl.flush(ctx, tx); err != nil {
		return fmt.Errorf("write traces: bottleneck buckets: %w", err)
	}
	if err := ddl.flush(ctx, tx); err != nil {
		return fmt.Errorf("write traces: bottleneck buckets by service and tag: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write traces: commit: %w", err)
	}
	return nil
}

// classify marks err as storage.ErrPermanent when SQLite refused the
// statement for a reason retrying cannot fix (too big, a constraint or type
// mismatch, too many variables or another SQL logic error); busy, locked,
// I/O, full-disk and the like stay transient.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_ERROR, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
		return fmt.Errorf("%w: %w", storage.ErrPermanent, err)
	}
	return err
}

// maxVars bounds the variables of one statement, well inside SQLite's
// SQLITE_MAX_VARIABLE_NUMBER (32766).
const maxVars = 4096

// insertRows runs prefix + "(?,…),(?,…)…" + suffix over args, cols
// variables per row, in as many statements as keep each within maxVars.
func insertRows(ctx context.Context, tx *sql.Tx, prefix, suffix string, cols int, args []any) error {
	per := max(maxVars/cols, 1) * cols
	for len(args) > 0 {
		n := min(len(args), per)
		if _, err := tx.ExecContext(ctx, prefix+placeholders(n/cols, cols)+suffix, args[:n]...); err != nil {
			return err
		}
		args = args[n:]
	}
	return nil
}

// placeholders returns "(?,?,...),(?,?,...)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.Repeat("?,", cols-1) + "?)"
	return strings.Repeat(one+",", rows-1) + one
}

func prepare(ctx context.Context, tx *sql.Tx, queries ...string) ([]*sql.Stmt, error) {
	out := make([]*sql.Stmt, len(queries))
	for i, q := range queries {
		st, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// WriteRollups stores the rollups in one transaction, replacing earlier
// rollups with the same ID unless they have a higher Version (a conditional
// upsert: an older write loses, an equal or newer one replaces; Version 0
// always replaces). Under storage.WithFill a rollup is only inserted when
// no rollup with its ID is stored, whatever the versions, and then without
// a version (0), as Elasticsearch stores it.
func (s *Store) WriteRollups(ctx context.Context, rollups []model.Rollup) error {
	if len(rollups) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write rollups: %w", err)
	}
	defer tx.Rollback()
	fill := storage.Fill(ctx)
	conflict := `ON CONFLICT (id) DO UPDATE SET resolution=excluded.resolution, window_start=excluded.window_start,
		  service=excluded.service, operation=excluded.operation, kind=excluded.kind, doc=excluded.doc, version=excluded.version
		WHERE excluded.version = 0 OR excluded.version >= rollups.version`
	if fill {
		conflict = `ON CONFLICT (id) DO NOTHING`
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO rollups (id, resolution, window_start, service, operation, kind, doc, version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) `+conflict)
	if err != nil {
		return fmt.Errorf("write rollups: %w", err)
	}
	for i := range rollups {
		r := &rollups[i]
		if r.Resolution <= 0 {
			return fmt.Errorf("write rollup %s/%s: resolution must be positive", r.Service, r.Operation)
		}
		doc, err := json.Marshal(dbmodel.FromDomainRollup(r))
		if err != nil {
			return fmt.Errorf("encode rollup: %w", err)
		}
		if _, err := st.ExecContext(ctx, r.ID(), int64(r.Resolution), int64(r.WindowStart), r.Service, r.Operation, r.Kind.String(), doc, storedVersion(fill, r.Version)); err != nil {
			return fmt.Errorf("write rollup %s: %w", r.ID(), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write rollups: commit: %w", err)
	}
	return nil
}

// storedVersion is the version column of a rollup or edge rollup of
// version v: 0 for one a fill write adds, so that any later normal write of
// its ID replaces it, as on Elasticsearch, whose op_type=create cannot carry
// an external version.
func storedVersion(fill bool, v int64) int64 {
	if fill {
		return 0
	}
	return v
}

// WriteEdgeRollups stores the edge rollups in one transaction, replacing
// earlier edge rollups with the same ID unless they have a higher Version
// (as WriteRollups; under storage.WithFill only inserting missing IDs,
// unversioned).
// Retractions (Calls == 0) are stored like any other.
func (s *Store) WriteEdgeRollups(ctx context.Context, edges []model.EdgeRollup) error {
	if len(edges) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write edge rollups: %w", err)
	}
	defer tx.Rollback()
	fill := storage.Fill(ctx)
	conflict := `ON CONFLICT (id) DO UPDATE SET resolution=excluded.resolution, window_start=excluded.window_start,
		  caller=excluded.caller, callee=excluded.callee, doc=excluded.doc, version=excluded.version
		WHERE excluded.version = 0 OR excluded.version >= edge_rollups.version`
	if fill {
		conflict = `ON CONFLICT (id) DO NOTHING`
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO edge_rollups (id, resolution, window_start, caller, callee, doc, version)
		VALUES (?, ?, ?, ?, ?, ?, ?) `+conflict)
	if err != nil {
		return fmt.Errorf("write edge rollups: %w", err)
	}
	for i := range edges {
		e := &edges[i]
		if e.Resolution <= 0 {
			return fmt.Errorf("write edge rollup %s->%s: resolution must be positive", e.Caller, e.Callee)
		}
		doc, err := json.Marshal(dbmodel.FromDomainEdgeRollup(e))
		if err != nil {
			return fmt.Errorf("encode edge rollup: %w", err)
		}
		if _, err := st.ExecContext(ctx, e.ID(), int64(e.Resolution), int64(e.WindowStart), e.Caller, e.Callee, doc, storedVersion(fill, e.Version)); err != nil {
			return fmt.Errorf("write edge rollup %s: %w", e.ID(), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write edge rollups: commit: %w", err)
	}
	return nil
}

// GetTrace reads the trace's summary, analysis and spans from one snapshot.
func (s *Store) GetTrace(ctx context.Context, id model.TraceID) (model.StoredTrace, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: %w", id, err)
	}
	defer tx.Rollback()
	var sumDoc, analysisDoc, spanDoc []byte
	err = tx.QueryRowContext(ctx, `SELECT t.summary, t.analysis, s.doc FROM traces t JOIN spans s ON s.trace_id = t.trace_id WHERE t.trace_id = ?`, id.String()).Scan(&sumDoc, &analysisDoc, &spanDoc)
	if errors.Is(err, sql.ErrNoRows) {
		return model.StoredTrace{}, fmt.Errorf("trace %s %w", id, model.ErrNotFound)
	}
	if err != nil {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: %w", id, err)
	}
	var d dbmodel.Trace
	if err := s.unmarshal(sumDoc, &d); err != nil {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: decode summary: %w", id, err)
	}
	var det detail
	rawDetail, err := s.dec.DecodeAll(analysisDoc, nil)
	if err != nil {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: decompress analysis: %w", id, err)
	}
	if err := decodeDetail(rawDetail, &det); err != nil {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: decode analysis: %w", id, err)
	}
	d.Operations, d.Analysis = det.Operations, det.Analysis
	raw, err := s.dec.DecodeAll(spanDoc, nil)
	if err != nil {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: decompress spans: %w", id, err)
	}
	docs, err := decodeSpans(raw)
	if err != nil {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: decode spans: %w", id, err)
	}
	return assemble(id, &d, docs, s.promoted)
}

// detail is the analysis column: what GetTrace reads beyond the summary.
type detail struct {
	Operations []dbmodel.Operation `json:"operations"`
	Analysis   dbmodel.Analysis    `json:"analysis"`
}

// unmarshal decodes a zstd-compressed JSON document.
func (s *Store) unmarshal(b []byte, v any) error {
	raw, err := s.dec.DecodeAll(b, nil)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	return json.Unmarshal(raw, v)
}

// assemble builds a StoredTrace from stored documents (shared shape with the
// Elasticsearch reader).
func assemble(id model.TraceID, d *dbmodel.Trace, docs []dbmodel.Span, promoted []string) (model.StoredTrace, error) {
	sum, err := d.ToDomainSummary(promoted)
	if err != nil {
		return model.StoredTrace{}, err
	}
	a, err := d.ToDomainAnalysis()
	if err != nil {
		return model.StoredTrace{}, err
	}
	spans := make([]*model.Span, 0, len(docs))
	for i := range docs {
		sp, err := dbmodel.ToDomainSpan(&docs[i], dbmodel.SpanOptions{})
		if err != nil {
			return model.StoredTrace{}, fmt.Errorf("get trace %s: %w", id, err)
		}
		spans = append(spans, sp)
	}
	spans, a = dbmodel.AlignSpans(spans, a)
	return model.StoredTrace{Summary: sum, Trace: model.Trace{TraceID: id, Spans: spans}, Analysis: a}, nil
}

// filter builds the WHERE clause shared by FindTraces and TopBottlenecks.
func filter(service, operation string, tags map[string]string, minD, maxD time.Duration, start, end model.Timestamp) (string, []any) {
	var where []string
	var args []any
	if start != 0 {
		where, args = append(where, "t.start >= ?"), append(args, int64(start))
	}
	if end != 0 {
		where, args = append(where, "t.start < ?"), append(args, int64(end))
	}
	if minD != 0 {
		where, args = append(where, "t.duration >= ?"), append(args, int64(minD))
	}
	if maxD != 0 {
		where, args = append(where, "t.duration <= ?"), append(args, int64(maxD))
	}
	switch {
	case service != "" && operation != "":
		where = append(where, "EXISTS (SELECT 1 FROM trace_ops o2 WHERE o2.trace_id = t.trace_id AND o2.service = ? AND o2.operation = ?)")
		args = append(args, service, operation)
	case service != "":
		where = append(where, "EXISTS (SELECT 1 FROM trace_ops o2 WHERE o2.trace_id = t.trace_id AND o2.service = ?)")
		args = append(args, service)
	case operation != "":
		where = append(where, "EXISTS (SELECT 1 FROM trace_ops o2 WHERE o2.trace_id = t.trace_id AND o2.operation = ?)")
		args = append(args, operation)
	}
	for k, v := range tags {
		where = append(where, "EXISTS (SELECT 1 FROM trace_tags g WHERE g.trace_id = t.trace_id AND g.key = ? AND g.value = ?)")
		args = append(args, k, v)
	}
	if len(where) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(where, " AND "), args
}

// FindTraces returns matching summaries, walking the duration (slowest) or
// start (newest) index.
func (s *Store) FindTraces(ctx context.Context, q model.TraceQuery) ([]model.TraceSummary, error) {
	q, err := q.Normalize()
	if err != nil {
		return nil, err
	}
	if err := model.CheckPromoted(q.Tags, s.promoted); err != nil {
		return nil, err
	}
	where, args := filter(q.Service, q.Operation, q.Tags, q.MinDuration, q.MaxDuration, q.Start, q.End)
	order := " ORDER BY t.duration DESC, t.start DESC, t.trace_id"
	if q.Order == model.OrderNewest {
		order = " ORDER BY t.start DESC, t.duration DESC, t.trace_id"
	}
	rows, err := s.r.QueryContext(ctx, "SELECT t.summary FROM traces t"+where+order+" LIMIT ?", append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("find traces: %w", err)
	}
	defer rows.Close()
	out := []model.TraceSummary{}
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("find traces: %w", err)
		}
		var d dbmodel.Trace
		if err := s.unmarshal(doc, &d); err != nil {
			return nil, fmt.Errorf("find traces: decode summary: %w", err)
		}
		sum, err := d.ToDomainSummary(s.promoted)
		if err != nil {
			return nil, fmt.Errorf("find traces: %w", err)
		}
		out = append(out, sum)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find traces: %w", err)
	}
	return out, nil
}

// TopBottlenecks sums the per-trace operation summaries of the selected
// traces in SQL.
func (s *Store) TopBottlenecks(ctx context.Context, q model.BottleneckQuery) ([]model.BottleneckRow, error) {
	q, err := q.Normalize()
	if err != nil {
		return nil, err
	}
	if err := model.CheckPromoted(q.Tags, s.promoted); err != nil {
		return nil, err
	}
	where, args := filter(q.Service, "", q.Tags, 0, 0, q.Start, q.End)
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("bottlenecks: %w", err)
	}
	defer tx.Rollback()
	var d *dim
	if qd, ok := queryDim(q.Service, q.Tags); ok {
		d = &qd
	}
	if d != nil || (q.Service == "" && len(q.Tags) == 0) {
		byOp, total, err := bucketBottlenecks(ctx, tx, q.Start, q.End, d)
		if err != nil {
			return nil, fmt.Errorf("bottlenecks: %w", err)
		}
		out := make([]model.BottleneckRow, 0, len(byOp))
		for _, r := range byOp {
			out = append(out, *r)
		}
		return storage.RankBottlenecks(out, total, q.Limit), nil
	}
	// With a service and a tag filter, or two tags, sum the operations of
	// the matching traces.
	var total sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT SUM(t.duration) FROM traces t"+where, args...).Scan(&total); err != nil {
		return nil, fmt.Errorf("bottlenecks: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT o.service, o.operation, SUM(o.critical_path), COUNT(*), SUM(o.count), SUM(o.errors), SUM(o.self), SUM(o.duration)
		FROM traces t JOIN trace_ops o ON o.trace_id = t.trace_id`+where+`
		GROUP BY o.service, o.operation ORDER BY 3 DESC, 1, 2 LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("bottlenecks: %w", err)
	}
	defer rows.Close()
	out := []model.BottleneckRow{}
	for rows.Next() {
		var r model.BottleneckRow
		var cp, self, dur int64
		if err := rows.Scan(&r.Service, &r.Operation, &cp, &r.Traces, &r.Count, &r.Errors, &self, &dur); err != nil {
			return nil, fmt.Errorf("bottlenecks: %w", err)
		}
		r.CriticalPath, r.Self, r.Duration = time.Duration(cp), time.Duration(self), time.Duration(dur)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bottlenecks: %w", err)
	}
	return storage.RankBottlenecks(out, time.Duration(total.Int64), q.Limit), nil
}

// RollupSeries reads rollups of one operation and resolution in window order.
func (s *Store) RollupSeries(ctx context.Context, q model.RollupQuery) ([]model.Rollup, error) {
	q, err := q.Normalize()
	if err != nil {
		return nil, err
	}
	query := `SELECT doc FROM rollups WHERE service = ? AND operation = ? AND resolution = ?`
	args := []any{q.Service, q.Operation, int64(q.Resolution)}
	if q.Start != 0 {
		query, args = query+" AND window_start >= ?", append(args, int64(q.Start))
	}
	if q.End != 0 {
		query, args = query+" AND window_start < ?", append(args, int64(q.End))
	}
	if q.Kind != model.KindUnspecified {
		query, args = query+" AND kind = ?", append(args, q.Kind.String())
	}
	rows, err := s.r.QueryContext(ctx, query+" ORDER BY window_start, id", args...)
	if err != nil {
		return nil, fmt.Errorf("rollups: %w", err)
	}
	defer rows.Close()
	out := []model.Rollup{}
	for rows.Next() && len(out) < q.Limit {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("rollups: %w", err)
		}
		var d dbmodel.Rollup
		if err := json.Unmarshal(doc, &d); err != nil {
			return nil, fmt.Errorf("rollups: decode: %w", err)
		}
		r, err := d.ToDomain()
		if err != nil {
			return nil, err
		}
		if q.MatchesDimensions(&r) {
			out = append(out, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rollups: %w", err)
	}
	return out, nil
}

// EdgeSeries reads the edge rollups of one caller, callee and resolution
// whose window started in [start, end) (zero: unbounded), in window order.
func (s *Store) EdgeSeries(ctx context.Context, res time.Duration, caller, callee string, start, end model.Timestamp) ([]model.EdgeRollup, error) {
	if err := storage.CheckEdgeQuery(res, start, end); err != nil {
		return nil, err
	}
	query := `SELECT doc FROM edge_rollups WHERE caller = ? AND callee = ? AND resolution = ?`
	args := []any{caller, callee, int64(res)}
	if start != 0 {
		query, args = query+" AND window_start >= ?", append(args, int64(start))
	}
	if end != 0 {
		query, args = query+" AND window_start < ?", append(args, int64(end))
	}
	return s.queryEdgeRollups(ctx, query+" ORDER BY window_start, id", args...)
}

// queryEdgeRollups runs a query selecting edge rollup documents and decodes them.
func (s *Store) queryEdgeRollups(ctx context.Context, query string, args ...any) ([]model.EdgeRollup, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("edge rollups: %w", err)
	}
	defer rows.Close()
	out := []model.EdgeRollup{}
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("edge rollups: %w", err)
		}
		var d dbmodel.EdgeRollup
		if err := json.Unmarshal(doc, &d); err != nil {
			return nil, fmt.Errorf("edge rollups: decode: %w", err)
		}
		e, err := d.ToDomain()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("edge rollups: %w", err)
	}
	return out, nil
}

// DeleteBefore deletes traces that started, and rollups and edge rollups
// whose window started, before cutoff's UTC day, in one transaction.
func (s *Store) DeleteBefore(ctx context.Context, cutoff time.Time) (storage.RetentionReport, error) {
	day := int64(model.TimestampOf(storage.DayStart(cutoff)))
	var rep storage.RetentionReport
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	defer tx.Rollback()
	for _, q := range []string{
		`DELETE FROM spans WHERE trace_id IN (SELECT trace_id FROM traces WHERE start < ?1)`,
		`DELETE FROM trace_ops WHERE trace_id IN (SELECT trace_id FROM traces WHERE start < ?1)`,
		`DELETE FROM trace_tags WHERE trace_id IN (SELECT trace_id FROM traces WHERE start < ?1)`,
	} {
		if _, err := tx.ExecContext(ctx, q, day); err != nil {
			return rep, fmt.Errorf("retention: %w", err)
		}
	}
	if err := deleteBuckets(ctx, tx, day); err != nil {
		return rep, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM traces WHERE start < ?`, day)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	rep.Traces, _ = res.RowsAffected()
	if res, err = tx.ExecContext(ctx, `DELETE FROM rollups WHERE window_start < ?`, day); err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	rep.Rollups, _ = res.RowsAffected()
	if res, err = tx.ExecContext(ctx, `DELETE FROM edge_rollups WHERE window_start < ?`, day); err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	rep.EdgeRollups, _ = res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return rep, fmt.Errorf("retention: commit: %w", err)
	}
	return rep, nil
}
