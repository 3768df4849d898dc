// Package collector is tracepipe's front door: it receives spans the way
// Jaeger's agent and collector and the OpenTelemetry collector do, and
// publishes them to the spans topic, one Jaeger protobuf message per span
// keyed by trace ID (wire.AppendJaegerProto, wire.Key): what the ingester
// reads fastest, partitioned as Jaeger's collector partitions.
//
// Receivers (each off when its address is empty):
//
//   - Jaeger agent UDP, compact thrift (6831) and binary thrift (6832):
//     emitBatch datagrams, as jaeger-client-go's UDP sender writes them;
//   - Jaeger collector HTTP (14268): POST /api/traces, a binary thrift Batch
//     (Content-Type application/x-thrift or application/vnd.apache.thrift.binary),
//     answered 202 Accepted;
//   - OTLP/gRPC (4317): TraceService/Export;
//   - OTLP/HTTP (4318): POST /v1/traces, application/x-protobuf or
//     application/json, optionally gzip-encoded;
//   - the agent's sampling endpoint (5778): GET /sampling?service=NAME (see
//     Strategies).
//
// # Flow and limits
//
// A request is decoded whole (wire.DecodeAgentEmitBatch,
// wire.DecodeJaegerThrift, wire.DecodeOTLPProto, wire.DecodeOTLPJSON), each
// span encoded, and the spans handed to the producer (pipeline/kafka) in one
// group, all or nothing. The producer's buffer is the queue: QueueBytes
// bounds the bytes accepted and not yet acknowledged by Kafka. A request
// that does not fit is refused with the protocol's retry signal: HTTP 429
// with Retry-After, gRPC RESOURCE_EXHAUSTED with RetryInfo; a UDP datagram
// is dropped and counted (reason queue_full). While Kafka metadata is
// unavailable or during shutdown: HTTP 503 with Retry-After, gRPC
// UNAVAILABLE. A request is answered once its spans are in the queue (as
// Jaeger's and OTel's collectors do), not when Kafka acknowledges them; the
// producer retries until they are acknowledged.
//
// Bad input is answered, counted and forgotten: bytes that do not decode
// (HTTP 400, gRPC INVALID_ARGUMENT), bodies over MaxRequestBytes (413,
// INVALID_ARGUMENT), unsupported Content-Type or Content-Encoding (415),
// wrong method (405). A span that Jaeger protobuf cannot carry or that is
// larger than the producer's message limit is rejected alone: OTLP answers
// with partial success (rejected_spans and a message), Jaeger receivers
// count it.
//
// # Lifecycle
//
// New checks the configuration; Listen binds every address (Addrs then
// tells the bound ones; Run calls Listen when it was not called); Run
// serves until ctx is cancelled, then stops in this order: stop receiving
// (close UDP sockets, gracefully stop the HTTP and gRPC servers, letting
// in-flight requests finish), then drain the queue to Kafka for at most
// ShutdownGrace, then close the producer. Every goroutine started is
// waited for before Run returns.
//
// # Metrics
//
//	tracepipe_collector_requests_total{receiver,result}         accepted | refused | bad
//	tracepipe_collector_spans_received_total{receiver}
//	tracepipe_collector_spans_accepted_total{receiver}
//	tracepipe_collector_spans_refused_total{receiver}
//	tracepipe_collector_spans_dropped_total{receiver,reason}    queue_full, unavailable, invalid_span, too_large, lost
//	tracepipe_collector_bad_requests_total{receiver,reason}     malformed, too_large, content_type, method
//	tracepipe_collector_batch_spans{receiver}                   histogram of spans per request
//	tracepipe_collector_produce_seconds{receiver}               histogram, accepted to acknowledged by Kafka
//	tracepipe_collector_sampling_requests_total{result}
//
// plus the producer's (pipeline/kafka, producer="collector"), among them
// tracepipe_producer_buffered_bytes, the queue's fill.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/wire"
)

// Options are a Collector's collaborators.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: a private registry
	// Transport, when set, is the producer's Kafka transport.
	Transport kafka.RoundTripper
}

// Addrs are the bound addresses of the receivers ("" when off).
type Addrs struct {
	JaegerCompactUDP, JaegerBinaryUDP, JaegerHTTP, OTLPGRPC, OTLPHTTP, SamplingHTTP string
}

