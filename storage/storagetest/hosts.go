package storagetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

// testSearchHostAliases: real clients name the host "hostname"
// (jaeger-client-go's process tag) or "host.name" (OpenTelemetry's resource
// attribute); both are searchable as the promoted tag "host".
func testSearchHostAliases(t *testing.T, s storage.Store) {
	withProcessTag := func(n uint64, key, host string) model.AssembledTrace {
		at := Trace(Spec{ID: tid(n), Start: Day0.Add(time.Duration(n) * time.Minute)})
		for _, sp := range at.Trace.Spans {
			sp.Process.Tags = append(model.KeyValues{model.String("ip", "10.0.0.1")}, model.String(key, host))
		}
		return at
	}
	write(t, s,
		withProcessTag(1, "hostname", "jaeger-host-1"),
		withProcessTag(2, "host.name", "otel-host-1"),
		withProcessTag(3, "host", "plain-host-1"),
		withProcessTag(4, "hostname", "jaeger-host-2"),
	)
	for _, c := range []struct {
		host string
		want []uint64
	}{
		{"jaeger-host-1", []uint64{1}},
		{"otel-host-1", []uint64{2}},
		{"plain-host-1", []uint64{3}},
		{"jaeger-host-2", []uint64{4}},
		{"10.0.0.1", nil},
	} {
		got := ids(find(t, s, model.TraceQuery{Tags: map[string]string{"host": c.host}, Limit: 10}))
		if len(got) == 0 && len(c.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("host=%s: got traces %v, want %v", c.host, got, c.want)
		}
	}
	st, err := s.GetTrace(ctx(t), tid(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Summary.PromotedTags["host"]; !reflect.DeepEqual(got, []string{"otel-host-1"}) {
		t.Errorf("stored summary's host tag %v, want [otel-host-1]", got)
	}
}
