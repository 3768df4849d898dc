package jsonscan

import (
	"math"
	"strings"
	"testing"
)

func TestStrings(t *testing.T) {
	cases := []struct {
		name, in, want, err string
	}{
		{"plain", `"abc"`, "abc", ""},
		{"escapes", `"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t", ""},
		{"unicode escape", `"\u00e9\u4e2d"`, "é中", ""},
		{"surrogate pair", `"\ud83d\ude00"`, "😀", ""},
		{"lone surrogate becomes U+FFFD", `"\ud83dx"`, "\uFFFDx", ""},
		{"raw utf-8", `"grüße"`, "grüße", ""},
		{"invalid utf-8", "\"a\xffb\"", "", "at byte 2: invalid UTF-8 in string"},
		{"control character", "\"a\nb\"", "", "at byte 2: control character 0xa in string"},
		{"bad escape", `"\x"`, "", `at byte 1: invalid escape \x`},
		{"bad unicode escape", `"\u12g4"`, "", `at byte 1: invalid \u escape`},
		{"unterminated", `"abc`, "", "at byte 0: unterminated string"},
		{"not a string", `12`, "", "at byte 0: unexpected '1', want string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New([]byte(c.in))
			got := s.String()
			s.End()
			if c.err != "" {
				if s.Err() == nil || s.Err().Error() != c.err {
					t.Fatalf("error %v, want %s", s.Err(), c.err)
				}
				return
			}
			if s.Err() != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, s.Err(), c.want)
			}
		})
	}
}

func TestNumbers(t *testing.T) {
	ints := map[string]int64{`0`: 0, `-12`: -12, `"42"`: 42, `1e3`: 1000, `"9223372036854775807"`: math.MaxInt64, `-9223372036854775808`: math.MinInt64}
	for in, want := range ints {
		s := New([]byte(in))
		if got := s.Int64(); got != want || s.Err() != nil {
			t.Errorf("Int64(%s) = %d, %v", in, got, s.Err())
		}
	}
	for _, bad := range []string{`1.5`, `"x"`, `9223372036854775808`, `01`, `-`, `1e`, `true`, `"1 "`} {
		s := New([]byte(bad))
		s.Int64()
		s.End()
		if s.Err() == nil {
			t.Errorf("Int64(%s): no error", bad)
		}
	}
	if v := New([]byte(`"18446744073709551615"`)).Uint64(); v != math.MaxUint64 {
		t.Error(v)
	}
	s := New([]byte(`-1`))
	if s.Uint64(); s.Err() == nil {
		t.Error("Uint64(-1): no error")
	}
	floats := map[string]float64{`1.5`: 1.5, `"2.5"`: 2.5, `-0`: math.Copysign(0, -1), `"Infinity"`: math.Inf(1), `"-Infinity"`: math.Inf(-1), `5e-324`: 5e-324}
	for in, want := range floats {
		s := New([]byte(in))
		if got := s.Float64(); got != want || math.Signbit(got) != math.Signbit(want) || s.Err() != nil {
			t.Errorf("Float64(%s) = %v, %v", in, got, s.Err())
		}
	}
	if f := New([]byte(`"NaN"`)).Float64(); !math.IsNaN(f) {
		t.Error(f)
	}
}

func TestStructure(t *testing.T) {
	doc := ` { "a" : [1, {"b": null}, "x", true, false, -2.5e3], "c\u0064": {}, "e": [] } `
	s := New([]byte(doc))
	var keys []string
	if s.ObjectStart() {
		for s.NextKey() {
			keys = append(keys, string(s.StableKey()))
			s.Skip()
		}
	}
	s.End()
	if s.Err() != nil || strings.Join(keys, ",") != "a,cd,e" {
		t.Fatalf("keys %v, err %v", keys, s.Err())
	}
	for _, c := range []struct{ doc, err string }{
		{`{"a":1,}`, "at byte 7: unexpected '}', want object key"},
		{`{"a" 1}`, "at byte 5: unexpected '1', want ':'"},
		{`[1 2]`, "at byte 3: unexpected '2', want ',' or ']'"},
		{`{"a":1} x`, "at byte 8: unexpected 'x' after the top-level value"},
		{`[`, "at byte 1: unexpected end of input, want array element"},
		{`nul`, "at byte 0: invalid literal, want null"},
		{strings.Repeat("[", MaxDepth+1), "at byte 1000: nesting deeper than 1000"},
	} {
		s := New([]byte(c.doc))
		s.Skip()
		s.End()
		if s.Err() == nil || s.Err().Error() != c.err {
			t.Errorf("%s: error %v, want %s", c.doc, s.Err(), c.err)
		}
	}
}

func TestWrapField(t *testing.T) {
	s := New([]byte(`{"a":[{"b":x}]}`))
	if s.ObjectStart() && s.NextKey() && s.ArrayStart() && s.NextElem() && s.ObjectStart() && s.NextKey() {
		s.Int64()
	}
	s.WrapField("b")
	s.WrapIndex(0)
	s.WrapField("a")
	if got := s.Err().Error(); got != "a[0].b at byte 11: unexpected 'x', want number" {
		t.Fatal(got)
	}
}

func TestAppend(t *testing.T) {
	got := string(AppendString(nil, "a\"\\\n\x01<>&\u2028é\xff"))
	want := `"a\"\\\n\u0001\u003c\u003e\u0026\u2028é\ufffd"`
	if got != want {
		t.Fatalf("%s\n%s", got, want)
	}
	// What AppendString writes, String reads back (up to U+FFFD).
	s := New([]byte(got))
	if back := s.String(); back != "a\"\\\n\x01<>&\u2028é\uFFFD" {
		t.Fatalf("%q", back)
	}
	for f, want := range map[float64]string{1.5: "1.5", math.NaN(): `"NaN"`, math.Inf(-1): `"-Infinity"`, 1e21: "1e+21"} {
		if got := string(AppendFloat(nil, f)); got != want {
			t.Errorf("AppendFloat(%v) = %s", f, got)
		}
	}
}
