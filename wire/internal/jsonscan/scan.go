// Package jsonscan is a small pull parser for JSON held in memory, used by
// tracepipe's JSON span decoders. It reads one value token by token without
// building an intermediate tree, so a decoder can map JSON straight into its
// target types, accept the lenient forms real producers write (numbers as
// strings, enums as names or numbers), and report the byte offset of
// whatever is wrong.
//
// Errors are sticky: the first error is kept, every later call returns a zero
// value (and false from the iteration methods), so loops end by themselves
// and the caller checks Err once at the end. No input makes it panic; nesting
// deeper than MaxDepth is an error.
//
// Typical use:
//
//	s := jsonscan.New(b)
//	if s.ObjectStart() {
//		for s.NextKey() { switch string(s.Key()) { case "a": x = s.Int64(); default: s.Skip() } }
//	}
//	s.End()
//	if err := s.Err(); err != nil { ... }
package jsonscan

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of arrays and objects.
const MaxDepth = 1000

// Error is a syntax or content error at a byte offset of the input.
type Error struct {
	Offset int
	Field  string // JSON field the error is about, when known
	Msg    string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s at byte %d: %s", e.Field, e.Offset, e.Msg)
	}
	return fmt.Sprintf("at byte %d: %s", e.Offset, e.Msg)
}

// Scanner reads one JSON document from a byte slice. A Scanner is not safe
// for concurrent use; Reset makes it reusable.
type Scanner struct {
	buf      []byte
	pos      int
	err      *Error
	afterOpn bool // just after '{' or '[': no comma expected
	depth    int
	key      []byte
	keyBuf   []byte
	keyOwned bool // key is in keyBuf (it had escapes), not a view of buf
	scratch  []byte
}

// New returns a scanner over b. The scanner does not modify b.
func New(b []byte) *Scanner {
	s := &Scanner{}
	s.Reset(b)
	return s
}

// Reset starts reading b, forgetting any previous input and error.
func (s *Scanner) Reset(b []byte) {
	s.buf, s.pos, s.err, s.afterOpn, s.depth, s.key = b, 0, nil, false, 0, nil
}

// Err returns the first error, or nil.
func (s *Scanner) Err() error {
	if s.err == nil {
		return nil
	}
	return s.err
}

// Failed reports whether an error occurred.
func (s *Scanner) Failed() bool { return s.err != nil }

// Fail records an error at offset off about field (may be empty) unless an
// error is already recorded.
func (s *Scanner) Fail(off int, field, format string, args ...any) {
	if s.err == nil {
		if len(args) > 0 {
			format = fmt.Sprintf(format, args...)
		}
		s.err = &Error{Offset: off, Field: field, Msg: format}
	}
	// Make every later read stop.
	s.pos = len(s.buf)
}

func (s *Scanner) failf(format string, args ...any) { s.Fail(s.pos, "", format, args...) }

func (s *Scanner) skipWS() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// Pos returns the offset of the next value (after whitespace).
func (s *Scanner) Pos() int {
	s.skipWS()
	return s.pos
}

// Peek returns the first byte of the next value, or 0 at the end of input or
// after an error.
func (s *Scanner) Peek() byte {
	if s.err != nil {
		return 0
	}
	s.skipWS()
	if s.pos >= len(s.buf) {
		return 0
	}
	return s.buf[s.pos]
}

func (s *Scanner) unexpected(want string) {
	s.skipWS()
	if s.pos >= len(s.buf) {
		s.failf("unexpected end of input, want %s", want)
		return
	}
	s.failf("unexpected %q, want %s", s.buf[s.pos], want)
}

// End checks that only whitespace follows the value read.
func (s *Scanner) End() {
	if s.err != nil {
		return
	}
	s.skipWS()
	if s.pos != len(s.buf) {
		s.failf("unexpected %q after the top-level value", s.buf[s.pos])
	}
}

// Null consumes a null literal and reports whether there was one.
func (s *Scanner) Null() bool {
	if s.Peek() != 'n' {
		return false
	}
	s.literal("null")
	return s.err == nil
}

