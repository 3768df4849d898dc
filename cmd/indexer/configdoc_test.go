package main

import (
	"flag"
	"io"
	"testing"

	"github.com/tracepipe/tracepipe/internal/config"
)

var updateDoc = flag.Bool("update", false, "rewrite this binary's flag table in docs/configuration.md")

// TestConfigurationDoc keeps docs/configuration.md's table of this
// binary's flags true (-update rewrites it).
func TestConfigurationDoc(t *testing.T) {
	o := defaultOptions()
	fs := newFlags(&o, io.Discard)
	if err := config.SyncDoc("../../docs/configuration.md", "indexer", config.Markdown(fs), *updateDoc); err != nil {
		t.Fatal(err)
	}
}
