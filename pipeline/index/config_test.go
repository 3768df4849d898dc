package index

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/internal/config"
)

func TestConfigFlagsJoinErrorsWithoutChanging(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("indexer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs, "indexer-")
	env := map[string]string{"TRACEPIPE_INDEXER_BATCH_SIZE": "0", "TRACEPIPE_INDEXER_BATCH_WAIT": "1s", "TRACEPIPE_INDEXER_KAFKA_BROKERS": "k:1"}
	if err := config.Parse(fs, []string{"--indexer-batch-wait=0s", "--indexer-topic="}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprintf("%#v", cfg)
	err := cfg.Validate()
	if after := fmt.Sprintf("%#v", cfg); after != before {
		t.Errorf("Validate changed the config:\n%s\n%s", before, after)
	}
	if strings.Join(cfg.Brokers, ",") != "k:1" {
		t.Errorf("brokers %v", cfg.Brokers)
	}
	for _, want := range []string{"--topic must not be empty", "--batch-size must be between", "--batch-wait must be positive, not 0s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