func (s *Scanner) literal(lit string) {
	if len(s.buf)-s.pos < len(lit) || string(s.buf[s.pos:s.pos+len(lit)]) != lit {
		s.failf("invalid literal, want %s", lit)
		return
	}
	s.pos += len(lit)
}

// ObjectStart consumes '{'. It returns false (with an error recorded) when
// the next value is not an object.
func (s *Scanner) ObjectStart() bool {
	if s.Peek() != '{' {
		if s.err == nil {
			s.unexpected("object")
		}
		return false
	}
	if s.depth >= MaxDepth {
		s.failf("nesting deeper than %d", MaxDepth)
		return false
	}
	s.depth++
	s.pos++
	s.afterOpn = true
	return true
}

// NextKey advances to the next member of the current object and reads its
// key and the colon; Key returns the key. It returns false, consuming the
// closing '}', when the object ends (or on error).
func (s *Scanner) NextKey() bool {
	c := s.Peek()
	if s.err != nil {
		return false
	}
	if c == '}' {
		s.pos++
		s.depth--
		s.afterOpn = false
		return false
	}
	if !s.afterOpn {
		if c != ',' {
			s.unexpected("',' or '}'")
			return false
		}
		s.pos++
		c = s.Peek()
	}
	s.afterOpn = false
	if c != '"' {
		s.unexpected("object key")
		return false
	}
	k := s.readString(false)
	if s.err != nil {
		return false
	}
	// Own the key bytes when they live in scratch (the value read next may
	// reuse scratch).
	if len(k) > 0 && len(s.scratch) > 0 && &k[0] == &s.scratch[0] {
		s.keyBuf = append(s.keyBuf[:0], k...)
		s.key, s.keyOwned = s.keyBuf, true
	} else {
		s.key, s.keyOwned = k, false
	}
	if s.Peek() != ':' {
		s.unexpected("':'")
		return false
	}
	s.pos++
	return true
}

// Key returns the key read by the last NextKey; valid until the next call
// to NextKey.
func (s *Scanner) Key() []byte { return s.key }

// StableKey returns the key read by the last NextKey in a form that stays
// valid: a view of the input when possible, else a copy.
func (s *Scanner) StableKey() []byte {
	if s.keyOwned {
		return append([]byte(nil), s.key...)
	}
	return s.key
}

// ArrayStart consumes '['. It returns false (with an error recorded) when
// the next value is not an array.
func (s *Scanner) ArrayStart() bool {
	if s.Peek() != '[' {
		if s.err == nil {
			s.unexpected("array")
		}
		return false
	}
	if s.depth >= MaxDepth {
		s.failf("nesting deeper than %d", MaxDepth)
		return false
	}
	s.depth++
	s.pos++
	s.afterOpn = true
	return true
}

// NextElem advances to the next element of the current array. It returns
// false, consuming the closing ']', when the array ends (or on error).
func (s *Scanner) NextElem() bool {
	c := s.Peek()
	if s.err != nil {
		return false
	}
	if c == ']' {
		s.pos++
		s.depth--
		s.afterOpn = false
		return false
	}
	if !s.afterOpn {
		if c != ',' {
			s.unexpected("',' or ']'")
			return false
		}
		s.pos++
		s.skipWS()
	}
	s.afterOpn = false
	if s.pos >= len(s.buf) {
		s.unexpected("array element")
		return false
	}
	return true
}

// StringBytes reads a string value and returns its unescaped bytes: a view
// into the input, or into a scratch buffer valid until the next read.
func (s *Scanner) StringBytes() []byte {
	if s.Peek() != '"' {
		if s.err == nil {
			s.unexpected("string")
		}
		return nil
	}
	return s.readString(true)
}

