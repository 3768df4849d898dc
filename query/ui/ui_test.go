package ui

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/query"
)

// newServer serves the UI (and the JSON API under /api/, as the commands
// mount them) over a seeded store.
func newServer(t testing.TB, s Reader, jaeger string) *httptest.Server {
	t.Helper()
	now := func() time.Time { return testNow }
	h, err := New(s, Options{Now: now, JaegerUIURL: jaeger, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", query.NewHandler(s, now, nil))
	mux.Handle("/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func fetch(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusSeeOther && !strings.HasPrefix(ct, "text/html") && !strings.HasPrefix(path, "/static/") {
		t.Errorf("%s: content type %q", path, ct)
	}
	return resp.StatusCode, string(b)
}

func TestPages(t *testing.T) {
	s := seed(t)
	srv := newServer(t, s, "")
	op := "/operation?service=" + slowSvc + "&operation=" + slowOp + "&range=1h"
	tests := []struct {
		path string
		code int
		want []string // in the body
	}{
		{"/", 200, []string{"Bottlenecks", "the last 1 hour"}},
		{"/?range=1h", 200, []string{slowOp}},
		{"/?range=all&service=db&shard=3", 200, []string{"SELECT stock", "in requests with a span of db, shard=3"}},
		{"/?range=15m&start=", 200, nil},
		{"/?range=2w", 400, []string{"Bad parameter: range"}},
		{"/?start=yesterday", 400, []string{"Bad parameter: start"}},
		{"/?start=2026-03-10T12:00&end=2026-03-10T11:00", 400, []string{"Bad parameter: end"}},
		{"/?shrd=3", 400, []string{"Bad parameter: shrd"}},
		{"/?range=1h&start=2020-01-01T00:00&end=2020-01-02T00:00", 200, []string{"No requests in 2020-01-01 00:00:00 to 2020-01-02 00:00:00 UTC", "5 s after its last span"}},
		{"/traces?range=1h", 200, []string{"Slowest requests", "page 1", "next 50"}},
		{"/traces?range=1h&page=2", 200, []string{"page 2", "previous 50"}},
		{"/traces?range=1h&minDuration=fast", 400, []string{"Bad parameter: minDuration"}},
		{"/traces?range=1h&minDuration=2s&maxDuration=1s", 400, []string{"Bad parameter: maxDuration"}},
		{"/traces?range=1h&page=0", 400, []string{"Bad parameter: page"}},
		{"/traces?range=1h&order=oldest", 400, []string{"Bad parameter: order"}},
		{"/traces?range=1h&minDuration=10s", 200, []string{"No requests match"}},
		{"/traces?range=1h&minDuration=1d", 200, []string{"No requests match"}}, // days, as the API and CLI read them
		{"/trace/" + demoID(3).String(), 200, []string{"Bottleneck", slowOp, "GET /checkout"}},
		{"/trace/" + demoID(7).String(), 200, []string{"missing-parent"}},
		{"/trace/" + "abc123", 404, []string{"Not found", "abc123"}},
		{"/trace/not-hex", 400, []string{"Bad parameter: trace ID"}},
		{"/trace?id=" + demoID(3).String(), 303, nil},
		{"/trace?id=zzz", 400, []string{"Bad parameter: id"}},
		{op, 200, []string{"chart-duration", "chart-cp", "chart-share", "chart-calls", "chart-errors", "by shard", "class=\"exemplar\""}},
		{op + "&resolution=1h", 200, []string{"1h windows"}},
		{op + "&resolution=5m", 400, []string{"Bad parameter: resolution"}},
		{"/operation?service=db&range=1h", 400, []string{"Bad parameter: operation"}},
		{"/operation?service=nope&operation=nope&range=1h", 200, []string{"No rollups for nope nope"}},
		{"/services?range=1h", 200, []string{"inventory", "Service graph", "120 calls"}},
		{"/services?start=2020-01-01&end=2020-01-02", 200, []string{"No calls between services"}},
		{"/nope", 404, []string{"No such page"}},
		{"/static/ui.css", 200, nil},
		{"/static/trace.js", 200, nil},
	}
	if resp, err := srv.Client().Post(srv.URL+"/", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, tt := range tests {
		code, body := fetch(t, srv, tt.path)
		if code != tt.code {
			t.Errorf("%s: %d, want %d\n%s", tt.path, code, tt.code, body)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: body lacks %q", tt.path, w)
			}
		}
	}
}

// TestEscaping checks the raw HTML: markup from span data never appears
// unescaped, on any page that shows it.
func TestEscaping(t *testing.T) {
	s := seed(t)
	srv := newServer(t, s, "")
	for _, path := range []string{"/?range=1h", "/traces?range=1h&maxDuration=60ms", "/trace/" + xssID.String(), "/services?range=1h",
		"/operation?range=1h&service=" + url.QueryEscape(xssSvc) + "&operation=" + url.QueryEscape(xssOp)} {
		code, body := fetch(t, srv, path)
		if code != 200 {
			t.Errorf("%s: %d", path, code)
		}
		for _, bad := range []string{"<script>alert", "</script><script>", "<img src=x", "<b>"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: unescaped %q in the page", path, bad)
			}
		}
	}
	if code, _ := fetch(t, srv, "/trace/"+xssID.String()); code != 200 {
		t.Fatal(code)
	}
}
