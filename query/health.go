package query

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// WithOps serves /healthz and /metrics beside h, outside h's limits, so
// that a probe or a scrape is answered even when every query lane is full:
//
//	/healthz  200 "ok" while the server is serving (a liveness and
//	          readiness probe: the query server holds no state to warm up)
//	/metrics  g in the Prometheus text or OpenMetrics format (the
//	          tracepipe_query_* metrics of Limit, when g is their registry)
//
// Every other path goes to h. A nil g leaves /metrics to h.
func WithOps(h http.Handler, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	}
	mux.Handle("/", h)
	return mux
}
