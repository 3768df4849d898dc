package collector

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

// Content types.
const (
	ctThrift       = "application/x-thrift"
	ctThriftBinary = "application/vnd.apache.thrift.binary"
	ctProtobuf     = "application/x-protobuf"
	ctJSON         = "application/json"
)

var errTooLarge = errors.New("request body too large")

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads the request body, gunzipping it when Content-Encoding is
// gzip, into a pooled buffer of at most limit bytes (after decompression).
// The caller returns the buffer with bodyPool.Put.
func readBody(r *http.Request, limit int) (*bytes.Buffer, string, error) {
	var src io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(io.LimitReader(r.Body, int64(limit)+1))
		if err != nil {
			return nil, ReasonMalformed, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, ReasonContentType, fmt.Errorf("unsupported Content-Encoding %q (want gzip or none)", enc)
	}
	if r.ContentLength > int64(limit) {
		return nil, ReasonTooLarge, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, r.ContentLength, limit)
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(src, int64(limit)+1))
	if err != nil {
		bodyPool.Put(buf)
		return nil, ReasonMalformed, fmt.Errorf("read body: %w", err)
	}
	if n > int64(limit) {
		bodyPool.Put(buf)
		return nil, ReasonTooLarge, fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
	}
	return buf, "", nil
}

func putBody(b *bytes.Buffer) {
	if b.Cap() > 16<<20 {
		return
	}
	bodyPool.Put(b)
}

func mediaType(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

func statusOf(reason string) int {
	switch reason {
	case ReasonTooLarge:
		return http.StatusRequestEntityTooLarge
	case ReasonContentType:
		return http.StatusUnsupportedMediaType
	case ReasonMethod:
		return http.StatusMethodNotAllowed
	}
	return http.StatusBadRequest
}

func (c *Collector) retryAfter() string {
	return strconv.Itoa(int((c.cfg.RetryAfter + 999_999_999) / 1_000_000_000))
}

// jaegerHTTPHandler serves POST /api/traces (Jaeger collector's HTTP API).
func (c *Collector) jaegerHTTPHandler() http.Handler {
	mux := http.NewServeMux()
	r := c.rJaegerHTTP
	mux.HandleFunc("/api/traces", func(w http.ResponseWriter, req *http.Request) {
		bad := func(reason string, err error) {
			r.bad(reason)
			http.Error(w, err.Error(), statusOf(reason))
		}
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			bad(ReasonMethod, fmt.Errorf("method %s not allowed, use POST", req.Method))
			return
		}
		if mt := mediaType(req); mt != ctThrift && mt != ctThriftBinary {
			bad(ReasonContentType, fmt.Errorf("unsupported Content-Type %q: want %s or %s (binary thrift Batch)", req.Header.Get("Content-Type"), ctThrift, ctThriftBinary))
			return
		}
		if !c.turn(req.Context()) {
			return // the client went away
		}
		defer c.done()
		body, reason, err := readBody(req, c.cfg.MaxRequestBytes)
		if err != nil {
			bad(reason, err)
			return
		}
		if c.full(r, body.Len()) {
			putBody(body)
			w.Header().Set("Retry-After", c.retryAfter())
			http.Error(w, errRefused.Error()+", retry later", http.StatusTooManyRequests)
			return
		}
		res, err := c.decodeSubmit(r, func(dst []*model.Span) ([]*model.Span, error) {
			defer putBody(body)
			return wire.DecodeJaegerThrift(body.Bytes(), wire.ThriftBinary, dst)
		})
		if err != nil {
			bad(ReasonMalformed, err)
			return
		}
		if errors.Is(res.err, errNeverFits) {
			http.Error(w, res.err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if res.err != nil {
			r.refused.Add(float64(res.refusedSpans))
			w.Header().Set("Retry-After", c.retryAfter())
			code := http.StatusTooManyRequests
			if errors.Is(res.err, errUnavailable) {
				code = http.StatusServiceUnavailable
			}
			http.Error(w, res.err.Error(), code)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

// otlpHTTPHandler serves POST /v1/traces (OTLP/HTTP, protobuf or JSON).
func (c *Collector) otlpHTTPHandler() http.Handler {
	mux := http.NewServeMux()
	r := c.rOTLPHTTP
	mux.HandleFunc("/v1/traces", func(w http.ResponseWriter, req *http.Request) {
		mt := mediaType(req)
		isJSON := mt == ctJSON
		fail := func(code int, grpcCode codes.Code, msg string) {
			writeOTLPStatus(w, isJSON, code, &statuspb.Status{Code: int32(grpcCode), Message: msg})
		}
		bad := func(reason string, err error) {
			r.bad(reason)
			fail(statusOf(reason), codes.InvalidArgument, err.Error())
		}
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			bad(ReasonMethod, fmt.Errorf("method %s not allowed, use POST", req.Method))
			return
		}
		if mt != ctProtobuf && mt != ctJSON {
			// No OTLP encoding to answer in: plain text.
			r.bad(ReasonContentType)
			http.Error(w, fmt.Sprintf("unsupported Content-Type %q: want %s or %s", req.Header.Get("Content-Type"), ctProtobuf, ctJSON), http.StatusUnsupportedMediaType)
			return
		}
		if !c.turn(req.Context()) {
			return // the client went away
		}
		defer c.done()
		body, reason, err := readBody(req, c.cfg.MaxRequestBytes)
		if err != nil {
			bad(reason, err)
			return
		}
		if c.full(r, body.Len()) {
			putBody(body)
			w.Header().Set("Retry-After", c.retryAfter())
			fail(http.StatusTooManyRequests, codes.ResourceExhausted, "queue full, retry later")
			return
		}
		res, err := c.decodeSubmit(r, func(dst []*model.Span) ([]*model.Span, error) {
			defer putBody(body)
			if isJSON {
				return wire.DecodeOTLPJSON(body.Bytes(), dst)
			}
			return wire.DecodeOTLPProto(body.Bytes(), dst)
		})
		if err != nil {
			bad(ReasonMalformed, err)
			return
		}
		if errors.Is(res.err, errNeverFits) {
			fail(http.StatusRequestEntityTooLarge, codes.InvalidArgument, res.err.Error())
			return
		}
		if res.err != nil {
			r.refused.Add(float64(res.refusedSpans))
			w.Header().Set("Retry-After", c.retryAfter())
			if errors.Is(res.err, errUnavailable) {
				fail(http.StatusServiceUnavailable, codes.Unavailable, res.err.Error())
			} else {
				fail(http.StatusTooManyRequests, codes.ResourceExhausted, "queue full, retry later")
			}
			return
		}
		resp := &coltracepb.ExportTraceServiceResponse{}
		if res.rejected > 0 {
			resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(res.rejected), ErrorMessage: res.rejectMsg}
		}
		writeOTLP(w, isJSON, http.StatusOK, resp)
	})
	return mux
}

func writeOTLPStatus(w http.ResponseWriter, isJSON bool, code int, st *statuspb.Status) {
	writeOTLP(w, isJSON, code, st)
}

func writeOTLP(w http.ResponseWriter, isJSON bool, code int, m proto.Message) {
	var b []byte
	var err error
	if isJSON {
		b, err = protojson.Marshal(m)
		w.Header().Set("Content-Type", ctJSON)
	} else {
		b, err = proto.Marshal(m)
		w.Header().Set("Content-Type", ctProtobuf)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(code)
	w.Write(b)
}
