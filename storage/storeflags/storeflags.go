// Package storeflags is the one way a tracepipe binary opens its store from
// flags: the embedded store (SQLite file, --store) or Elasticsearch/OpenSearch
// (--es-url) with its index prefix, promoted tags, index settings, bulk
// writer, TLS and authentication. `tracepipe run`, `tracepipe query` and
// cmd/aggregator register the same flags (internal/config's convention: each
// also reads TRACEPIPE_<NAME>) and call Open.
//
// The Elasticsearch flag names follow Jaeger's (--es.num-shards,
// --es.bulk.actions, --es.tls.ca, --es.username, ...) with '-' for '.'.
package storeflags

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/dirlock"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

// DefaultPath is the embedded store's file unless --store says otherwise.
const DefaultPath = "tracepipe-data/tracepipe.db"

// Config selects and configures a store. Default gives the defaults; the
// zero values of the Elasticsearch settings also mean their defaults.
type Config struct {
	// ESURLs selects Elasticsearch/OpenSearch; empty selects the embedded
	// store at Path.
	ESURLs       []string
	Path         string
	IndexPrefix  string
	PromotedTags []string // searchable tag keys (both stores)

	// Elasticsearch index settings and bulk writer (elasticsearch.Config).
	Shards, Replicas  int
	BulkActions       int // documents per bulk request
	BulkBytes         int // bytes per bulk request
	BulkFlushInterval time.Duration
	BulkWorkers       int
	// RefreshInterval and Codec are new indices' index.refresh_interval
	// and index.codec (elasticsearch.Config).
	RefreshInterval time.Duration
	Codec           string
	// Jaeger's tags-as-fields options (dbmodel.SpanOptions): tags stored
	// as fields of the span document instead of nested documents.
	TagsAsFieldsAll bool
	// TagsAsFieldsWellKnown stores dbmodel.WellKnownFieldKeys as fields
	// (default true).
	TagsAsFieldsWellKnown bool
	TagsAsFieldsKeys      []string
	TagsDotReplacement    string

	// Elasticsearch authentication (basic or API key) and TLS.
	Username, Password string
	APIKey             string
	TLS                elasticsearch.TLSConfig
}

// Default returns the defaults: the embedded store at DefaultPath, the
// default promoted tags, and elasticsearch.Config's defaults written out.
func Default() Config {
	return Config{
		Path:                  DefaultPath,
		PromotedTags:          model.DefaultPromotedTags(),
		Shards:                1,
		BulkActions:           5000,
		BulkBytes:             8 << 20,
		BulkFlushInterval:     100 * time.Millisecond,
		BulkWorkers:           2,
		RefreshInterval:       10 * time.Second,
		TagsAsFieldsWellKnown: true,
	}
}

