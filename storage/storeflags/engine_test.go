package storeflags

import (
	"flag"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/storage/dbmodel"
)

// TestEngineLoadFlags: the index settings and Jaeger's tags-as-fields
// options reach elasticsearch.Config.
func TestEngineLoadFlags(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs, "")
	if err := fs.Parse([]string{"--es-url", "http://es:9200", "--es-refresh-interval", "30s", "--es-index-codec", "best_compression",
		"--es-tags-as-fields-all", "--es-tags-as-fields-well-known=false", "--es-tags-as-fields-keys", "hostname,ip", "--es-tags-as-fields-dot-replacement", "_"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	es := c.Elasticsearch(Options{})
	if es.RefreshInterval != 30*time.Second || es.Codec != "best_compression" {
		t.Errorf("refresh %v, codec %q", es.RefreshInterval, es.Codec)
	}
	want := dbmodel.SpanOptions{AllTagsAsFields: true, TagKeysAsFields: []string{"hostname", "ip"}, DotReplacement: "_"}
	if !reflect.DeepEqual(es.SpanOptions, want) {
		t.Errorf("span options %+v, want %+v", es.SpanOptions, want)
	}
	if d := Default(); !d.Elasticsearch(Options{}).SpanOptions.WellKnownTagsAsFields {
		t.Error("well-known tags are not fields by default")
	}
	if Default().RefreshInterval != 10*time.Second {
		t.Errorf("default refresh interval %v", Default().RefreshInterval)
	}
	bad := Default()
	bad.ESURLs, bad.RefreshInterval, bad.Codec = []string{"http://es:9200"}, -time.Second, "zstd"
	if err := bad.Validate(); err == nil {
		t.Error("negative refresh interval and unknown codec accepted")
	}
}
