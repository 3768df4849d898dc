package kafka

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one stage's health for Handler.
type Check struct {
	Name    string
	Healthy func() bool
	// Down is what /healthz says of the stage while it is not healthy
	// ("" means "not a live group member", what a consumer stage is).
	Down string
}

// Handler serves /metrics from gatherer (in the OpenMetrics format when the
// scraper asks for it, so exemplars reach Prometheus) and /healthz: 200
// with one "name ok" line per check when every check is healthy, else 503
// naming the ones that are not. Every binary and `tracepipe run` (all its stages'
// checks at once) serve it.
func Handler(gatherer prometheus.Gatherer, checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		ok := true
		for _, c := range checks {
			if c.Healthy() {
				fmt.Fprintf(&b, "%s ok\n", c.Name)
			} else {
				ok = false
				down := c.Down
				if down == "" {
					down = "not a live group member"
				}
				fmt.Fprintf(&b, "%s %s\n", c.Name, down)
			}
		}
		if len(checks) == 0 {
			b.WriteString("ok\n")
		}
		if !ok {
			http.Error(w, strings.TrimSuffix(b.String(), "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, b.String())
	})
	return mux
}
