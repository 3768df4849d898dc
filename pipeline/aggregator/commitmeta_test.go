package aggregator

import (
	"errors"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

func TestCommitMetadata(t *testing.T) {
	const ck = "AgAAAAAAAAAA-_x" // any base64url text: the checkpoint is opaque here
	for _, tc := range []struct {
		name      string
		in        rollup.Commit
		processed int64
		want      tpkafka.Commit
	}{
		{"open windows: the processed position is committed", rollup.Commit{Offset: 120, Metadata: []byte(ck)}, 211, cm(211, "from=120;"+ck)},
		{"nothing in memory", rollup.Commit{Offset: 211, Metadata: []byte(ck)}, 211, cm(211, "from=211;"+ck)},
		{"never below the re-read start", rollup.Commit{Offset: 50, Metadata: []byte(ck)}, 40, cm(50, "from=50;"+ck)},
		{"offset 0", rollup.Commit{Offset: 0, Metadata: []byte(ck)}, 0, cm(0, "from=0;"+ck)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := encodeCommit(tc.in, tc.processed)
			if got != tc.want {
				t.Fatalf("encodeCommit = %+v, want %+v", got, tc.want)
			}
			back, err := decodeCommit(got)
			if err != nil {
				t.Fatal(err)
			}
			if back.Offset != tc.in.Offset || string(back.Metadata) != string(tc.in.Metadata) {
				t.Errorf("decodeCommit = %d %q, want %d %q", back.Offset, back.Metadata, tc.in.Offset, tc.in.Metadata)
			}
		})
	}
}

func TestDecodeCommit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       tpkafka.Commit
		from     int64
		meta     string
		malforms bool
	}{
		{"earlier version: the offset is the re-read start", cm(120, "AgAAAA"), 120, "AgAAAA", false},
		{"committed by a tool", cm(7, ""), 7, "", false},
		{"enveloped", cm(211, "from=120;AgAAAA"), 120, "AgAAAA", false},
		{"no separator", cm(211, "from=120"), 0, "", true},
		{"no checkpoint", cm(211, "from=120;"), 0, "", true},
		{"start after the offset", cm(100, "from=120;AgAAAA"), 0, "", true},
		{"negative start", cm(100, "from=-1;AgAAAA"), 0, "", true},
		{"not a number", cm(100, "from=1x;AgAAAA"), 0, "", true},
		{"leading zero", cm(100, "from=01;AgAAAA"), 0, "", true},
		{"plus sign", cm(100, "from=+1;AgAAAA"), 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeCommit(tc.in)
			if tc.malforms {
				if !errors.Is(err, errCommitMeta) {
					t.Fatalf("decodeCommit(%+v) = %+v, %v; want errCommitMeta", tc.in, c, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Offset != tc.from || string(c.Metadata) != tc.meta {
				t.Errorf("decodeCommit(%+v) = %d %q, want %d %q", tc.in, c.Offset, c.Metadata, tc.from, tc.meta)
			}
		})
	}
}

// FuzzDecodeCommit: any committed metadata decodes to an error or to a
// re-read start at or below the committed offset, and what encodeCommit
// makes of a decoded commit decodes to the same.
func FuzzDecodeCommit(f *testing.F) {
	f.Add(int64(211), "from=120;AgAAAA")
	f.Add(int64(0), "")
	f.Add(int64(5), "AgAAAA")
	f.Add(int64(5), "from=;")
	f.Fuzz(func(t *testing.T, off int64, meta string) {
		c, err := decodeCommit(cm(off, meta))
		if err != nil {
			return
		}
		if c.Offset != off && (c.Offset > off || c.Offset < 0) {
			t.Fatalf("re-read start %d for committed offset %d", c.Offset, off)
		}
		if strings.HasPrefix(meta, resumePrefix) && len(c.Metadata) == 0 {
			t.Fatal("an enveloped commit without a checkpoint was accepted")
		}
		if c.Offset < 0 || len(c.Metadata) == 0 || strings.HasPrefix(string(c.Metadata), resumePrefix) {
			return
		}
		again, err := decodeCommit(encodeCommit(c, off))
		if err != nil {
			t.Fatalf("re-encoded %+v: %v", c, err)
		}
		if again.Offset != c.Offset || string(again.Metadata) != string(c.Metadata) {
			t.Fatalf("re-encoded %+v decodes to %+v", c, again)
		}
	})
}

func cm(offset int64, meta string) tpkafka.Commit {
	return tpkafka.Commit{Offset: offset, Metadata: meta}
}