// RegisterFlags binds c to flags named prefix+name on fs, with c's current
// values as defaults. Passwords and API keys are better given by their
// environment variables or files than on the command line, where other
// users of the machine can see them.
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	p := func(name string) string { return prefix + name }
	fs.Var(config.List{P: &c.ESURLs}, p("es-url"), "Elasticsearch/OpenSearch URL(s), comma-separated (default: the embedded store)")
	fs.StringVar(&c.Path, p("store"), c.Path, "embedded store file, used without --"+p("es-url"))
	fs.StringVar(&c.IndexPrefix, p("index-prefix"), c.IndexPrefix, "Elasticsearch index prefix (joined with '-'; Jaeger's --es.index-prefix)")
	fs.Var(config.List{P: &c.PromotedTags}, p("promoted-tags"), "searchable tag keys, comma-separated (trace summaries written from now on carry them)")
	fs.IntVar(&c.Shards, p("es-num-shards"), c.Shards, "Elasticsearch: shards of each new daily index")
	fs.IntVar(&c.Replicas, p("es-num-replicas"), c.Replicas, "Elasticsearch: replicas of each new daily index")
	fs.IntVar(&c.BulkActions, p("es-bulk-actions"), c.BulkActions, "Elasticsearch: documents per bulk request")
	fs.IntVar(&c.BulkBytes, p("es-bulk-size"), c.BulkBytes, "Elasticsearch: bytes per bulk request")
	fs.DurationVar(&c.BulkFlushInterval, p("es-bulk-flush-interval"), c.BulkFlushInterval, "Elasticsearch: longest wait of a partly filled bulk request")
	fs.IntVar(&c.BulkWorkers, p("es-bulk-workers"), c.BulkWorkers, "Elasticsearch: bulk requests in flight at once")
	fs.DurationVar(&c.RefreshInterval, p("es-refresh-interval"), c.RefreshInterval, "Elasticsearch: refresh interval of each new daily index, how long written documents may stay unsearchable (longer: less engine CPU per span)")
	fs.StringVar(&c.Codec, p("es-index-codec"), c.Codec, "Elasticsearch: codec of each new daily index: empty (the engine's default) or best_compression (smaller, more engine CPU)")
	fs.BoolVar(&c.TagsAsFieldsAll, p("es-tags-as-fields-all"), c.TagsAsFieldsAll, "Elasticsearch: store every span and process tag as a field of the span document instead of a nested document (Jaeger's --es.tags-as-fields.all; less engine CPU, more mapped fields)")
	fs.BoolVar(&c.TagsAsFieldsWellKnown, p("es-tags-as-fields-well-known"), c.TagsAsFieldsWellKnown, "Elasticsearch: store the tags of well-known keys (process tags such as hostname, ip, host.name; span.kind, error, http.*, db.*, rpc.*, peer.service ...: the README lists them) as fields of the span document, not nested documents (a fixed list: the mapping stays bounded; false: Jaeger's default layout)")
	fs.Var(config.List{P: &c.TagsAsFieldsKeys}, p("es-tags-as-fields-keys"), "Elasticsearch: tag keys stored as fields of the span document, comma-separated (Jaeger's --es.tags-as-fields.config-file keys)")
	fs.StringVar(&c.TagsDotReplacement, p("es-tags-as-fields-dot-replacement"), c.TagsDotReplacement, "Elasticsearch: replaces '.' in the keys of tags stored as fields (Jaeger's --es.tags-as-fields.dot-replacement; empty: @)")
	fs.StringVar(&c.Username, p("es-username"), c.Username, "Elasticsearch basic-auth user name")
	fs.StringVar(&c.Password, p("es-password"), c.Password, "Elasticsearch basic-auth password (prefer the environment variable or --"+p("es-password-file")+")")
	fs.Var(secretFile{&c.Password}, p("es-password-file"), "file holding the Elasticsearch password (trailing newline ignored)")
	fs.StringVar(&c.APIKey, p("es-api-key"), c.APIKey, "Elasticsearch API key, the base64 'encoded' value (sent as Authorization: ApiKey; prefer the environment variable or --"+p("es-api-key-file")+")")
	fs.Var(secretFile{&c.APIKey}, p("es-api-key-file"), "file holding the Elasticsearch API key (trailing newline ignored)")
	fs.StringVar(&c.TLS.CAFile, p("es-tls-ca"), c.TLS.CAFile, "CA certificate file (PEM) verifying https:// Elasticsearch URLs (empty: the system roots)")
	fs.StringVar(&c.TLS.CertFile, p("es-tls-cert"), c.TLS.CertFile, "client certificate file (PEM) for Elasticsearch (with --"+p("es-tls-key")+")")
	fs.StringVar(&c.TLS.KeyFile, p("es-tls-key"), c.TLS.KeyFile, "client private key file (PEM) for Elasticsearch")
	fs.StringVar(&c.TLS.ServerName, p("es-tls-server-name"), c.TLS.ServerName, "host name checked in Elasticsearch's certificate (default: the URL's host)")
	fs.BoolVar(&c.TLS.InsecureSkipVerify, p("es-tls-skip-host-verify"), c.TLS.InsecureSkipVerify, "accept any Elasticsearch certificate (tests only: anyone in the path can read and change the traffic)")
}

// secretFile sets a secret from a file when the flag is set; it shows
// nothing.
type secretFile struct{ p *string }

func (f secretFile) String() string { return "" }

func (f secretFile) Set(path string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	*f.p = strings.TrimRight(string(b), "\r\n")
	return nil
}

// Elasticsearch returns the Elasticsearch configuration of c (o's
// components added).
func (c *Config) Elasticsearch(o Options) elasticsearch.Config {
	return elasticsearch.Config{
		URLs: c.ESURLs, IndexPrefix: c.IndexPrefix, PromotedTags: c.PromotedTags,
		Shards: c.Shards, Replicas: c.Replicas,
		BatchDocs: c.BulkActions, BatchBytes: c.BulkBytes, FlushInterval: c.BulkFlushInterval, Workers: c.BulkWorkers,
		RefreshInterval: c.RefreshInterval, Codec: c.Codec,
		SpanOptions: dbmodel.SpanOptions{AllTagsAsFields: c.TagsAsFieldsAll, WellKnownTagsAsFields: c.TagsAsFieldsWellKnown, TagKeysAsFields: c.TagsAsFieldsKeys, DotReplacement: c.TagsDotReplacement},
		Username:    c.Username, Password: c.Password, APIKey: c.APIKey, TLS: c.TLS,
		SkipTemplates: o.ReadOnly, DeadLetter: o.DeadLetter, Registerer: o.Registerer, Logger: o.Logger,
	}
}

