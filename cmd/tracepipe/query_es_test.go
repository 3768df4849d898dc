package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// TestQueryCLIOnElasticsearch runs the query commands against the real
// engine with --es-url and --index-prefix.
func TestQueryCLIOnElasticsearch(t *testing.T) {
	url := testenv.Elasticsearch(t)
	prefix := fmt.Sprintf("tpclitest-%x", rand.Uint64())
	t.Cleanup(func() {
		for _, p := range []string{prefix + "-*", "_template/" + prefix + "-*"} {
			req, _ := http.NewRequest(http.MethodDelete, url+"/"+p, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	})
	ctx := context.Background()
	s, err := elasticsearch.New(ctx, elasticsearch.Config{URLs: []string{url}, IndexPrefix: prefix, Refresh: "wait_for"})
	if err != nil {
		t.Fatal(err)
	}
	var ats []model.AssembledTrace
	for i := 1; i <= 3; i++ {
		ats = append(ats, storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: uint64(i)}, Start: storagetest.Day0.Add(time.Duration(i) * time.Minute),
			Duration: time.Duration(i) * 10 * time.Millisecond, Shard: fmt.Sprint(i)}))
	}
	err = s.WriteTraces(ctx, ats)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	es := []string{"--es-url", url, "--index-prefix", prefix}
	cases := []struct {
		args []string
		want []string
	}{
		{append([]string{"slowest", "--limit", "2"}, es...), []string{model.TraceID{Low: 3}.String(), model.TraceID{Low: 2}.String(), "30ms"}},
		{append([]string{"search", "--tag", "shard=1"}, es...), []string{model.TraceID{Low: 1}.String()}},
		{append([]string{"trace", model.TraceID{Low: 2}.String()}, es...), []string{"bottleneck: payments charge", "critical path:"}},
		{append([]string{"bottlenecks"}, es...), []string{"payments", "50%"}},
		{append([]string{"retention", "--older-than", "0d", "--yes"}, es...), []string{prefix + "-jaeger-span-2026-03-10", prefix + "-tracepipe-traces-2026-03-10"}},
		{append([]string{"slowest"}, es...), []string{"no traces match"}},
	}
	for _, c := range cases {
		out, err := runQ(t, c.args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args[0], w, out)
			}
		}
	}
	if _, err := runQ(t, append([]string{"trace", "ffff"}, es...)...); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing trace: %v", err)
	}
}
