// Package tracegrpc traces gRPC servers and clients with instrument/metrics.
// Server interceptors start a server span per call, child of the caller's
// span read from the request metadata (uber-trace-id, or W3C traceparent as
// OpenTelemetry clients send it); client interceptors start a client span and
// write both into the outgoing metadata. Spans are named by the full method
// ("/feed.Feed/GetFeed") and tagged span.kind, component=gRPC and, on
// failure, error=true with the status code (grpc.status_code on every span).
//
// A client stream's span finishes when the stream ends: RecvMsg returns an
// error (io.EOF included), a unary-response stream received its response, or
// the call's context is done (context.AfterFunc; no goroutine is started).
package tracegrpc

import (
	"context"
	"io"
	"strings"
	"sync"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/propagation"
)

// Tagger tags a server call from its incoming metadata (shard, client, an API
// key fingerprint — never a secret).
type Tagger func(ctx context.Context, method string, md metadata.MD, set func(key string, value any))

// Options configure the server interceptors.
type Options struct {
	Tags Tagger
}

func instrumentation(in *metrics.Instrumentation, ctx context.Context) *metrics.Instrumentation {
	if c, ok := metrics.Attached(ctx); ok {
		return c
	}
	if in != nil {
		return in
	}
	return metrics.Default()
}

func startServer(ctx context.Context, in *metrics.Instrumentation, method string, o Options) (*metrics.Timer, context.Context) {
	if in == nil {
		in = metrics.Default()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	opts := []opentracing.StartSpanOption{ext.SpanKindRPCServer, gRPCComponent}
	if parent, err := propagation.Extract(in.Tracer(), opentracing.TextMap, mdCarrier(md)); err == nil {
		opts = append(opts, ext.RPCServerOption(parent))
	}
	timer, ctx := in.Start(ctx, method, opts...)
	if o.Tags != nil {
		o.Tags(ctx, method, md, timer.SetTag)
	}
	return timer, ctx
}

var gRPCComponent = opentracing.Tag{Key: "component", Value: "gRPC"}

func finish(t *metrics.Timer, err error) {
	code := status.Code(err)
	t.SetTag("grpc.status_code", code.String())
	t.StopErr(err)
}

// UnaryServerInterceptor traces unary calls with in (nil: the default).
func UnaryServerInterceptor(in *metrics.Instrumentation, o Options) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		timer, ctx := startServer(ctx, in, info.FullMethod, o)
		resp, err := handler(ctx, req)
		finish(timer, err)
		return resp, err
	}
}

// StreamServerInterceptor traces streaming calls with in (nil: the default);
// the handler's stream context carries the span.
func StreamServerInterceptor(in *metrics.Instrumentation, o Options) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		timer, ctx := startServer(ss.Context(), in, info.FullMethod, o)
		err := handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
		finish(timer, err)
		return err
	}
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

func startClient(ctx context.Context, in *metrics.Instrumentation, method string) (*metrics.Timer, context.Context) {
	in = instrumentation(in, ctx)
	timer, _ := in.Start(ctx, method, ext.SpanKindRPCClient, gRPCComponent)
	md, ok := metadata.FromOutgoingContext(ctx)
	if ok {
		md = md.Copy()
	} else {
		md = metadata.MD{}
	}
	_ = propagation.Inject(in.Tracer(), timer.Span().Context(), opentracing.TextMap, mdCarrier(md))
	return timer, metadata.NewOutgoingContext(ctx, md)
}

// UnaryClientInterceptor traces outgoing unary calls, with the
// Instrumentation the call's context carries, else in, else the default.
func UnaryClientInterceptor(in *metrics.Instrumentation) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		timer, ctx := startClient(ctx, in, method)
		err := invoker(ctx, method, req, reply, cc, opts...)
		finish(timer, err)
		return err
	}
}

// StreamClientInterceptor traces outgoing streams (see the package doc for
// when their span finishes).
func StreamClientInterceptor(in *metrics.Instrumentation) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		timer, ctx := startClient(ctx, in, method)
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			finish(timer, err)
			return nil, err
		}
		s := &clientStream{ClientStream: cs, timer: timer, unaryResponse: !desc.ServerStreams}
		stop := context.AfterFunc(ctx, func() { s.end(ctx.Err()) })
		s.mu.Lock()
		s.stopAfter = stop
		s.mu.Unlock()
		return s, nil
	}
}

type clientStream struct {
	grpc.ClientStream
	timer         *metrics.Timer
	unaryResponse bool
	once          sync.Once
	mu            sync.Mutex
	stopAfter     func() bool // set once after creation
}

func (s *clientStream) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		stop := s.stopAfter
		s.mu.Unlock()
		if stop != nil {
			stop()
		}
		if err == io.EOF {
			err = nil
		}
		finish(s.timer, err)
	})
}

func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil || s.unaryResponse {
		s.end(err)
	}
	return err
}

// mdCarrier adapts gRPC metadata to opentracing's TextMap (keys lowercased,
// as metadata requires).
type mdCarrier metadata.MD

func (c mdCarrier) Set(key, val string) {
	k := strings.ToLower(key)
	c[k] = append(c[k][:0], val)
}

func (c mdCarrier) ForeachKey(handler func(key, val string) error) error {
	for k, vs := range c {
		for _, v := range vs {
			if err := handler(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}
