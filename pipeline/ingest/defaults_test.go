package ingest

import (
	"net"
	"testing"
)

// TestMetricsDefaultLoopback: the ingester's metrics listen on loopback by
// default, like every other default address (before: all interfaces).
func TestMetricsDefaultLoopback(t *testing.T) {
	host, _, err := net.SplitHostPort(DefaultConfig().MetricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("default metrics address %q is not loopback", DefaultConfig().MetricsAddr)
	}
}
