package collector

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/config"
)

func TestConfigFlagsAndValidate(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs, "")
	env := map[string]string{"TRACEPIPE_OTLP_GRPC": "", "TRACEPIPE_SHUTDOWN_GRACE": "3s", "TRACEPIPE_KAFKA_TLS_CA": "/ca.pem",
		"TRACEPIPE_SAMPLING_DEFAULT_PROBABILITY": "2"}
	if err := config.Parse(fs, []string{"--kafka-brokers=k:1", "--collector-queue-bytes=10", "--spans-topic="}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.OTLPGRPC != "" || cfg.ShutdownGrace != 3*time.Second || cfg.TLS.CAFile != "/ca.pem" || strings.Join(cfg.Brokers, ",") != "k:1" {
		t.Errorf("config %+v", cfg)
	}
	before := fmt.Sprintf("%#v", cfg)
	err := cfg.Validate()
	if after := fmt.Sprintf("%#v", cfg); after != before {
		t.Errorf("Validate changed the config:\n%s\n%s", before, after)
	}
	for _, want := range []string{"TLS is not enabled", "--collector-queue-bytes", "--spans-topic", "--sampling-default-probability"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
