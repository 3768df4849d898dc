package main

import (
	"flag"
	"io"
	"testing"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/pipeline/ingest"
)

var updateDoc = flag.Bool("update", false, "rewrite this binary's flag table in docs/configuration.md")

// TestConfigurationDoc keeps docs/configuration.md's table of this
// binary's flags true (-update rewrites it).
func TestConfigurationDoc(t *testing.T) {
	cfg := ingest.DefaultConfig()
	fs := newFlags(&cfg, io.Discard)
	if err := config.SyncDoc("../../docs/configuration.md", "ingester", config.Markdown(fs), *updateDoc); err != nil {
		t.Fatal(err)
	}
}
