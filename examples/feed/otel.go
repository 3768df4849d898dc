package feed

import (
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The profile and avatar services are instrumented with the OpenTelemetry
// SDK directly: W3C traceparent in, traceparent out. A jaeger-client-go
// caller (the gateway) continues into them, and they into each other.

var w3c = propagation.TraceContext{}

func profileHandler(tp trace.TracerProvider, avatarURL string) http.Handler {
	tracer := tp.Tracer("github.com/tracepipe/tracepipe/examples/feed/profile")
	client := &http.Client{Timeout: 10 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := w3c.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		user := r.URL.Query().Get("user")
		ctx, span := tracer.Start(ctx, "GET /profile", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.method", r.Method), attribute.String("user", user)))
		defer span.End()

		cctx, cs := tracer.Start(ctx, "HTTP GET avatar", trace.WithSpanKind(trace.SpanKindClient))
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, avatarURL+"/avatar?user="+url.QueryEscape(user), nil)
		w3c.Inject(cctx, propagation.HeaderCarrier(req.Header))
		resp, err := client.Do(req)
		if err != nil {
			cs.RecordError(err)
			cs.SetStatus(codes.Error, err.Error())
			cs.End()
			span.SetStatus(codes.Error, "avatar failed")
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		cs.SetAttributes(attribute.Int("http.status_code", resp.StatusCode))
		cs.End()
		span.SetAttributes(attribute.Int("http.status_code", http.StatusOK))
		w.Write([]byte(`{"user":"` + url.QueryEscape(user) + `"}`))
	})
}

func avatarHandler(tp trace.TracerProvider) http.Handler {
	tracer := tp.Tracer("github.com/tracepipe/tracepipe/examples/feed/avatar")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := w3c.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		_, span := tracer.Start(ctx, "GET /avatar", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.method", r.Method), attribute.Int("http.status_code", http.StatusOK)))
		defer span.End()
		w.Write([]byte("avatar"))
	})
}
