package storeflags

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

func parse(t *testing.T, prefix string, args []string, env map[string]string) Config {
	t.Helper()
	c := Default()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs, prefix)
	if err := config.Parse(fs, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		prefix string
		args   []string
		env    map[string]string
		want   func(c Config) bool
		errs   []string
	}{
		{name: "defaults: embedded", want: func(c Config) bool { return len(c.ESURLs) == 0 && c.Path == DefaultPath && len(c.PromotedTags) == 4 }},
		{name: "elasticsearch from env, flags win", args: []string{"--es-num-replicas=2", "--es-bulk-actions=100"},
			env: map[string]string{"TRACEPIPE_ES_URL": "https://a:9200, https://b:9200", "TRACEPIPE_ES_NUM_REPLICAS": "1", "TRACEPIPE_ES_USERNAME": "u",
				"TRACEPIPE_ES_PASSWORD": "p", "TRACEPIPE_ES_TLS_CA": "/ca.pem", "TRACEPIPE_ES_BULK_FLUSH_INTERVAL": "1s"},
			want: func(c Config) bool {
				e := c.Elasticsearch(Options{})
				return strings.Join(e.URLs, ",") == "https://a:9200,https://b:9200" && e.Replicas == 2 && e.BatchDocs == 100 &&
					e.Username == "u" && e.Password == "p" && e.TLS.CAFile == "/ca.pem" && e.FlushInterval == time.Second
			}},
		{name: "password and api key files", args: []string{"--es-url=http://x:9200", "--es-username=u", "--es-password-file=" + pw},
			want: func(c Config) bool { return c.Password == "from-file" }},
		{name: "prefixed", prefix: "store-", args: []string{"--store-promoted-tags=a,b"}, env: map[string]string{"TRACEPIPE_STORE_STORE": "/x.db"},
			want: func(c Config) bool { return c.Path == "/x.db" && strings.Join(c.PromotedTags, ",") == "a,b" }},
		{name: "every problem at once", args: []string{"--es-url=ftp://x", "--es-num-replicas=-1", "--es-bulk-workers=-2", "--es-api-key=k", "--es-username=u", "--promoted-tags=a,a"},
			errs: []string{"must start with http", "--es-num-replicas must not be negative", "--es-bulk-workers", "not both", `"a" is repeated`}},
		{name: "tls without https", args: []string{"--es-url=http://x:9200", "--es-tls-ca=/ca.pem"}, errs: []string{"no URL is https"}},
		{name: "es settings without es", args: []string{"--es-api-key=k"}, errs: []string{"need --es-url"}},
		{name: "empty store path", args: []string{"--store="}, errs: []string{"--store must not be empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := parse(t, c.prefix, c.args, c.env)
			if c.want != nil && !c.want(cfg) {
				t.Errorf("config %+v", cfg)
			}
			before := fmt.Sprintf("%#v", cfg)
			err := cfg.Validate()
			if after := fmt.Sprintf("%#v", cfg); after != before {
				t.Errorf("Validate changed the config:\n%s\n%s", before, after)
			}
			if len(c.errs) == 0 && err != nil {
				t.Fatal(err)
			}
			for _, w := range c.errs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
		})
	}
}

func TestOpenEmbedded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "t.db")
	cfg := parse(t, "", []string{"--store=" + path, "--promoted-tags=shard"}, nil)
	if _, err := cfg.Open(ctx, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "no embedded store") {
		t.Fatalf("read-only open of a missing store: %v", err)
	}
	s, err := cfg.Open(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*embedded.Store); !ok {
		t.Fatalf("%T", s)
	}
	s.Close()
	s, err = cfg.Open(ctx, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestOpenElasticsearch(t *testing.T) {
	url := testenv.Elasticsearch(t)
	cfg := parse(t, "", []string{"--es-url=" + url, "--index-prefix=" + testenv.Name(t, "storeflags")}, nil)
	s, err := cfg.Open(context.Background(), Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*elasticsearch.Store); !ok {
		t.Fatalf("%T", s)
	}
	if _, _, err := s.Services(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestLockEmbedded: a second writer of one embedded store is refused while
// the first holds it, and admitted once it let go; Elasticsearch needs no
// lock.
func TestLockEmbedded(t *testing.T) {
	c := Default()
	c.Path = filepath.Join(t.TempDir(), "data", "tracepipe.db")
	unlock, err := c.LockEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LockEmbedded(); err == nil {
		t.Fatal("a second writer got the lock")
	}
	unlock()
	unlock2, err := c.LockEmbedded()
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	unlock2()
	es := Default()
	es.ESURLs = []string{"http://127.0.0.1:9200"}
	for range 2 {
		u, err := es.LockEmbedded()
		if err != nil {
			t.Fatal(err)
		}
		defer u()
	}
}

// TestOpenWriter: the embedded store opened for writing holds its lock
// until closed.
func TestOpenWriter(t *testing.T) {
	c := Default()
	c.Path = filepath.Join(t.TempDir(), "data", "tracepipe.db")
	ctx := context.Background()
	_, closeStore, err := c.OpenWriter(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.OpenWriter(ctx, Options{}); err == nil {
		t.Fatal("a second writer opened the store")
	}
	closeStore()
	_, closeStore, err = c.OpenWriter(ctx, Options{})
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	closeStore()
}
