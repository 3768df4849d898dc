package ui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/query"
)

// TestRefusedPages: when query.Limit refuses a page (queue full, or its
// budget ran out without an answer), a person gets a 503 HTML page saying
// why and when to reload, with Retry-After; the JSON API under /api/ keeps
// its JSON 503.
func TestRefusedPages(t *testing.T) {
	s := seed(t)
	now := func() time.Time { return testNow }
	web, err := New(s, Options{Now: now, API: query.NewHandler(s, now, nil)})
	if err != nil {
		t.Fatal(err)
	}
	held, release := make(chan struct{}), make(chan struct{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hold": // takes the only heavy slot until released
			close(held)
			<-release
		case "/mute": // answers nothing within its budget
			<-r.Context().Done()
		default:
			web.ServeHTTP(w, r)
		}
	})
	// Every path but /mute is heavy; the short budget is /mute's alone, so
	// that the pages have time under the race detector on a loaded machine.
	heavy := query.Lane{Concurrency: 1, Queue: 0, Wait: time.Second, Budget: time.Minute, RetryAfter: 3 * time.Second}
	cheap := query.Lane{Concurrency: 1, Queue: 0, Wait: time.Second, Budget: 200 * time.Millisecond, RetryAfter: 3 * time.Second}
	lim, err := query.Limit(next, query.Limits{Cheap: cheap, Heavy: heavy, IsCheap: func(r *http.Request) bool { return r.URL.Path == "/mute" }},
		query.LimitOptions{Refused: web.Refused})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lim)
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := srv.Client().Get(srv.URL + "/hold")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-held
	for _, path := range []string{"/", "/traces?shard=1", "/services"} {
		resp, body := get(path)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s while busy: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Retry-After") != "3" {
			t.Errorf("%s: Retry-After %q, want 3", path, resp.Header.Get("Retry-After"))
		}
		for _, want := range []string{"Busy, try again shortly", "too many heavy queries waiting", "Reload it in 3 s", resp.Header.Get("X-Request-Id")} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: page lacks %q:\n%s", path, want, body)
			}
		}
	}
	resp, body := get("/api/v1/traces?limit=1")
	var e struct {
		Error     string `json:"error"`
		RequestID string `json:"requestId"`
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" || json.Unmarshal([]byte(body), &e) != nil ||
		!strings.Contains(e.Error, "too many heavy queries") || e.RequestID != resp.Header.Get("X-Request-Id") {
		t.Errorf("API while busy: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	close(release)
	<-done

	resp, body = get("/mute")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" ||
		!strings.Contains(body, "over its time budget of 200ms") || !strings.Contains(body, "<html") {
		t.Errorf("page over budget: %d Retry-After %q\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, _ := get("/"); resp.StatusCode != http.StatusOK {
		t.Errorf("home after release: %d", resp.StatusCode)
	}
}
