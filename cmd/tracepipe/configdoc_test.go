package main

import (
	"flag"
	"io"
	"testing"

	"github.com/tracepipe/tracepipe/internal/config"
)

// TestConfigurationDoc keeps docs/configuration.md's tables of `tracepipe
// run`'s and `tracepipe replay`'s flags and of `tracepipe query`'s backend flags true (-update
// rewrites them).
func TestConfigurationDoc(t *testing.T) {
	cfg := defaultRunConfig()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	registerRunFlags(fs, &cfg)
	if err := config.SyncDoc("../../docs/configuration.md", "tracepipe-run", config.Markdown(fs), *updateGolden); err != nil {
		t.Error(err)
	}
	o := defaultReplayOptions()
	rfs := flag.NewFlagSet("replay", flag.ContinueOnError)
	registerReplayFlags(rfs, &o)
	if err := config.SyncDoc("../../docs/configuration.md", "tracepipe-replay", config.Markdown(rfs), *updateGolden); err != nil {
		t.Error(err)
	}
	// `query services` has the backend flags and nothing else.
	q := newQueryCmd("services", io.Discard)
	if err := config.SyncDoc("../../docs/configuration.md", "tracepipe-query", config.Markdown(q.fs), *updateGolden); err != nil {
		t.Error(err)
	}
}