// Validate reports every problem, joined; it does not change c and reads
// no file.
func (c *Config) Validate() error {
	var errs []error
	if len(c.ESURLs) > 0 {
		es := c.Elasticsearch(Options{})
		if err := es.Validate(); err != nil {
			errs = append(errs, err)
		}
		for _, n := range []struct {
			name string
			v    int
		}{{"--es-num-shards", c.Shards}, {"--es-bulk-actions", c.BulkActions}, {"--es-bulk-size", c.BulkBytes}, {"--es-bulk-workers", c.BulkWorkers}} {
			if n.v < 0 {
				errs = append(errs, fmt.Errorf("%s must not be negative (0: the default), not %d", n.name, n.v))
			}
		}
		if c.Replicas < 0 {
			errs = append(errs, fmt.Errorf("--es-num-replicas must not be negative, not %d", c.Replicas))
		}
		if c.RefreshInterval < 0 {
			errs = append(errs, fmt.Errorf("--es-refresh-interval must not be negative (0: the default), not %v", c.RefreshInterval))
		}
		if c.BulkFlushInterval < 0 {
			errs = append(errs, fmt.Errorf("--es-bulk-flush-interval must not be negative, not %v", c.BulkFlushInterval))
		}
	} else {
		if c.Path == "" {
			errs = append(errs, errors.New("--store must not be empty without --es-url"))
		}
		if c.Username != "" || c.Password != "" || c.APIKey != "" || c.TLS != (elasticsearch.TLSConfig{}) {
			errs = append(errs, errors.New("--es-username, --es-password, --es-api-key and --es-tls-* need --es-url"))
		}
	}
	seen := map[string]bool{}
	for _, k := range c.PromotedTags {
		if seen[k] {
			errs = append(errs, fmt.Errorf("--promoted-tags: %q is repeated", k))
		}
		seen[k] = true
	}
	return errors.Join(errs...)
}

// Options are what Open needs beyond the flags.
type Options struct {
	// ReadOnly opens for queries: Elasticsearch's index templates are left
	// alone and an embedded store must exist already.
	ReadOnly bool
	// DeadLetter takes documents Elasticsearch rejects for good.
	DeadLetter elasticsearch.DeadLetter
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Open validates c and opens the store it selects. Close it when done.
func (c *Config) Open(ctx context.Context, o Options) (storage.Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(c.ESURLs) > 0 {
		s, err := elasticsearch.New(ctx, c.Elasticsearch(o))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	if o.ReadOnly {
		if _, err := os.Stat(c.Path); err != nil {
			return nil, fmt.Errorf("no embedded store at %s (pass --store PATH or --es-url URL): %w", c.Path, err)
		}
	}
	s, err := embedded.Open(ctx, embedded.Options{Path: c.Path, PromotedTags: c.PromotedTags})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// OpenWriter is Open for a process that writes the store: with the
// embedded store it first takes the store directory's lock
// (LockEmbedded), so a second writer fails naming the holder. close
// closes the store, then releases the lock.
func (c *Config) OpenWriter(ctx context.Context, o Options) (s storage.Store, close func(), err error) {
	unlock, err := c.LockEmbedded()
	if err != nil {
		return nil, nil, err
	}
	if s, err = c.Open(ctx, o); err != nil {
		unlock()
		return nil, nil, fmt.Errorf("open store: %w", err)
	}
	return s, func() { s.Close(); unlock() }, nil
}

// LockEmbedded is for a process that writes the store: with the embedded
// store it creates the store's directory and locks it (internal/dirlock),
// so that a second writer fails with an error naming the holder, until
// unlock is called; with Elasticsearch it does nothing.
func (c *Config) LockEmbedded() (unlock func(), err error) {
	if len(c.ESURLs) > 0 {
		return func() {}, nil
	}
	dir := filepath.Dir(c.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lock, err := dirlock.Acquire(dir)
	if err != nil {
		return nil, err
	}
	return func() { lock.Unlock() }, nil
}

// Describe names the selected store for logs: its URLs or its file.
func (c *Config) Describe() string {
	if len(c.ESURLs) > 0 {
		return "elasticsearch " + strings.Join(c.ESURLs, ",")
	}
	return "embedded " + c.Path
}
