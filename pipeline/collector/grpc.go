package collector

import (
	"context"
	"errors"
	"fmt"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // OTel exporters may compress with gzip
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

// rawRequest receives an Export request's bytes undecoded: rawCodec hands
// them over and wire.DecodeOTLPProto decodes them straight into spans,
// skipping the generated types.
type rawRequest struct{ b []byte }

// rawCodec is the proto codec, except that a *rawRequest takes the bytes.
type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*rawRequest); ok { // a client sending prepared bytes (tests, benchmarks)
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (rawCodec) Name() string { return "proto" }

func (c *Collector) newGRPCServer() *grpc.Server {
	s := grpc.NewServer(
		grpc.ForceServerCodecV2(rawCodec{proto: encoding.GetCodecV2("proto")}),
		grpc.MaxRecvMsgSize(c.cfg.MaxRequestBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	)
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				if !c.turn(ctx) {
					return nil, status.FromContextError(ctx.Err()).Err()
				}
				defer c.done()
				var req rawRequest
				if err := dec(&req); err != nil {
					if status.Code(err) == codes.ResourceExhausted {
						// Over MaxRecvMsgSize: grpc-go has already answered
						// RESOURCE_EXHAUSTED (no RetryInfo: not retried).
						c.rGRPC.bad(ReasonTooLarge)
						return nil, err
					}
					c.rGRPC.bad(ReasonMalformed)
					return nil, err
				}
				if icpt == nil {
					return c.export(ctx, &req)
				}
				return icpt(ctx, &req, &grpc.UnaryServerInfo{FullMethod: coltracepb.TraceService_Export_FullMethodName},
					func(ctx context.Context, r any) (any, error) { return c.export(ctx, r.(*rawRequest)) })
			},
		}},
		Metadata: "opentelemetry/proto/collector/trace/v1/trace_service.proto",
	}, struct{}{})
	return s
}

// export handles one OTLP/gRPC Export call.
func (c *Collector) export(_ context.Context, req *rawRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r := c.rGRPC
	if c.full(r, len(req.b)) {
		return nil, c.resourceExhausted()
	}
	res, err := c.decodeSubmit(r, func(dst []*model.Span) ([]*model.Span, error) {
		return wire.DecodeOTLPProto(req.b, dst)
	})
	if err != nil {
		r.bad(ReasonMalformed)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if errors.Is(res.err, errNeverFits) {
		return nil, status.Error(codes.InvalidArgument, res.err.Error())
	}
	if res.err != nil {
		r.refused.Add(float64(res.refusedSpans))
		if res.err == errRefused {
			return nil, c.resourceExhausted()
		}
		return nil, status.Error(codes.Unavailable, fmt.Sprint(res.err))
	}
	resp := &coltracepb.ExportTraceServiceResponse{}
	if res.rejected > 0 {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(res.rejected), ErrorMessage: res.rejectMsg}
	}
	return resp, nil
}

// resourceExhausted is the refusal of a full queue, with the RetryInfo that
// makes OTel exporters retry it.
func (c *Collector) resourceExhausted() error {
	st := status.New(codes.ResourceExhausted, "queue full, retry later")
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(c.cfg.RetryAfter)}); err == nil {
		st = d
	}
	return st.Err()
}
