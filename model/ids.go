package model

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// TraceID is a 128-bit trace identifier. High is zero for 64-bit IDs.
type TraceID struct {
	High, Low uint64
}

// SpanID is a 64-bit span identifier.
type SpanID uint64

// ErrBadID reports a malformed textual or binary identifier.
var ErrBadID = errors.New("malformed id")

// IsZero reports whether the ID is all zeros (invalid in every format we read).
func (t TraceID) IsZero() bool { return t.High == 0 && t.Low == 0 }

// String renders the ID the way Jaeger does (and so the way Jaeger's
// Elasticsearch schema and UI store and show it): 16 lowercase hex digits when
// High is zero, 32 otherwise.
func (t TraceID) String() string {
	var buf [32]byte
	return string(t.AppendHex(buf[:0]))
}

// AppendHex appends String's form to dst without allocating.
func (t TraceID) AppendHex(dst []byte) []byte {
	if t.High != 0 {
		dst = appendHex64(dst, t.High)
	}
	return appendHex64(dst, t.Low)
}

// Hex32 renders all 128 bits as 32 lowercase hex digits (the OTLP/W3C form).
func (t TraceID) Hex32() string {
	var buf [32]byte
	return string(appendHex64(appendHex64(buf[:0], t.High), t.Low))
}

// Bytes returns the 16-byte big-endian form used by Jaeger protobuf and OTLP.
func (t TraceID) Bytes() [16]byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], t.High)
	binary.BigEndian.PutUint64(b[8:], t.Low)
	return b
}

// TraceIDFromBytes reads an 8- or 16-byte big-endian trace ID.
func TraceIDFromBytes(b []byte) (TraceID, error) {
	switch len(b) {
	case 16:
		return TraceID{High: binary.BigEndian.Uint64(b[:8]), Low: binary.BigEndian.Uint64(b[8:])}, nil
	case 8:
		return TraceID{Low: binary.BigEndian.Uint64(b)}, nil
	default:
		return TraceID{}, fmt.Errorf("%w: trace id has %d bytes, want 8 or 16", ErrBadID, len(b))
	}
}

// ParseTraceID reads 1 to 32 hex digits (either case), as Jaeger accepts them.
func ParseTraceID(s string) (TraceID, error) {
	if len(s) == 0 || len(s) > 32 {
		return TraceID{}, fmt.Errorf("%w: trace id %q must have 1 to 32 hex digits", ErrBadID, s)
	}
	var t TraceID
	var err error
	if len(s) > 16 {
		if t.High, err = strconv.ParseUint(s[:len(s)-16], 16, 64); err != nil {
			return TraceID{}, fmt.Errorf("%w: trace id %q is not hex", ErrBadID, s)
		}
		s = s[len(s)-16:]
	}
	if t.Low, err = strconv.ParseUint(s, 16, 64); err != nil {
		return TraceID{}, fmt.Errorf("%w: trace id %q is not hex", ErrBadID, s)
	}
	return t, nil
}

// String renders the span ID as 16 lowercase hex digits.
func (s SpanID) String() string {
	var buf [16]byte
	return string(appendHex64(buf[:0], uint64(s)))
}

// AppendHex appends String's form to dst without allocating.
func (s SpanID) AppendHex(dst []byte) []byte { return appendHex64(dst, uint64(s)) }

// Bytes returns the 8-byte big-endian form.
func (s SpanID) Bytes() [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(s))
	return b
}

// SpanIDFromBytes reads an 8-byte big-endian span ID.
func SpanIDFromBytes(b []byte) (SpanID, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: span id has %d bytes, want 8", ErrBadID, len(b))
	}
	return SpanID(binary.BigEndian.Uint64(b)), nil
}

// ParseSpanID reads 1 to 16 hex digits.
func ParseSpanID(s string) (SpanID, error) {
	if len(s) == 0 || len(s) > 16 {
		return 0, fmt.Errorf("%w: span id %q must have 1 to 16 hex digits", ErrBadID, s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: span id %q is not hex", ErrBadID, s)
	}
	return SpanID(v), nil
}

func appendHex64(dst []byte, v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	n := len(dst)
	dst = append(dst, make([]byte, 16)...)
	hex.Encode(dst[n:], b[:])
	return dst
}
