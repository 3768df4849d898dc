// Package elasticsearch stores traces, trace summaries and rollups in
// Elasticsearch 7.x or OpenSearch (olivere/elastic v7), implementing
// storage.Store.
//
// # Indices (daily, by the UTC day of the span's / trace's / window's start)
//
//	[prefix-]jaeger-span-YYYY-MM-DD       spans, exactly Jaeger v1's documents and mapping
//	[prefix-]jaeger-service-YYYY-MM-DD    Jaeger's service/operation pairs
//	[prefix-]tracepipe-traces-YYYY-MM-DD  one summary per trace (dbmodel.Trace) with its analysis
//	[prefix-]tracepipe-rollups-<res>-YYYY-MM-DD  rollups (dbmodel.Rollup), res = 1m, 1h, 1d
//	[prefix-]tracepipe-edges-<res>-YYYY-MM-DD    service-edge rollups (dbmodel.EdgeRollup)
//
// An unmodified Jaeger Query pointed at the same cluster (and prefix) finds
// and shows tracepipe's traces. Index templates are installed by New,
// versioned by TemplateVersion. DeleteBefore deletes whole daily indices.
//
// # Document IDs and versions
//
// Span: traceID-spanID; summary: traceID; service: Jaeger's FNV hash of
// service+operation; rollup: Rollup.ID(); edge rollup: EdgeRollup.ID().
// Spans and summaries are indexed
// with version_type=external_gte and the trace's Version, so a re-emitted
// older version is rejected by Elasticsearch (409, counted as stale and
// treated as success) and never overwrites a newer one; the same or a newer
// version overwrites. Rollups, edge rollups and the Jaeger dependency
// documents written with daily edge rollups are indexed the same way with
// their Version (the aggregator's partials-log position), so a write from an
// aggregator that lost its partition cannot replace a newer one; Version 0
// overwrites unconditionally.
//
// Under storage.WithFill (replay) nothing stored is changed: spans and
// summaries are indexed with version_type=external (only a strictly newer
// trace version replaces), and rollups, edge rollups, dependency documents
// and Jaeger service documents with op_type=create (written only when no
// document has the ID). The 409s of both count as stale and are success.
// A document created this way has Elasticsearch's internal _version 1 (create
// takes no external version), so any later normal write of its ID replaces it.
// (A service document is deterministic, {serviceName, operationName} under
// Jaeger's ID in the index of the span's day, so rewriting it would store
// the same source; create leaves even its _version alone.)
//
// # Write path and acknowledgement
//
// WriteTraces/WriteRollups/WriteEdgeRollups hand their documents to one writer that merges
// concurrent calls into bulk requests (by count, bytes and a flush interval)
// sent by Config.Workers goroutines, and return once Elasticsearch
// acknowledged every document (refresh=false by default: acknowledged means
// durable in the translog, searchable after the next refresh). Transient
// failures (429, 5xx, connection errors) are retried with exponential
// backoff; documents rejected for good go to Config.DeadLetter. Callers
// commit their Kafka offsets only after the call returned nil.
//
// # Metrics (registered on Config.Registerer)
//
//	tracepipe_es_bulk_requests_total{result}   bulk requests (ok, error)
//	tracepipe_es_docs_written_total{kind}      acknowledged docs (span, service, trace, rollup, edge)
//	tracepipe_es_retries_total{reason}         docs resent (429, 5xx, connection)
//	tracepipe_es_failures_total{reason}        docs rejected for good, by error type
//	tracepipe_es_stale_versions_total          docs not written because the store has them (409: a newer
//	                                           version; under fill, also an equal one or any doc of the ID)
//	tracepipe_es_bulk_duration_seconds         bulk request latency
//	tracepipe_es_pending_docs                  docs accepted and not yet acknowledged
package elasticsearch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/olivere/elastic/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
)

