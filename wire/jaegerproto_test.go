package wire

import (
	"errors"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegerpb"
)

// TestJaegerProtoDifferentialMutations runs the fuzz test's differential
// check deterministically over every truncation and a set of single-byte
// mutations of the seed messages.
func TestJaegerProtoDifferentialMutations(t *testing.T) {
	check := func(b []byte) {
		t.Helper()
		got, err := DecodeJaegerProto(b)
		var p jaegerpb.Span
		var ref *model.Span
		refErr := proto.Unmarshal(b, &p)
		if refErr == nil {
			ref, refErr = spanFromPB(&p)
		}
		if (err == nil) != (refErr == nil) {
			t.Fatalf("input %x\ndirect error: %v\nreference error: %v", b, err, refErr)
		}
		if err == nil && !reflect.DeepEqual(got, ref) {
			t.Fatalf("input %x:%s", b, spanDiff(got, ref))
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("input %x: error does not wrap ErrMalformed: %v", b, err)
		}
	}
	for _, seed := range fuzzSeeds(t, "FuzzJaegerProto") {
		for n := 0; n <= len(seed); n++ {
			check(seed[:n])
		}
		m := append([]byte(nil), seed...)
		for i := range m {
			orig := m[i]
			for _, v := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff, orig ^ 0x01, orig + 1, orig ^ 0x07} {
				m[i] = v
				check(m)
			}
			m[i] = orig
		}
	}
}
