package wire

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// locateProtoError explains why b is not a valid message of type md:
// protobuf's own errors say only that the bytes are invalid, so this walks
// the bytes with the schema to find the field and offset at fault. cause is
// protobuf's error, reported when the walk finds nothing more precise.
func locateProtoError(b []byte, md protoreflect.MessageDescriptor, what string, cause error) error {
	path, off, msg := walkProto(b, 0, md, 0)
	if msg == "" {
		return &DecodeError{What: what, Offset: -1, Msg: cause.Error()}
	}
	return &DecodeError{What: what, Field: path, Offset: off, Msg: msg}
}

const maxWalkDepth = 100

// walkProto checks b (starting at offset base of the message) against md
// and returns the first problem: the field path, its offset, and what is
// wrong. msg is empty when b is valid as far as the walk can tell.
func walkProto(b []byte, base int, md protoreflect.MessageDescriptor, depth int) (path string, off int, msg string) {
	if depth > maxWalkDepth {
		return "", base, "message nested too deeply"
	}
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return "", base + i, "field tag: " + protoErrMsg(n)
		}
		if num > protowire.MaxValidNumber {
			return "", base + i, "invalid field number"
		}
		if typ == protowire.EndGroupType {
			return "", base + i, "unexpected end group"
		}
		start := i
		i += n
		var fd protoreflect.FieldDescriptor
		if md != nil {
			fd = md.Fields().ByNumber(num)
		}
		name := fmt.Sprintf("field %d", num)
		if fd != nil {
			name = fmt.Sprintf("field %d (%s)", num, fd.Name())
		}
		if typ != protowire.BytesType || fd == nil {
			m := protowire.ConsumeFieldValue(num, typ, b[i:])
			if m < 0 {
				return name, base + start, protoErrMsg(m)
			}
			i += m
			continue
		}
		v, m := protowire.ConsumeBytes(b[i:])
		if m < 0 {
			return name, base + start, protoErrMsg(m)
		}
		vstart := i + m - len(v)
		i += m
		switch fd.Kind() {
		case protoreflect.MessageKind:
			if p, o, msg := walkProto(v, base+vstart, fd.Message(), depth+1); msg != "" {
				return joinPath(name, p), o, msg
			}
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name, base + start, "invalid UTF-8"
			}
		case protoreflect.BytesKind:
		default:
			// A packed repeated scalar: a run of values of the field's type.
			if fd.IsList() {
				if msg := checkPacked(v, fd.Kind()); msg != "" {
					return name, base + start, msg
				}
			}
		}
	}
	return "", 0, ""
}

func checkPacked(b []byte, k protoreflect.Kind) string {
	for len(b) > 0 {
		var n int
		switch k {
		case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
			_, n = protowire.ConsumeFixed32(b)
		case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
			_, n = protowire.ConsumeFixed64(b)
		default:
			_, n = protowire.ConsumeVarint(b)
		}
		if n < 0 {
			return "packed values: " + protoErrMsg(n)
		}
		b = b[n:]
	}
	return ""
}