// Config configures a Store. Zero fields take the defaults shown.
type Config struct {
	URLs         []string // required, e.g. http://127.0.0.1:9200
	IndexPrefix  string   // optional; joined with "-"
	PromotedTags []string // default model.DefaultPromotedTags()
	// SpanOptions are Jaeger's tag layout options (default: nested tags, like Jaeger).
	SpanOptions dbmodel.SpanOptions
	Shards      int // new indices' shards (default 1)
	Replicas    int // new indices' replicas (default 0; -1 is read as 0)
	// RefreshInterval is new indices' index.refresh_interval: how long
	// acknowledged documents may stay unsearchable. Default 10s, or 1s when
	// Refresh is "wait_for" (which waits for the next scheduled refresh).
	// Each refresh writes a new segment that merges must rewrite, so a
	// longer interval costs the engine less CPU per document (see
	// BenchmarkEngineCPU and the README's performance table).
	RefreshInterval time.Duration
	// Codec is new indices' index.codec: "" (the engine's default, LZ4
	// stored fields) or "best_compression" (DEFLATE: smaller _source on
	// disk, more engine CPU when merging and fetching).
	Codec string
	// Refresh is the bulk refresh parameter: "" (default, false), "wait_for" or
	// "true". Tests use wait_for so that writes are searchable on return.
	Refresh         string
	BatchDocs       int           // docs per bulk request (default 5000)
	BatchBytes      int           // bytes per bulk request (default 8 MiB)
	FlushInterval   time.Duration // max wait of a partial batch (default 100ms)
	Workers         int           // concurrent bulk requests (default 2)
	QueueRequests   int           // write calls waiting to be batched (default 64)
	MaxRetries      int           // resends of a transient failure (default 8)
	RetryBackoff    time.Duration // first backoff (default 100ms), doubled per retry
	MaxRetryBackoff time.Duration // backoff cap (default 10s)
	CloseTimeout    time.Duration // how long Close keeps retrying pending docs (default 30s)
	// RequestTimeout bounds one bulk request (default 1m). One that times
	// out (a paused engine, a network that drops packets) is retried like a
	// refused connection; without it, it could hang until the kernel gives
	// up on the connection, long after the engine is back.
	RequestTimeout time.Duration
	// SkipTemplates leaves index templates alone: for read-only users (the
	// query command), which create no index.
	SkipTemplates bool
	// ServiceCacheSize bounds the remembered (day, service, operation) pairs
	// whose jaeger-service document was written (default 100000; then reset).
	ServiceCacheSize int
	DeadLetter       DeadLetter            // optional; see DeadLetter
	Registerer       prometheus.Registerer // optional
	Logger           *slog.Logger          // optional
	// HTTPClient, when set, is used as it is (TLS is then ignored).
	HTTPClient *http.Client
	// Username and Password authenticate with HTTP basic auth; APIKey, the
	// base64 "id:api_key" Elasticsearch returns as "encoded", with an
	// "Authorization: ApiKey …" header instead. At most one of the two.
	Username, Password string
	APIKey             string
	// TLS verifies https:// URLs and presents a client certificate.
	TLS TLSConfig
}

// TLSConfig configures TLS to https:// URLs. With no CAFile the system
// roots verify the cluster's certificate; CertFile and KeyFile (both or
// neither) present a client certificate.
type TLSConfig struct {
	CAFile, CertFile, KeyFile string
	ServerName                string // overrides the name checked in the certificate
	InsecureSkipVerify        bool   // tests only: accepts any certificate
}

func (t TLSConfig) set() bool { return t != TLSConfig{} }

