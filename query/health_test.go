package query

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestWithOps(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "tracepipe_query_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "inner "+r.URL.Path)
	})
	for _, tc := range []struct {
		desc, method, path string
		g                  prometheus.Gatherer
		code               int
		body               string
	}{
		{"healthz answers ok", "GET", "/healthz", reg, 200, "ok\n"},
		{"healthz answers HEAD", "HEAD", "/healthz", reg, 200, ""},
		{"metrics from the gatherer", "GET", "/metrics", reg, 200, "tracepipe_query_test_total 1"},
		{"other paths reach the handler", "GET", "/api/v1/services", reg, http.StatusTeapot, "inner /api/v1/services"},
		{"the UI root reaches the handler", "GET", "/", reg, http.StatusTeapot, "inner /"},
		{"without a gatherer /metrics is the handler's", "GET", "/metrics", nil, http.StatusTeapot, "inner /metrics"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WithOps(inner, tc.g).ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.code {
				t.Errorf("status %d, want %d", rec.Code, tc.code)
			}
			if !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("body %q does not contain %q", rec.Body.String(), tc.body)
			}
		})
	}
}
