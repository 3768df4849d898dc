package ingest

import "testing"

func TestOutBufClass(t *testing.T) {
	for _, c := range []struct{ n, class int }{
		{0, 0}, {1, 0}, {1024, 0}, {1025, 1}, {2048, 1}, {2049, 2}, {6500, 3},
		{1 << 20, 10}, {1<<20 + 1, -1},
	} {
		if got := outBufClass(c.n); got != c.class {
			t.Errorf("outBufClass(%d) = %d, want %d", c.n, got, c.class)
		}
	}
}

// TestOutBufsReuse: a buffer taken back is handed out again for a size of
// its class, never one of another class or beyond the byte bound; sizes
// above the largest class get buffers of their own.
func TestOutBufsReuse(t *testing.T) {
	var p outBufs
	a := p.get(5000)
	if len(a) != 5000 || cap(a) != 8192 {
		t.Fatalf("get(5000): len %d cap %d", len(a), cap(a))
	}
	p.put(a)
	if b := p.get(3000); cap(b) != 4096 {
		t.Fatalf("get(3000) from another class: cap %d", cap(b))
	}
	b := p.get(8192)
	if &b[0] != &a[0] || len(b) != 8192 || p.bytes != 0 {
		t.Fatalf("get(8192) did not reuse the 8 KiB buffer taken back (pooled bytes %d)", p.bytes)
	}
	if big := p.get(3 << 20); len(big) != 3<<20 {
		t.Fatalf("get(3 MiB): len %d", len(big))
	} else {
		p.put(big) // not of a class: left to the collector
	}
	p.put(make([]byte, 100)) // not from get: ignored
	for range 3 {
		p.put(make([]byte, 0, 1<<20))
	}
	if p.bytes != outBufsMaxBytes || len(p.free[10]) != 2 {
		t.Fatalf("pooled %d bytes in %d 1 MiB buffers, want the bound %d", p.bytes, len(p.free[10]), outBufsMaxBytes)
	}
}