// Collector: see the package documentation.
type Collector struct {
	cfg        Config
	prodCfg    kafka.ProducerConfig
	log        *slog.Logger
	m          *metrics
	prod       *kafka.Producer
	strategies *Strategies

	rCompact, rBinary, rJaegerHTTP, rGRPC, rOTLPHTTP *recvMetrics

	listened  bool
	udp       []udpSocket
	httpLns   []httpListener
	grpcLn    net.Listener
	grpcSrv   *grpc.Server
	addrs     Addrs
	healthy   atomic.Bool
	spanPool  sync.Pool     // *[]*model.Span
	bufPool   sync.Pool     // *[]byte
	msgPool   sync.Pool     // *[]kafka.Message
	turns     chan struct{} // MaxConcurrentRequests tokens
	reg       prometheus.Registerer
	transport kafka.RoundTripper
}

type udpSocket struct {
	conn  net.PacketConn
	proto wire.ThriftProtocol
	r     *recvMetrics
}

type httpListener struct {
	ln  net.Listener
	srv *http.Server
}

// New checks cfg and loads the sampling strategies. Nothing is bound or
// started until Listen or Run; a collector that was Listened must be Run
// (or Closed) to release its sockets.
func New(cfg Config, opts Options) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	c := &Collector{cfg: cfg, prodCfg: cfg.producerConfig(), log: opts.Logger, m: newMetrics(opts.Registry)}
	c.rCompact = c.m.receiver(RecvJaegerCompactUDP)
	c.rBinary = c.m.receiver(RecvJaegerBinaryUDP)
	c.rJaegerHTTP = c.m.receiver(RecvJaegerHTTP)
	c.rGRPC = c.m.receiver(RecvOTLPGRPC)
	c.rOTLPHTTP = c.m.receiver(RecvOTLPHTTP)
	if cfg.SamplingStrategies != "" {
		s, err := LoadStrategies(cfg.SamplingStrategies)
		if err != nil {
			return nil, err
		}
		c.strategies = s
	} else {
		c.strategies = DefaultStrategies(cfg.DefaultSamplingProbability)
	}
	c.reg, c.transport = opts.Registry, opts.Transport
	c.turns = make(chan struct{}, cfg.MaxConcurrentRequests)
	return c, nil
}

// Listen binds every configured address. On error nothing stays bound.
func (c *Collector) Listen() (err error) {
	if c.listened {
		return nil
	}
	defer func() {
		if err != nil {
			c.closeListeners()
		}
	}()
	for _, u := range []struct {
		addr  string
		proto wire.ThriftProtocol
		r     *recvMetrics
		dst   *string
		flag  string
	}{
		{c.cfg.JaegerCompactUDP, wire.ThriftCompact, c.rCompact, &c.addrs.JaegerCompactUDP, "--jaeger-compact-udp"},
		{c.cfg.JaegerBinaryUDP, wire.ThriftBinary, c.rBinary, &c.addrs.JaegerBinaryUDP, "--jaeger-binary-udp"},
	} {
		if u.addr == "" {
			continue
		}
		conn, err := net.ListenPacket("udp", u.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", u.flag, err)
		}
		if uc, ok := conn.(*net.UDPConn); ok && c.cfg.UDPReadBuffer > 0 {
			uc.SetReadBuffer(c.cfg.UDPReadBuffer) // best effort: the kernel may cap it
		}
		c.udp = append(c.udp, udpSocket{conn: conn, proto: u.proto, r: u.r})
		*u.dst = conn.LocalAddr().String()
	}
	for _, h := range []struct {
		addr    string
		handler http.Handler
		dst     *string
		flag    string
	}{
		{c.cfg.JaegerHTTP, c.jaegerHTTPHandler(), &c.addrs.JaegerHTTP, "--jaeger-http"},
		{c.cfg.OTLPHTTP, c.otlpHTTPHandler(), &c.addrs.OTLPHTTP, "--otlp-http"},
		{c.cfg.SamplingHTTP, c.samplingHandler(), &c.addrs.SamplingHTTP, "--sampling-http"},
	} {
		if h.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", h.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", h.flag, err)
		}
		srv := &http.Server{
			Handler:           h.handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
		}
		c.httpLns = append(c.httpLns, httpListener{ln: ln, srv: srv})
		*h.dst = ln.Addr().String()
	}
	if c.cfg.OTLPGRPC != "" {
		ln, err := net.Listen("tcp", c.cfg.OTLPGRPC)
		if err != nil {
			return fmt.Errorf("--otlp-grpc: %w", err)
		}
		c.grpcLn = ln
		c.grpcSrv = c.newGRPCServer()
		c.addrs.OTLPGRPC = ln.Addr().String()
	}
	c.listened = true
	return nil
}

func (c *Collector) closeListeners() {
	for _, u := range c.udp {
		u.conn.Close()
	}
	for _, h := range c.httpLns {
		h.ln.Close()
	}
	if c.grpcLn != nil {
		c.grpcLn.Close()
	}
	c.udp, c.httpLns, c.grpcLn = nil, nil, nil
}