// String reads a string value.
func (s *Scanner) String() string {
	b := s.StringBytes()
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

// readString reads the string starting at s.pos (which holds '"').
func (s *Scanner) readString(value bool) []byte {
	start := s.pos
	i := s.pos + 1
	// Fast path: no escapes, ASCII only.
	for i < len(s.buf) {
		c := s.buf[i]
		if c == '"' {
			s.pos = i + 1
			return s.buf[start+1 : i]
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	out := append(s.scratch[:0], s.buf[start+1:i]...)
	for {
		if i >= len(s.buf) {
			s.Fail(start, "", "unterminated string")
			return nil
		}
		c := s.buf[i]
		switch {
		case c == '"':
			s.pos = i + 1
			s.scratch = out
			return out
		case c < 0x20:
			s.Fail(i, "", "control character %#x in string", c)
			return nil
		case c == '\\':
			if i+1 >= len(s.buf) {
				s.Fail(start, "", "unterminated string")
				return nil
			}
			e := s.buf[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(s.buf, i)
				if !ok {
					s.Fail(i-2, "", "invalid \\u escape")
					return nil
				}
				i += 4
				if utf16.IsSurrogate(r) {
					r2, ok2 := rune(0), false
					if i+1 < len(s.buf) && s.buf[i] == '\\' && s.buf[i+1] == 'u' {
						r2, ok2 = hex4(s.buf, i+2)
					}
					if d := utf16.DecodeRune(r, r2); ok2 && d != utf8.RuneError {
						r = d
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				s.Fail(i-2, "", "invalid escape \\%c", e)
				return nil
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(s.buf[i:])
			if r == utf8.RuneError && n == 1 {
				s.Fail(i, "", "invalid UTF-8 in string")
				return nil
			}
			out = append(out, s.buf[i:i+n]...)
			i += n
		}
	}
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// Bool reads true or false (or the strings "true" and "false").
func (s *Scanner) Bool() bool {
	switch s.Peek() {
	case 't':
		s.literal("true")
		return s.err == nil
	case 'f':
		s.literal("false")
		return false
	case '"':
		off := s.pos
		switch string(s.readString(true)) {
		case "true":
			return true
		case "false":
			return false
		}
		s.Fail(off, "", "invalid boolean")
		return false
	}
	if s.err == nil {
		s.unexpected("boolean")
	}
	return false
}

// number reads a JSON number token, or a string holding one when quoted is
// allowed, and returns its text. special reports a quoted NaN/Infinity.
func (s *Scanner) number() (text []byte, off int) {
	c := s.Peek()
	off = s.pos
	if s.err != nil {
		return nil, off
	}
	if c == '"' {
		t := s.readString(true)
		if s.err != nil {
			return nil, off
		}
		return t, off
	}
	if c != '-' && (c < '0' || c > '9') {
		s.unexpected("number")
		return nil, off
	}
	end, ok := scanNumber(s.buf, s.pos)
	if !ok {
		s.Fail(off, "", "invalid number")
		return nil, off
	}
	s.pos = end
	return s.buf[off:end], off
}

// scanNumber checks the JSON number grammar at b[i:] and returns its end.
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return i, false
	}
	if b[i] == '0' {
		i++
	} else if '1' <= b[i] && b[i] <= '9' {
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	} else {
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, false
		}
	}
	return i, true
}

func isPlainInt(t []byte) bool {
	if len(t) > 0 && t[0] == '-' {
		t = t[1:]
	}
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validNumberText(t []byte) bool {
	end, ok := scanNumber(t, 0)
	return ok && end == len(t)
}

// Int64 reads an integer: a JSON number or a string holding one (the
// protobuf JSON form of 64-bit integers). Exponent forms are accepted when
// the value is integral.
func (s *Scanner) Int64() int64 {
	t, off := s.number()
	if s.err != nil {
		return 0
	}
	if isPlainInt(t) {
		v, err := strconv.ParseInt(string(t), 10, 64)
		if err != nil {
			s.Fail(off, "", "integer %s out of range", t)
			return 0
		}
		return v
	}
	if !validNumberText(t) {
		s.Fail(off, "", "invalid integer %q", t)
		return 0
	}
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		s.Fail(off, "", "invalid integer %s", t)
		return 0
	}
	return int64(f)
}

// Uint64 reads a non-negative integer, as Int64 does.
func (s *Scanner) Uint64() uint64 {
	t, off := s.number()
	if s.err != nil {
		return 0
	}
	if isPlainInt(t) && t[0] != '-' {
		v, err := strconv.ParseUint(string(t), 10, 64)
		if err != nil {
			s.Fail(off, "", "integer %s out of range", t)
			return 0
		}
		return v
	}
	if !validNumberText(t) {
		s.Fail(off, "", "invalid unsigned integer %q", t)
		return 0
	}
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f >= math.MaxUint64 {
		s.Fail(off, "", "invalid unsigned integer %s", t)
		return 0
	}
	return uint64(f)
}

// Float64 reads a number, a string holding one, or the strings "NaN",
// "Infinity" and "-Infinity".
func (s *Scanner) Float64() float64 {
	t, off := s.number()
	if s.err != nil {
		return 0
	}
	switch string(t) {
	case "NaN":
		return math.NaN()
	case "Infinity":
		return math.Inf(1)
	case "-Infinity":
		return math.Inf(-1)
	}
	if !validNumberText(t) {
		s.Fail(off, "", "invalid number %q", t)
		return 0
	}
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil {
		s.Fail(off, "", "number %s out of range", t)
		return 0
	}
	return f
}

// Base64 reads a string holding standard or URL-safe base64, padded or not
// (what protobuf JSON accepts for bytes). It returns a new slice.
func (s *Scanner) Base64() []byte {
	off := s.Pos()
	t := s.StringBytes()
	if s.err != nil {
		return nil
	}
	b, err := DecodeBase64(t)
	if err != nil {
		s.Fail(off, "", "invalid base64")
		return nil
	}
	return b
}

// DecodeBase64 decodes standard or URL-safe base64, padded or not.
func DecodeBase64(t []byte) ([]byte, error) {
	enc := base64.StdEncoding
	for _, c := range t {
		if c == '-' || c == '_' {
			enc = base64.URLEncoding
			break
		}
	}
	if len(t)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	out := make([]byte, enc.DecodedLen(len(t)))
	n, err := enc.Decode(out, t)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// Skip skips the next value, whatever it is, checking its syntax.
func (s *Scanner) Skip() {
	switch s.Peek() {
	case '{':
		if s.ObjectStart() {
			for s.NextKey() {
				s.Skip()
			}
		}
	case '[':
		if s.ArrayStart() {
			for s.NextElem() {
				s.Skip()
			}
		}
	case '"':
		s.readString(false)
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	case 0:
		if s.err == nil {
			s.unexpected("value")
		}
	default:
		c := s.buf[s.pos]
		if c != '-' && (c < '0' || c > '9') {
			s.unexpected("value")
			return
		}
		end, ok := scanNumber(s.buf, s.pos)
		if !ok {
			s.Fail(s.pos, "", "invalid number")
			return
		}
		s.pos = end
	}
}

// WrapField prefixes the recorded error's field path with name: a member
// name ("tags") or an index ("[3]"). Decoders call it while unwinding, so a
// path is built only for an error.
func (s *Scanner) WrapField(name string) {
	if s.err == nil || name == "" {
		return
	}
	switch {
	case s.err.Field == "":
		s.err.Field = name
	case s.err.Field[0] == '[':
		s.err.Field = name + s.err.Field
	default:
		s.err.Field = name + "." + s.err.Field
	}
}

// WrapIndex is WrapField("[i]").
func (s *Scanner) WrapIndex(i int) {
	if s.err != nil {
		s.WrapField("[" + strconv.Itoa(i) + "]")
	}
}

// Error returns the recorded error as *Error, or nil.
func (s *Scanner) Error() *Error { return s.err }

// Rest returns the input from the next value on (after whitespace).
func (s *Scanner) Rest() []byte {
	s.skipWS()
	return s.buf[s.pos:]
}

// Consumed returns the input from offset start to the current position:
// the raw text of what was read since start.
func (s *Scanner) Consumed(start int) []byte {
	if start < 0 || start > s.pos {
		return nil
	}
	return s.buf[start:s.pos]
}