// clientConfig builds the *tls.Config of t, reading its files.
func (t TLSConfig) clientConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, documented as tests only
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("elasticsearch TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("elasticsearch TLS CA file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("elasticsearch TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c *Config) defaults() {
	if c.PromotedTags == nil {
		c.PromotedTags = model.DefaultPromotedTags()
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Shards, 1)
	if c.Replicas < 0 {
		c.Replicas = 0
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = 10 * time.Second
		if c.Refresh == "wait_for" {
			c.RefreshInterval = time.Second
		}
	}
	def(&c.BatchDocs, 5000)
	def(&c.BatchBytes, 8<<20)
	defD(&c.FlushInterval, 100*time.Millisecond)
	def(&c.Workers, 2)
	def(&c.QueueRequests, 64)
	def(&c.MaxRetries, 8)
	defD(&c.RetryBackoff, 100*time.Millisecond)
	defD(&c.MaxRetryBackoff, 10*time.Second)
	defD(&c.CloseTimeout, 30*time.Second)
	defD(&c.RequestTimeout, time.Minute)
	def(&c.ServiceCacheSize, 100000)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem a user must fix, joined; it does not
// change c and reads no file (New does).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("elasticsearch: "+format, a...)) }
	if len(c.URLs) == 0 {
		bad("no URL given")
	}
	https := false
	for _, u := range c.URLs {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			bad("URL %q must start with http:// or https://", u)
		}
		https = https || strings.HasPrefix(u, "https://")
	}
	switch c.Refresh {
	case "", "false", "true", "wait_for":
	default:
		bad("refresh %q: want false, true or wait_for", c.Refresh)
	}
	switch c.Codec {
	case "", "default", "best_compression":
	default:
		return fmt.Errorf("elasticsearch: codec %q: want default or best_compression", c.Codec)
	}
	if strings.ContainsAny(c.IndexPrefix, `*?"<>|, /\#:`) || c.IndexPrefix != strings.ToLower(c.IndexPrefix) {
		bad("index prefix %q must be lowercase without *?\"<>|,/\\#: or spaces", c.IndexPrefix)
	}
	seen := map[string]bool{}
	for _, k := range c.PromotedTags {
		if k == "" || seen[k] {
			bad("empty or repeated promoted tag %q", k)
		}
		seen[k] = true
	}
	if c.Replicas < -1 {
		bad("replicas %d must not be negative", c.Replicas)
	}
	if c.APIKey != "" && (c.Username != "" || c.Password != "") {
		bad("give an API key or a user name and password, not both")
	}
	if c.Password != "" && c.Username == "" {
		bad("a password needs a user name")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("a TLS client certificate needs both a certificate and a key file")
	}
	if c.TLS.set() && !https && len(c.URLs) > 0 {
		bad("TLS options are set but no URL is https://")
	}
	return errors.Join(errs...)
}

// Store is an Elasticsearch backend. Close it to flush pending writes.
type Store struct {
	c   *elastic.Client
	cfg Config
	x   indices
	w   *bulkWriter

	mu       sync.Mutex
	services map[serviceKey]struct{} // service documents written by this process
}

var _ storage.Store = (*Store)(nil)

// New connects, installs the index templates, and starts the writer.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []elastic.ClientOptionFunc{
		elastic.SetURL(cfg.URLs...), elastic.SetSniff(false), elastic.SetHealthcheck(false),
		elastic.SetRetrier(elastic.NewStopRetrier()), // the writer retries itself
	}
	switch {
	case cfg.HTTPClient != nil:
		opts = append(opts, elastic.SetHttpClient(cfg.HTTPClient))
	case cfg.TLS.set():
		tlsCfg, err := cfg.TLS.clientConfig()
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		opts = append(opts, elastic.SetHttpClient(&http.Client{Transport: tr}))
	}
	if cfg.Username != "" {
		opts = append(opts, elastic.SetBasicAuth(cfg.Username, cfg.Password))
	}
	if cfg.APIKey != "" {
		opts = append(opts, elastic.SetHeaders(http.Header{"Authorization": []string{"ApiKey " + cfg.APIKey}}))
	}
	c, err := elastic.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: %w", err)
	}
	x := newIndices(cfg.IndexPrefix)
	if !cfg.SkipTemplates {
		if err := installTemplates(ctx, c, x, settingsOf(cfg)); err != nil {
			c.Stop()
			return nil, fmt.Errorf("elasticsearch %s: %w", strings.Join(cfg.URLs, ","), err)
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		c.Stop()
		return nil, err
	}
	return &Store{c: c, cfg: cfg, x: x, w: newBulkWriter(c, cfg, m, cfg.Logger), services: map[serviceKey]struct{}{}}, nil
}