// Close releases the sockets of a collector that will not be Run.
func (c *Collector) Close() { c.closeListeners() }

// Addrs returns the bound addresses (after Listen).
func (c *Collector) Addrs() Addrs { return c.addrs }

// Healthy reports whether the collector is serving.
func (c *Collector) Healthy() bool { return c.healthy.Load() }

// HealthHandler answers /healthz: 200 while serving, 503 otherwise.
func (c *Collector) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.Healthy() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// Run serves until ctx is cancelled, then shuts down in order (see the
// package documentation). It returns nil after a clean stop.
func (c *Collector) Run(ctx context.Context) error {
	if err := c.Listen(); err != nil {
		return err
	}
	p, err := kafka.NewProducer(c.prodCfg, kafka.Options{Name: "collector", Registry: c.reg,
		Logger: c.log, Transport: c.transport, Client: &c.cfg.ClientConfig})
	if err != nil {
		c.closeListeners()
		return err
	}
	c.prod = p
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(c.httpLns)+1)
	for _, u := range c.udp {
		for range c.cfg.UDPWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.serveUDP(u)
			}()
		}
	}
	for _, h := range c.httpLns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.srv.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("http %s: %w", h.ln.Addr(), err)
				cancel()
			}
		}()
	}
	if c.grpcSrv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.grpcSrv.Serve(c.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errs <- fmt.Errorf("grpc %s: %w", c.grpcLn.Addr(), err)
				cancel()
			}
		}()
	}
	c.healthy.Store(true)
	a := c.addrs
	c.log.Info("collector receiving", "topic", c.cfg.SpansTopic, "jaeger_compact_udp", a.JaegerCompactUDP,
		"jaeger_binary_udp", a.JaegerBinaryUDP, "jaeger_http", a.JaegerHTTP, "otlp_grpc", a.OTLPGRPC,
		"otlp_http", a.OTLPHTTP, "sampling_http", a.SamplingHTTP)
	<-runCtx.Done()
	c.healthy.Store(false)

	// 1. Stop receiving; in-flight requests finish (bounded).
	sctx, scancel := context.WithTimeout(context.Background(), c.cfg.ShutdownGrace)
	defer scancel()
	for _, u := range c.udp {
		u.conn.Close()
	}
	var stopWG sync.WaitGroup
	for _, h := range c.httpLns {
		stopWG.Add(1)
		go func() {
			defer stopWG.Done()
			h.srv.Shutdown(sctx)
		}()
	}
	if c.grpcSrv != nil {
		stopWG.Add(1)
		go func() {
			defer stopWG.Done()
			done := make(chan struct{})
			go func() { c.grpcSrv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-sctx.Done():
				c.grpcSrv.Stop()
				<-done
			}
		}()
	}
	stopWG.Wait()
	wg.Wait()
	// 2. Drain the queue to Kafka, 3. close the producer.
	perr := c.prod.Close(sctx)
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	if perr != nil {
		all = append(all, perr)
	}
	c.log.Info("collector stopped")
	return errors.Join(all...)
}

// errRefused means the queue is full (retry later); errUnavailable that
// Kafka cannot take spans now (metadata unavailable, shutting down).
var (
	errRefused     = errors.New("queue full")
	errUnavailable = errors.New("unavailable")
	// errNeverFits: the request's spans take more than the whole queue.
	errNeverFits = errors.New("request too large for the queue")
)

// submitResult is what became of a request's spans.
type submitResult struct {
	accepted, rejected int
	refusedSpans       int // spans not taken because of err
	rejectMsg          string
	err                error // errRefused or errUnavailable (wrapping the cause): nothing accepted
}

