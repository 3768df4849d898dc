package local

import (
	"fmt"
	"strings"
	"testing"
)

func TestValidateJoinsEveryProblemWithoutChanging(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.BrokerListen, cfg.Partitions = "", "nohostport", 0
	cfg.TLS.Enabled = true // without real brokers
	cfg.RekeyTo = cfg.Ingest.SpansTopic
	cfg.Collector.OTLPGRPC = "bad"
	before := fmt.Sprintf("%#v", cfg)
	err := cfg.Validate()
	if after := fmt.Sprintf("%#v", cfg); after != before {
		t.Errorf("Validate changed the config:\n%s\n%s", before, after)
	}
	for _, want := range []string{"--data-dir", "--broker-listen", "need --kafka-brokers", "--partitions", "--rekey-to", "--otlp-grpc"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	ok := DefaultConfig()
	ok.Brokers = []string{"k:9093"}
	ok.TLS.Enabled, ok.SASL.Mechanism, ok.SASL.Username = true, "PLAIN", "u"
	if err := ok.Validate(); err != nil {
		t.Errorf("TLS and SASL on real brokers: %v", err)
	}
}
