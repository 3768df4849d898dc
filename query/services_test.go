package query

import (
	"bytes"
	"reflect"
	"testing"
)

func TestAPIServices(t *testing.T) {
	srv := server(t)
	var got Services
	if code, body := get(t, srv, "GET", "/api/v1/services", &got); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	want := Services{Services: []Service{
		{Service: "db", Operations: []string{"SELECT"}},
		{Service: "frontend", Operations: []string{"GET /checkout"}},
		{Service: "payments", Operations: []string{"charge"}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("services:\ngot  %+v\nwant %+v", got, want)
	}
	if code, body := get(t, srv, "GET", "/api/v1/services?service=db", nil); code != 400 {
		t.Errorf("services with a parameter: %d %s", code, body)
	}
	var buf bytes.Buffer
	if err := WriteServicesText(&buf, got); err != nil {
		t.Fatal(err)
	}
	if want := "db (1 operation)\n  SELECT\nfrontend (1 operation)\n  GET /checkout\npayments (1 operation)\n  charge\n"; buf.String() != want {
		t.Errorf("text:\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestAPIBottlenecksByTag(t *testing.T) {
	srv := server(t)
	var got struct{ Bottlenecks []Bottleneck }
	if code, body := get(t, srv, "GET", "/api/v1/bottlenecks?tag=shard=1&limit=10", &got); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	// Traces 1, 3 and 5 have shard 1.
	if len(got.Bottlenecks) == 0 || got.Bottlenecks[0].Traces != 3 {
		t.Errorf("bottlenecks of shard 1: %+v", got.Bottlenecks)
	}
	if code, body := get(t, srv, "GET", "/api/v1/bottlenecks?tag=color=red", nil); code != 400 {
		t.Errorf("unpromoted tag: %d %s", code, body)
	}
}