// submit encodes spans and hands them to the producer as one group.
func (c *Collector) submit(r *recvMetrics, spans []*model.Span) submitResult {
	r.received.Add(float64(len(spans)))
	r.batch.Observe(float64(len(spans)))
	var res submitResult
	if len(spans) == 0 {
		r.reqAccepted.Inc()
		return res
	}
	bp, _ := c.bufPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	mp, _ := c.msgPool.Get().(*[]kafka.Message)
	if mp == nil {
		mp = new([]kafka.Message)
	}
	buf := (*bp)[:0]
	type span struct{ k, v, end int }
	offs := make([]span, 0, len(spans))
	maxMsg := c.prodCfg.MaxMessageBytes
	for _, sp := range spans {
		k := len(buf)
		buf = sp.TraceID.AppendHex(buf)
		v := len(buf)
		var err error
		buf, err = wire.AppendJaegerProto(buf, sp)
		if err == nil && len(buf)-k > maxMsg {
			err = fmt.Errorf("span %s: %d bytes, more than the %d-byte message limit", sp.SpanID, len(buf)-k, maxMsg)
			r.drop(ReasonTooLarge, 1)
		} else if err != nil {
			r.drop(ReasonInvalidSpan, 1)
		}
		if err != nil {
			buf = buf[:k]
			res.rejected++
			if res.rejectMsg == "" {
				res.rejectMsg = err.Error()
			}
			continue
		}
		offs = append(offs, span{k, v, len(buf)})
	}
	// The queue holds an exact-size copy: its memory is what it counts,
	// and the scratch buffer goes back to the pool at once.
	held := make([]byte, len(buf))
	copy(held, buf)
	*bp = buf
	c.bufPool.Put(bp)
	msgs := (*mp)[:0]
	for _, o := range offs {
		msgs = append(msgs, kafka.Message{Key: held[o.k:o.v:o.v], Value: held[o.v:o.end:o.end]})
	}
	defer func() {
		clear(msgs)
		*mp = msgs[:0]
		c.msgPool.Put(mp)
	}()
	if len(msgs) == 0 {
		r.reqAccepted.Inc()
		return res
	}
	start := time.Now()
	n := len(msgs)
	err := c.prod.TryProduce(msgs, func(err error) {
		r.produce.Observe(time.Since(start).Seconds())
		if err != nil {
			r.drop(ReasonLost, n)
		}
	})
	if err != nil {
		switch {
		case errors.Is(err, kafka.ErrFull):
			res.err = errRefused
		case errors.Is(err, kafka.ErrTooLarge):
			res.err = fmt.Errorf("%w: %v", errNeverFits, err)
			r.bad(ReasonTooLarge)
			return res
		default:
			res.err = fmt.Errorf("%w: %v", errUnavailable, err)
		}
		r.reqRefused.Inc()
		res.refusedSpans = n
		return res
	}
	res.accepted = n
	r.reqAccepted.Inc()
	r.accepted.Add(float64(n))
	return res
}

// turn waits for one of the MaxConcurrentRequests turns to read and decode
// a request; false when ctx ends first. done gives the turn back.
func (c *Collector) turn(ctx context.Context) bool {
	select {
	case c.turns <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *Collector) done() { <-c.turns }

// full reports whether a request of n bytes cannot fit in the queue now,
// so it is refused before paying for its decoding (its spans take about
// as many bytes encoded as the request). submit decides for the others.
func (c *Collector) full(r *recvMetrics, n int) bool {
	if c.prod.Buffered()+int64(n) <= c.prod.Limit() {
		return false
	}
	r.reqRefused.Inc()
	return true
}

// decodeSubmit decodes a request into pooled scratch with decode (which
// appends to dst) and submits the spans. A decode error is returned, with
// nothing submitted; the caller counts and answers it (ReasonMalformed).
func (c *Collector) decodeSubmit(r *recvMetrics, decode func(dst []*model.Span) ([]*model.Span, error)) (submitResult, error) {
	sp := c.getSpans()
	defer c.putSpans(sp)
	spans, err := decode((*sp)[:0])
	*sp = spans
	if err != nil {
		return submitResult{}, err
	}
	return c.submit(r, spans), nil
}

func (c *Collector) getSpans() *[]*model.Span {
	sp, _ := c.spanPool.Get().(*[]*model.Span)
	if sp == nil {
		sp = new([]*model.Span)
	}
	return sp
}

func (c *Collector) putSpans(sp *[]*model.Span) {
	clear(*sp)
	*sp = (*sp)[:0]
	c.spanPool.Put(sp)
}

// serveUDP reads datagrams until the socket is closed.
func (c *Collector) serveUDP(u udpSocket) {
	buf := make([]byte, 65536)
	for {
		n, _, err := u.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("udp read", "receiver", u.r.name, "err", err)
			continue
		}
		if c.full(u.r, n) {
			u.r.drop(ReasonQueueFull, 1) // spans unknown: counted as one
			continue
		}
		res, err := c.decodeSubmit(u.r, func(dst []*model.Span) ([]*model.Span, error) {
			return wire.DecodeAgentEmitBatch(buf[:n], u.proto, dst)
		})
		if err != nil {
			u.r.bad(ReasonMalformed)
			c.log.Debug("bad datagram", "receiver", u.r.name, "err", err)
			continue
		}
		if res.err != nil && !errors.Is(res.err, errNeverFits) { // that one is counted as a bad request
			reason := ReasonQueueFull
			if errors.Is(res.err, errUnavailable) {
				reason = ReasonUnavailable
			}
			u.r.drop(reason, res.refusedSpans)
		}
	}
}
