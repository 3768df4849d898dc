package wire

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed is wrapped by every error about the bytes of a message: bad
// framing or syntax, a field of the wrong size, a value out of range, a
// missing trace or span ID. Such a message will never decode; callers drop
// it and count the drop.
var ErrMalformed = errors.New("malformed message")

// ErrUnknownEncoding reports an Encoding value this package does not know.
var ErrUnknownEncoding = errors.New("unknown encoding")

// DecodeError says what is wrong with a message and where. It wraps
// ErrMalformed.
type DecodeError struct {
	// What was being decoded: "jaeger span", "jaeger json", "otlp request",
	// "otlp json".
	What string
	// Field is the path of the field at fault, outermost first, such as
	// "field 4 (references) > field 1 (trace_id)" or "spans[0].traceId";
	// empty when unknown.
	Field string
	// Offset is the byte offset in the message, or -1 when the error is
	// about the message as a whole.
	Offset int
	Msg    string
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("decode ")
	b.WriteString(e.What)
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Offset >= 0 {
			fmt.Fprintf(&b, " at byte %d", e.Offset)
		}
		b.WriteString(": ")
	} else if e.Offset >= 0 {
		fmt.Fprintf(&b, "at byte %d: ", e.Offset)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *DecodeError) Unwrap() error { return ErrMalformed }
