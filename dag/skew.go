package dag

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// hostID is a span's host identity, from its process tags.
type hostID struct {
	name    string     // "host.name", else "hostname"
	ip      netip.Addr // "ip", when it parses as an address
	ipRaw   string     // "ip", when it is a string that does not parse
	hasName bool
	hasIP   bool
}

// Host identity tags, in order of preference.
const (
	tagHostName = "host.name" // OpenTelemetry resource attribute
	tagHostname = "hostname"  // Jaeger client process tag
	tagIP       = "ip"        // Jaeger client process tag
)

func hostOf(s *model.Span) hostID {
	var h hostID
	var hostname string
	var hasHostname bool
	for _, kv := range s.Process.Tags {
		switch kv.Key {
		case tagHostName:
			if !h.hasName {
				h.name, h.hasName = kv.AsString(), true
			}
		case tagHostname:
			if !hasHostname {
				hostname, hasHostname = kv.AsString(), true
			}
		case tagIP:
			if !h.hasIP {
				h.hasIP = true
				h.ip, h.ipRaw = parseIP(kv)
			}
		}
	}
	if !h.hasName && hasHostname {
		h.name, h.hasName = hostname, true
	}
	return h
}

// parseIP reads an "ip" tag as Jaeger clients write it: a string, an IPv4
// address packed in an int64, or 4 or 16 bytes.
func parseIP(kv model.KeyValue) (netip.Addr, string) {
	switch kv.Type {
	case model.Int64Type:
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(kv.Num))
		return netip.AddrFrom4(b), ""
	case model.BinaryType:
		if ip, ok := netip.AddrFromSlice([]byte(kv.Str)); ok {
			return ip.Unmap(), ""
		}
	case model.StringType:
		if ip, err := netip.ParseAddr(kv.Str); err == nil {
			return ip.Unmap(), ""
		}
	}
	return netip.Addr{}, kv.AsString()
}

func (a *Analyzer) host(i int32) *hostID {
	if !a.hostKnown[i] {
		a.hosts[i] = hostOf(a.spans[i])
		a.hostKnown[i] = true
	}
	return &a.hosts[i]
}

// sameHost reports whether spans i and j ran on the same host (see the package
// documentation).
func (a *Analyzer) sameHost(i, j int32) bool {
	x, y := a.host(i), a.host(j)
	switch {
	case x.hasName && y.hasName:
		return x.name == y.name
	case x.hasIP && y.hasIP:
		return x.ip == y.ip && x.ipRaw == y.ipRaw
	default:
		return !x.hasName && !x.hasIP && !y.hasName && !y.hasIP
	}
}

func (h *hostID) String() string {
	switch {
	case h.hasName:
		return h.name
	case h.hasIP && h.ip.IsValid():
		return h.ip.String()
	case h.hasIP:
		return h.ipRaw
	}
	return "unknown"
}

// adjustSkew repairs clock skew top-down from every root (see the package
// documentation). It fills a.shift and moves a.start, a.end and the spans.
func (a *Analyzer) adjustSkew(root int) {
	n := a.n
	a.shift = grow(a.shift, n)
	clear(a.shift)
	if a.opts.MaxClockSkewAdjust < 0 {
		return
	}
	a.hosts = grow(a.hosts, n)
	a.hostKnown = grow(a.hostKnown, n)
	clear(a.hostKnown)
	maxAdj := int64(a.opts.MaxClockSkewAdjust)
	if a.opts.ClockSkew == ClockSkewHostOffsets {
		ref := int32(root)
		if root < 0 {
			for _, r := range a.kids[a.off[n]:a.off[n+1]] {
				if ref < 0 || a.rootBefore(int(r), int(ref)) {
					ref = r
				}
			}
		}
		if !a.hostOffsets(ref) {
			a.warnf(model.WarnClockSkew, 0, "more than %d hosts: clock skew repaired span by span", maxSkewHosts)
		}
	}

	stack := a.istack[:0]
	roots := a.kids[a.off[n]:a.off[n+1]]
	for k := len(roots) - 1; k >= 0; k-- {
		stack = append(stack, roots[k])
	}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range a.kids[a.off[p]:a.off[p+1]] {
			stack = append(stack, c)
			var delta int64
			if a.shift[p] != 0 && a.sameHost(c, p) {
				delta = a.shift[p]
				a.moveSpan(c, delta, a.notes[p])
				continue
			}
			if a.flag[c]&fBlocking == 0 || (a.start[c] >= a.start[p] && a.end[c] <= a.end[p]) || a.sameHost(c, p) {
				continue
			}
			delta = a.grid(a.skewDelta(c, p))
			if delta == 0 {
				continue
			}
			if delta == math.MinInt64 || max(delta, -delta) > maxAdj {
				a.warnf(model.WarnSkewTooLarge, a.spans[c].SpanID,
					"needs a clock-skew shift of %v to fit parent %s (host %s vs %s), more than the maximum %v; not shifted",
					time.Duration(delta), a.spans[p].SpanID, a.host(c), a.host(p), a.opts.MaxClockSkewAdjust)
				continue
			}
			a.warnf(model.WarnClockSkew, a.spans[c].SpanID,
				"shifted by %v, with its same-host descendants, to fit parent %s (host %s vs %s)",
				time.Duration(delta), a.spans[p].SpanID, a.host(c), a.host(p))
			a.moveSpan(c, delta, fmt.Sprintf("clock skew: timestamps shifted by %v to fit parent %s on another host",
				time.Duration(delta), a.spans[p].SpanID))
		}
	}
	a.istack = stack
}

// skewDelta computes the shift that brings blocking child c into parent p, as
// Jaeger's clock-skew adjuster does: a child longer than its parent can only be
// made to start with it; a shorter one is centred in it.
func (a *Analyzer) skewDelta(c, p int32) int64 {
	ps, pe, cs, ce := a.start[p], a.end[p], a.start[c], a.end[c]
	pd, cd := pe-ps, ce-cs
	if cd > pd {
		if cs < ps {
			return subSat(ps, cs)
		}
		return 0
	}
	if cs >= ps && ce <= pe {
		return 0
	}
	return subSat(addSat(ps, (pd-cd)/2), cs)
}

// moveSpan shifts span c by delta and records the note on it.
func (a *Analyzer) moveSpan(c int32, delta int64, note string) {
	if a.notes == nil || len(a.notes) < a.n {
		a.notes = make([]string, a.n)
	}
	a.shift[c] = delta
	a.notes[c] = note
	a.shiftSpan(c, delta, note)
}