// Close sends pending documents (retrying for at most CloseTimeout) and
// stops the writer. Writes after Close fail.
func (s *Store) Close() error {
	s.w.close()
	s.c.Stop()
	return nil
}

// WriteTraces indexes each trace's spans, its Jaeger service documents and
// its summary, and returns when all are acknowledged (see package doc).
// Under storage.WithFill only a strictly newer version replaces a stored one.
func (s *Store) WriteTraces(ctx context.Context, traces []model.AssembledTrace) error {
	fill := storage.Fill(ctx)
	traceCond, serviceCond := ifNotOlder, always
	if fill {
		traceCond, serviceCond = ifNewer, ifMissing
	}
	var docs []doc
	// The span documents share one buffer, each a capped slice of it.
	var buf []byte
	days := dayIndex{x: s.x}
	for i := range traces {
		at := &traces[i]
		v := int64(at.Version)
		if v <= 0 {
			v = 1
		}
		for _, sp := range at.Trace.Spans {
			if cap(buf)-len(buf) < 4096 {
				buf = make([]byte, 0, 256<<10)
			}
			n := len(buf)
			buf = dbmodel.AppendSpanJSON(buf, sp, s.cfg.SpanOptions)
			body := buf[n:len(buf):len(buf)]
			spanIndex, serviceIndex := days.of(sp.Start)
			docs = append(docs, doc{kind: "span", index: spanIndex, id: dbmodel.SpanDocID(sp.TraceID, sp.SpanID), cond: traceCond, version: v, body: body})
			if sd, ok := s.serviceDoc(sp, serviceIndex); ok {
				sd.cond = serviceCond
				docs = append(docs, sd)
			}
		}
		sum := storage.Summarize(at, s.cfg.PromotedTags)
		td := dbmodel.FromDomainTrace(&sum, &at.Analysis)
		td.Compact()
		body, err := json.Marshal(&td)
		if err != nil {
			return fmt.Errorf("encode trace %s: %w", sum.TraceID, err)
		}
		docs = append(docs, doc{kind: "trace", index: s.x.traces(sum.Start), id: td.TraceID, cond: traceCond, version: v, body: body})
	}
	if err := s.w.submit(ctx, docs); err != nil {
		s.forgetServices(docs)
		return fmt.Errorf("write traces: %w", err)
	}
	return nil
}

// serviceDoc returns the span's jaeger-service document (in index, the
// service index of the span's day) unless this process already wrote it.
func (s *Store) serviceDoc(sp *model.Span, index string) (doc, bool) {
	key := serviceKey{index: index, service: sp.Process.ServiceName, operation: sp.Operation}
	s.mu.Lock()
	if _, ok := s.services[key]; ok {
		s.mu.Unlock()
		return doc{}, false
	}
	if len(s.services) >= s.cfg.ServiceCacheSize {
		clear(s.services)
	}
	s.services[key] = struct{}{}
	s.mu.Unlock()
	svc := dbmodel.Service{ServiceName: sp.Process.ServiceName, OperationName: sp.Operation}
	body, _ := json.Marshal(svc)
	return doc{kind: "service", index: index, id: svc.ID(), body: body, service: key}, true
}

// serviceKey names a jaeger-service document written by this process.
type serviceKey struct{ index, service, operation string }

// dayIndex remembers the span and service index names of the last UTC day
// asked for: the spans of one write mostly share a day, and formatting it
// per span was a noticeable share of the writer's CPU.
type dayIndex struct {
	x             indices
	day           int64
	known         bool
	span, service string
}

func (d *dayIndex) of(t model.Timestamp) (span, service string) {
	n := int64(t) / int64(24*time.Hour)
	if int64(t) < 0 && int64(t)%int64(24*time.Hour) != 0 {
		n--
	}
	if !d.known || n != d.day {
		d.day, d.known, d.span, d.service = n, true, d.x.span(t), d.x.service(t)
	}
	return d.span, d.service
}

