package aggregator

import (
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

// proxyMode is what an outageProxy does with traffic.
type proxyMode int

const (
	forward proxyMode = iota
	stall             // hold every byte (a paused engine: connections open, no answers)
	refuse            // close every connection (a stopped engine)
)

// outageProxy is a TCP proxy on loopback in front of the search engine
// that a test can stall or make refuse connections. Close stops it and
// waits for its goroutines.
type outageProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	mode    proxyMode
	changed chan struct{} // closed and replaced on every mode change
	conns   map[net.Conn]struct{}
	closed  bool
}

func startProxy(t *testing.T, target string) *outageProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &outageProxy{ln: ln, target: target, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *outageProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *outageProxy) set(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	if m == refuse {
		for c := range p.conns {
			c.Close()
		}
	}
}

// wait blocks while the proxy stalls; it reports false when the
// connection must be dropped (refuse, or the proxy closed).
func (p *outageProxy) wait() bool {
	for {
		p.mu.Lock()
		m, ch, closed := p.mode, p.changed, p.closed
		p.mu.Unlock()
		switch {
		case closed || m == refuse:
			return false
		case m == forward:
			return true
		}
		<-ch
	}
}

func (p *outageProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *outageProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *outageProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			if !p.wait() {
				return
			}
			up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				return
			}
			if !p.track(up) {
				return
			}
			defer p.untrack(up)
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				defer func() { done <- struct{}{} }()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						if !p.wait() {
							return
						}
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			go pipe(up, c)
			go pipe(c, up)
			<-done
			c.Close()
			up.Close()
			<-done
		}()
	}
}

func (p *outageProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.changed)
	p.changed = make(chan struct{})
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

var (
	reduceGeneration = regexp.MustCompile(`msg=generation [^\n]*stage=aggregator-reduce`)
	reduceRestart    = regexp.MustCompile(`msg="partition stopped; restarting it from its commit" [^\n]*stage=aggregator-reduce`)
)

// TestIntegrationSearchEngineOutage: the search engine behind a proxy
// first stalls (connections open, no answers: a paused engine) for longer
// than the group session timeout, then refuses connections (a stopped
// engine), then returns, while traces keep arriving. A slow store is
// backpressure: the reducers keep their partitions (no new reduce
// generation, no partition restarted from its last commit), every store
// error is logged on one line, and after the engine returns every rollup
// equals the truth.
func TestIntegrationSearchEngineOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	start := time.Now()
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.Elasticsearch(t)
	bin := filepath.Join(testenv.Build(t, "github.com/tracepipe/tracepipe/cmd/aggregator"), "aggregator")
	proxy := startProxy(t, strings.TrimPrefix(esURL, "http://"))

	topic := testenv.Name(t, "traces")
	prefix := strings.ReplaceAll(testenv.Name(t, "outage"), "_", "-")
	kafkatest.CreateTopic(t, brokers, topic, 4)
	store, err := elasticsearch.New(context.Background(), elasticsearch.Config{URLs: []string{esURL}, IndexPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	msgs := rolluptest.Generate(23, rolluptest.DefaultOptions(400, time.Now()))
	cfg := testConfig(brokers, topic)
	cfg.Stats.Dimensions = []string{"client"}
	exp := rolluptest.Expect(cfg.Stats, msgs)

	a, b := startAggregatorPair(t, bin, brokers, topic, proxy.URL(), prefix)
	half := len(msgs) / 2
	produce(t, brokers, topic, msgs[:half])
	time.Sleep(2 * time.Second)
	// The group is settled: from here on, no member may leave or rejoin.
	gens := func() int {
		return len(reduceGeneration.FindAllString(a.Output(), -1)) + len(reduceGeneration.FindAllString(b.Output(), -1))
	}
	before := gens()

	proxy.set(stall)
	produce(t, brokers, topic, msgs[half:])
	time.Sleep(2*session + time.Second)
	proxy.set(refuse)
	time.Sleep(session)
	proxy.set(forward)
	t.Logf("outage over after %v", time.Since(start).Round(time.Second))
	waitES(t, exp, store, time.Minute)

	out := a.Output() + b.Output()
	if n := gens() - before; n != 0 {
		t.Errorf("%d new reduce generations during the outage: reducers left the group", n)
	}
	if m := reduceRestart.FindAllString(out, -1); len(m) != 0 {
		t.Errorf("%d reduce partitions were discarded and restored from their last commit:\n%s", len(m), strings.Join(m, "\n"))
	}
	if !strings.Contains(out, "reduce: store ") && !strings.Contains(out, "bulk request failed, retrying") {
		t.Error("no store failure was logged: the outage was not seen")
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `\n`) || strings.HasPrefix(l, "\t") || strings.Contains(l, "goroutine ") {
			t.Errorf("a log line with a stack trace or a line break: %.300s", l)
			break
		}
	}
	stop(t, a)
	stop(t, b)
	t.Logf("test took %v", time.Since(start).Round(time.Second))
}
