package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestQueryServices(t *testing.T) {
	path := queryStore(t)
	var out bytes.Buffer
	if err := runQuery(context.Background(), []string{"services", "--store", path}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := "db (1 operation)\n  SELECT\nfrontend (1 operation)\n  GET /checkout\npayments (1 operation)\n  charge\n"
	if out.String() != want {
		t.Errorf("text:\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	if err := runQuery(context.Background(), []string{"services", "--store", path, "--format", "json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"operations": [`) || !strings.Contains(out.String(), `"service": "payments"`) {
		t.Errorf("json: %s", out.String())
	}
	if err := runQuery(context.Background(), []string{"services", "--store", path, "extra"}, &out, io.Discard); err == nil {
		t.Error("services with an argument: want a usage error")
	}
}