// forgetServices drops failed service docs from the cache so a retry rewrites them.
func (s *Store) forgetServices(docs []doc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range docs {
		if d.kind == "service" {
			delete(s.services, d.service)
		}
	}
}

// WriteRollups indexes the rollups under Rollup.ID(), replacing earlier ones
// of a lower or equal Version (see the package doc); under storage.WithFill
// only where no rollup has the ID.
func (s *Store) WriteRollups(ctx context.Context, rollups []model.Rollup) error {
	fill := storage.Fill(ctx)
	docs := make([]doc, 0, len(rollups))
	for i := range rollups {
		r := &rollups[i]
		if r.Resolution <= 0 {
			return fmt.Errorf("write rollup %s/%s: resolution must be positive", r.Service, r.Operation)
		}
		body, err := json.Marshal(dbmodel.FromDomainRollup(r))
		if err != nil {
			return fmt.Errorf("encode rollup: %w", err)
		}
		docs = append(docs, doc{kind: "rollup", index: s.x.rollup(r.Resolution, r.WindowStart), id: r.ID(), cond: rollupCond(fill, r.Version), version: r.Version, body: body})
	}
	if err := s.w.submit(ctx, docs); err != nil {
		return fmt.Errorf("write rollups: %w", err)
	}
	return nil
}

// WriteEdgeRollups indexes the edge rollups under EdgeRollup.ID(), replacing
// earlier ones of a lower or equal Version (under storage.WithFill: only
// where no document has the ID, for the dependency documents too);
// retractions (Calls == 0) are indexed like any other.
func (s *Store) WriteEdgeRollups(ctx context.Context, edges []model.EdgeRollup) error {
	fill := storage.Fill(ctx)
	docs := make([]doc, 0, len(edges))
	for i := range edges {
		e := &edges[i]
		if e.Resolution <= 0 {
			return fmt.Errorf("write edge rollup %s->%s: resolution must be positive", e.Caller, e.Callee)
		}
		body, err := json.Marshal(dbmodel.FromDomainEdgeRollup(e))
		if err != nil {
			return fmt.Errorf("encode edge rollup: %w", err)
		}
		c := rollupCond(fill, e.Version)
		docs = append(docs, doc{kind: "edge", index: s.x.edges(e.Resolution, e.WindowStart), id: e.ID(), cond: c, version: e.Version, body: body})
		if e.Resolution == 24*time.Hour {
			// Jaeger Query's dependency graph: one document per day and
			// edge (Jaeger concatenates the links of every document in
			// range), under the edge rollup's ID so rewrites replace it. A
			// retracted edge keeps its document with no links. It carries
			// the edge rollup's version: an older write loses here too.
			dep, err := json.Marshal(dbmodel.FromDomainDependency(e))
			if err != nil {
				return fmt.Errorf("encode dependency link: %w", err)
			}
			docs = append(docs, doc{kind: "dependency", index: s.x.dependencies(e.WindowStart), id: e.ID(), cond: c, version: e.Version, body: dep})
		}
	}
	if err := s.w.submit(ctx, docs); err != nil {
		return fmt.Errorf("write edge rollups: %w", err)
	}
	return nil
}

// rollupCond is the cond of a rollup, edge rollup or dependency document of
// version v: under fill, written only where missing.
func rollupCond(fill bool, v int64) cond {
	if fill {
		return ifMissing
	}
	return versioned(v)
}

// DeleteBefore deletes this prefix's daily indices of days before cutoff's UTC day.
func (s *Store) DeleteBefore(ctx context.Context, cutoff time.Time) (storage.RetentionReport, error) {
	return deleteBefore(ctx, s.c, s.x, cutoff)
}

// Refresh makes everything written so far searchable (for tests and
// benchmarks that bulk-load with refresh off).
func (s *Store) Refresh(ctx context.Context) error {
	_, err := s.c.Refresh(s.x.prefix+"jaeger-*", s.x.prefix+"tracepipe-*").Do(ctx)
	return err
}
