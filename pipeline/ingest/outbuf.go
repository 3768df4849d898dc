package ingest

import "math/bits"

// outBufs reuses the buffers of a partition's encoded output messages once
// the broker acknowledged them (kafka-go is done with a message before its
// completion callback, which sends the acknowledgement): without it every
// emitted trace was a new buffer of its encoded size, the ingester's
// largest allocation after the spans it reads. Buffers come in capacity
// classes, powers of two from 1 KiB to 1 MiB; at most outBufsMaxBytes of
// them wait for reuse (per partition, outside the budgets), the rest are
// left to the collector. Used from the partition's goroutine only.
type outBufs struct {
	free  [outBufClasses][][]byte
	bytes int // capacity of the buffers in free
}

const (
	outBufMinShift  = 10 // the smallest class: 1 KiB
	outBufClasses   = 11 // up to 1 MiB
	outBufsMaxBytes = 2 << 20
)

// outBufClass is the class whose buffers hold n bytes, or -1 when none
// does.
func outBufClass(n int) int {
	c := 0
	if n > 1<<outBufMinShift {
		c = bits.Len(uint(n-1)) - outBufMinShift
	}
	if c >= outBufClasses {
		return -1
	}
	return c
}

// get returns a buffer of length n: a reused one of its class, or a new
// one with the class's capacity (exactly n above the largest class).
func (p *outBufs) get(n int) []byte {
	c := outBufClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if l := p.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		p.free[c] = l[:len(l)-1]
		p.bytes -= cap(b)
		return b[:n]
	}
	return make([]byte, n, 1<<(c+outBufMinShift))
}

// put takes back a buffer get returned, once nothing uses it any more.
func (p *outBufs) put(b []byte) {
	c := outBufClass(cap(b))
	if c < 0 || cap(b) != 1<<(c+outBufMinShift) || p.bytes+cap(b) > outBufsMaxBytes {
		return
	}
	p.free[c] = append(p.free[c], b[:0])
	p.bytes += cap(b)
}
