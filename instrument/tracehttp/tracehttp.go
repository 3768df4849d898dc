// Package tracehttp traces net/http servers and clients with
// instrument/metrics: Middleware starts a server span per request (child of
// the caller's span, read from uber-trace-id or W3C traceparent) and times it;
// Transport starts a client span per request and injects both headers.
//
// Span tags follow the OpenTracing conventions Jaeger shows: span.kind,
// component=net/http, http.method, http.url (path only: query strings may
// carry secrets), http.status_code; error=true for status ≥ 500 and failed
// round trips. Request metadata (shard, client, API key fingerprint) is
// tagged through a user-supplied Tagger.
package tracehttp

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/propagation"
)

// Tagger returns tags describing a request; it must never return secrets
// (use KeyFingerprint for API keys). set may be called any number of times.
type Tagger func(r *http.Request, set func(key string, value any))

// Options configure Middleware.
type Options struct {
	// Operation names the server span (and the timer); nil: "HTTP <method> <path>".
	// Keep names low-cardinality: use the route, not a path with IDs.
	Operation func(r *http.Request) string
	// Tags tags each request's span (nil: none).
	Tags Tagger
}

// Middleware traces every request of next with in (nil: the default
// Instrumentation). The request's context carries the server span and in,
// so handlers nest their own StartWithTracing calls beneath it.
func Middleware(in *metrics.Instrumentation, next http.Handler, o Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ins := in
		if ins == nil {
			ins = metrics.Default()
		}
		op := ""
		if o.Operation != nil {
			op = o.Operation(r)
		} else {
			op = "HTTP " + r.Method + " " + r.URL.Path
		}
		opts := []opentracing.StartSpanOption{ext.SpanKindRPCServer, opentracing.Tag{Key: "component", Value: "net/http"}}
		if parent, err := propagation.Extract(ins.Tracer(), opentracing.HTTPHeaders, opentracing.HTTPHeadersCarrier(r.Header)); err == nil {
			opts = append(opts, ext.RPCServerOption(parent))
		}
		timer, ctx := ins.Start(r.Context(), op, opts...)
		defer timer.Stop()
		sp := timer.Span()
		ext.HTTPMethod.Set(sp, r.Method)
		ext.HTTPUrl.Set(sp, r.URL.Path)
		if o.Tags != nil {
			o.Tags(r, timer.SetTag)
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			ext.HTTPStatusCode.Set(sp, uint16(sw.status))
			if sw.status >= 500 {
				timer.SetError(nil)
			}
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Transport traces outgoing requests: a client span per round trip, child of
// the span of the request's context, named "HTTP <method>" (or by Operation),
// with uber-trace-id and traceparent injected. The Instrumentation is the one
// the request's context carries, else In, else the default.
type Transport struct {
	// Base performs the requests (nil: http.DefaultTransport).
	Base http.RoundTripper
	// In is the Instrumentation of requests whose context carries none.
	In *metrics.Instrumentation
	// Operation names the client span (nil: "HTTP <method>").
	Operation func(r *http.Request) string
}

// RoundTrip implements http.RoundTripper. It does not modify r: the headers
// go on a clone. The span ends when the response headers arrive (or the
// round trip fails); reading the body is the caller's time.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	ins, ok := metrics.Attached(ctx)
	if !ok {
		ins = t.In
		if ins == nil {
			ins = metrics.Default()
		}
	}
	op := "HTTP " + r.Method
	if t.Operation != nil {
		op = t.Operation(r)
	}
	timer, _ := ins.Start(ctx, op, ext.SpanKindRPCClient, opentracing.Tag{Key: "component", Value: "net/http"})
	sp := timer.Span()
	ext.HTTPMethod.Set(sp, r.Method)
	ext.HTTPUrl.Set(sp, r.URL.Scheme+"://"+r.URL.Host+r.URL.Path)
	ext.PeerHostname.Set(sp, r.URL.Hostname())
	r2 := r.Clone(ctx)
	_ = propagation.Inject(ins.Tracer(), sp.Context(), opentracing.HTTPHeaders, opentracing.HTTPHeadersCarrier(r2.Header))
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r2)
	if err != nil {
		timer.StopErr(err)
		return nil, err
	}
	ext.HTTPStatusCode.Set(sp, uint16(resp.StatusCode))
	if resp.StatusCode >= 500 {
		timer.SetError(nil)
	}
	timer.Stop()
	return resp, nil
}

// KeyFingerprint returns a stable, non-reversible tag value for a secret such
// as an API key: "sha256:" and the first 12 hex digits of its SHA-256. The
// same key always gives the same value, so its requests can be searched for.
func KeyFingerprint(secret string) string {
	if secret == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:6])
}
