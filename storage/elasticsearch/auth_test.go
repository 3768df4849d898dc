package elasticsearch

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
)

// securedProxy fronts the real engine with what a secured cluster asks of
// its clients: TLS with the test CA's certificate (and client certificates
// when mtls), and either basic auth (user:s3cret) or the API key "a2V5"
// (401 otherwise). It counts the requests it let through.
func securedProxy(t *testing.T, pki testenv.PKI, mtls bool) (string, *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(esURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var passed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, basic := r.BasicAuth()
		if !(basic && user == "user" && pw == "s3cret") && r.Header.Get("Authorization") != "ApiKey a2V5" {
			w.Header().Set("WWW-Authenticate", `Basic realm="security"`)
			http.Error(w, `{"error":"unauthenticated","status":401}`, http.StatusUnauthorized)
			return
		}
		r.Header.Del("Authorization") // the engine behind runs without security
		passed.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	srv.TLS = pki.ServerTLS(mtls)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, &passed
}

// TestTLSAndAuth connects through TLS and authentication the way a secured
// Elasticsearch or OpenSearch cluster requires: in the full case New
// installs the templates (authenticated writes) and a rollup is written and
// read back; the others read once. Refusals must fail New (templates) or the
// read.
func TestTLSAndAuth(t *testing.T) {
	pki := testenv.NewPKI(t)
	base := esURL(t)
	cases := []struct {
		name    string
		full    bool // install templates, write and read back (slow); else one read
		mtls    bool
		cfg     func(c *Config)
		wantErr string // "" must work
	}{
		{"basic auth with CA", true, false, func(c *Config) { c.Username, c.Password, c.TLS.CAFile = "user", "s3cret", pki.CAFile }, ""},
		{"api key with CA", false, false, func(c *Config) { c.APIKey, c.TLS.CAFile = "a2V5", pki.CAFile }, ""},
		{"client certificate", false, true, func(c *Config) {
			c.APIKey, c.TLS = "a2V5", TLSConfig{CAFile: pki.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile}
		}, ""},
		{"skip verify", false, false, func(c *Config) { c.APIKey, c.TLS.InsecureSkipVerify = "a2V5", true }, ""},
		{"wrong password", false, false, func(c *Config) { c.Username, c.Password, c.TLS.CAFile = "user", "nope", pki.CAFile }, "401"},
		{"no credentials", false, false, func(c *Config) { c.TLS.CAFile = pki.CAFile }, "401"},
		{"unknown CA", false, false, func(c *Config) { c.APIKey = "a2V5" }, "certificate"},
		// TLS 1.3 refuses a missing client certificate after the client's
		// handshake is done: the client sees the connection closed (or,
		// writing its request into it, a broken pipe).
		{"no client certificate", false, true, func(c *Config) { c.APIKey, c.TLS.CAFile = "a2V5", pki.CAFile }, "certificate|closed|reset|EOF|broken pipe"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, passed := securedProxy(t, pki, tc.mtls)
			cfg := Config{URLs: []string{u}, IndexPrefix: testPrefix(t, base), Refresh: "wait_for", MaxRetries: 1, CloseTimeout: time.Second}
			cfg.SkipTemplates = !tc.full
			tc.cfg(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := New(ctx, cfg)
			if err == nil && !tc.full {
				_, _, err = s.Services(ctx)
			}
			if s != nil {
				defer s.Close()
			}
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("connected, want an error mentioning %q", tc.wantErr)
				}
				if !containsAny(err.Error(), strings.Split(tc.wantErr, "|")) {
					t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if passed.Load() == 0 {
				t.Fatal("no request went through the proxy")
			}
			if !tc.full {
				return
			}
			start := model.Timestamp(time.Now().Truncate(time.Minute).UnixNano())
			r := model.Rollup{Service: "svc", Operation: "op", Kind: model.KindServer, Resolution: time.Minute, WindowStart: start, Count: 3}
			if err := s.WriteRollups(ctx, []model.Rollup{r}); err != nil {
				t.Fatal(err)
			}
			got, err := s.RollupSeries(ctx, model.RollupQuery{Service: "svc", Operation: "op", Resolution: time.Minute, Start: start, End: start + model.Timestamp(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Count != 3 {
				t.Fatalf("read back %+v", got)
			}
		})
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestValidateJoinsWithoutChanging(t *testing.T) {
	cfg := Config{URLs: []string{"ftp://x", "http://y"}, Refresh: "sometimes", IndexPrefix: "Bad", Username: "u", APIKey: "k",
		TLS: TLSConfig{CertFile: "c.pem"}, PromotedTags: []string{"a", "a"}}
	before := cfg
	err := cfg.Validate()
	for _, want := range []string{"must start with http", "refresh", "index prefix", "repeated promoted tag", "not both", "both a certificate and a key", "no URL is https"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if cfg.Refresh != before.Refresh || cfg.IndexPrefix != before.IndexPrefix || cfg.TLS != before.TLS || cfg.Shards != 0 || cfg.Logger != nil {
		t.Error("Validate changed the config")
	}
}
