package failover

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
)

// Parameters of TestSearchEngineOutage (environment variables).
const (
	// EnvOutage is the length of the outage, a Go duration (default 45s).
	EnvOutage = "TRACEPIPE_OUTAGE"
	// EnvOutageKill=true kills the engine for the second half of the outage
	// (connections refused) and starts it again, which takes another
	// 30-90 s on a loaded 2-core machine; by default it is paused
	// (SIGSTOP) throughout.
	EnvOutageKill = "TRACEPIPE_OUTAGE_KILL"
)

// TestSearchEngineOutage: mid-stream, the search engine is paused with
// SIGSTOP (connections stay open, nothing answers) for TRACEPIPE_OUTAGE,
// or with TRACEPIPE_OUTAGE_KILL=true paused for half of it, then killed
// (connections refused) and started again. The pipeline must pause with
// backpressure — no stage exits, the indexer's consumer lag on the traces
// topic grows, nothing is dead-lettered — report it (pending documents on
// /metrics; when killed, the store's retries), and once the engine is
// back, resume: every trace stored exactly once, every operation's rollups
// equal to the truth.
func TestSearchEngineOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("failure test")
	}
	outage := 45 * time.Second
	if v := strings.TrimSpace(os.Getenv(EnvOutage)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 2*time.Second {
			t.Fatalf("%s=%q: want a duration of at least 2s", EnvOutage, v)
		}
		outage = d
	}
	kill := os.Getenv(EnvOutageKill) == "true"
	first := outage
	if kill {
		first = outage / 2
	}
	began := time.Now()
	cl := testenv.Cluster(t)
	es := testenv.SpareSearch(t)
	c := newChain(t, cl.Brokers, es.URL)
	indexer := c.name + "-indexer"

	gen := c.gen(1000, 400) // ~20,000 spans over ~50 s
	time.Sleep(10 * time.Second)
	c.alive()
	before := lag(t, cl.Brokers, indexer, c.traces(), partitions)
	retries := c.metric("tracepipe_es_retries_total")

	es.Pause(t)
	paused := time.Now()
	t.Cleanup(func() { // never leave the spare engine paused or down
		if t.Failed() {
			es.Restore(t)
		}
	})
	time.Sleep(first)
	c.alive()
	// Backpressure: the indexer commits only what is durable, so its lag
	// grows while traces keep arriving.
	during := lag(t, cl.Brokers, indexer, c.traces(), partitions)
	pending := c.metric("tracepipe_es_pending_docs")
	t.Logf("paused %v: indexer lag %d -> %d, store pending documents %v", time.Since(paused).Round(time.Second), before, during, pending)
	if during <= before {
		t.Errorf("the indexer's lag did not grow while the engine was paused: %d -> %d", before, during)
	}
	if pending <= 0 {
		t.Errorf("tracepipe_es_pending_docs is %v while the engine is paused; want the documents waiting", pending)
	}

	if kill {
		es.Kill(t)
		time.Sleep(outage - first)
		c.alive()
		if got := c.metric("tracepipe_es_retries_total"); got <= retries {
			t.Errorf("tracepipe_es_retries_total %v -> %v: the stopped engine was not reported", retries, got)
		}
		es.Start(t)
	} else {
		es.Resume(t)
	}
	t.Logf("engine back after %v; store retries meanwhile: %v", time.Since(paused).Round(time.Second),
		c.metric("tracepipe_es_retries_total")-retries)
	if err := <-gen; err != nil {
		t.Fatal(err)
	}
	c.waitStored(4 * time.Minute)
	for _, topic := range []string{c.name + "-dlq", c.name + "-store-dlq"} {
		if n := endOffsets(t, cl.Brokers, topic); n != 0 {
			t.Errorf("%d messages dead-lettered to %s", n, topic)
		}
	}
	t.Logf("test took %v", time.Since(began).Round(time.Second))
}
