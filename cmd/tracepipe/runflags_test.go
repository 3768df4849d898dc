package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/config"
)

// TestRunHelpShowsEveryStage: `tracepipe run --help` lists the settings of
// every stage it composes, each with its environment variable, and the
// names run had before the stage prefixes.
func TestRunHelpShowsEveryStage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"run", "--help"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	help := stderr.String()
	for _, want := range []string{
		"-aggregator-dimensions", "(env TRACEPIPE_AGGREGATOR_DIMENSIONS)", "-aggregator-window",
		"-promoted-tags", "-es-tls-ca", "(env TRACEPIPE_ES_TLS_CA)", "-es-api-key", "-es-num-replicas", "-es-bulk-actions", "-es-username",
		"-kafka-tls", "-kafka-sasl-mechanism", "(env TRACEPIPE_KAFKA_SASL_PASSWORD)",
		"-indexer-batch-size", "-ingester-max-traces-in-flight", "-otlp-grpc", "-collector-queue-bytes",
		// Names from before the prefixes (README, docs, scripts use them).
		"-kafka-brokers", "-es-url", "-index-prefix", "-encoding", "-spans-topic", "-traces-topic", "-idle-timeout", "-max-wait",
		"-max-spans-per-trace", "-rekey-to", "-data-dir", "-broker-listen", "-partitions", "-sync-writes", "-listen", "-metrics-addr",
		"-jaeger-ui-url", "-log-level",
	} {
		if !strings.Contains(help, "  "+want) && !strings.Contains(help, want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
	// Flags run wires itself are not offered.
	for _, absent := range []string{"-ingester-kafka-brokers", "-aggregator-traces-topic", "-indexer-topic", "-ingester-metrics-addr", "  -store "} {
		if strings.Contains(help, absent) {
			t.Errorf("run --help offers %q", absent)
		}
	}
}

// runFlags parses args and env the way runRun does and returns the config.
func runFlags(t *testing.T, args []string, env map[string]string) (runConfig, error) {
	t.Helper()
	cfg := defaultRunConfig()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	registerRunFlags(fs, &cfg)
	if err := config.Parse(fs, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprintf("%#v", cfg)
	err := cfg.validate(fs)
	if after := fmt.Sprintf("%#v", cfg); after != before {
		t.Errorf("validate changed the config")
	}
	return cfg, err
}

func TestRunFlagsReachStages(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(c runConfig) string
		errs  []string
	}{
		{name: "old names and env reach the ingester", args: []string{"--idle-timeout=7s", "--spans-topic=s"}, env: map[string]string{"TRACEPIPE_MAX_WAIT": "1m", "TRACEPIPE_INGESTER_MAX_WAIT": "2m"},
			check: func(c runConfig) string {
				// The prefixed variable is read first, the older name last: an
				// alias's variable wins over its target's when both are set.
				if c.Ingest.IdleTimeout != 7*time.Second || c.Ingest.SpansTopic != "s" || c.Ingest.MaxWait != time.Minute {
					return fmt.Sprintf("%v %v %v", c.Ingest.IdleTimeout, c.Ingest.SpansTopic, c.Ingest.MaxWait)
				}
				return ""
			}},
		{name: "aggregator, indexer and store settings", args: []string{"--aggregator-dimensions=shard,host", "--indexer-batch-size=7", "--promoted-tags=shard",
			"--es-url=https://es:9200", "--es-tls-ca=/ca.pem", "--es-num-replicas=1"},
			env: map[string]string{"TRACEPIPE_ES_API_KEY": "k", "TRACEPIPE_AGGREGATOR_WINDOW": "10s"},
			check: func(c runConfig) string {
				if strings.Join(c.Aggregator.Stats.Dimensions, ",") != "shard,host" || c.Aggregator.Stats.Window != 10*time.Second || c.Indexer.BatchSize != 7 ||
					c.Store.APIKey != "k" || c.Store.TLS.CAFile != "/ca.pem" || c.Store.Replicas != 1 || strings.Join(c.Store.PromotedTags, ",") != "shard" {
					return fmt.Sprintf("%+v", c)
				}
				return ""
			}},
		{name: "kafka tls and sasl on real brokers", args: []string{"--kafka-brokers=k1:9093,k2:9093", "--kafka-tls", "--kafka-sasl-mechanism=SCRAM-SHA-512", "--kafka-sasl-username=u"},
			env: map[string]string{"TRACEPIPE_KAFKA_SASL_PASSWORD": "p"},
			check: func(c runConfig) string {
				if len(c.Brokers) != 2 || !c.TLS.Enabled || c.SASL.Password != "p" {
					return fmt.Sprintf("%+v", c.ClientConfig)
				}
				return ""
			}},
		{name: "kafka tls without real brokers", args: []string{"--kafka-tls"}, errs: []string{"need --kafka-brokers"}},
		{name: "every problem of every stage at once", args: []string{"--partitions=0", "--idle-timeout=0s", "--indexer-batch-size=0",
			"--aggregator-window=7m", "--es-url=ftp://x", "--otlp-grpc=nohostport"},
			errs: []string{"--partitions", "--ingester-idle-timeout must be positive", "--indexer-batch-size", "must divide an hour", "must start with http", "--otlp-grpc"}},
		{name: "stage errors name the prefixed flags", args: []string{"--aggregator-flush-interval=0s", "--aggregator-group=g", "--aggregator-reduce-group=g"},
			errs: []string{"--aggregator-flush-interval must be positive", "--aggregator-group and --aggregator-reduce-group must differ"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := runFlags(t, c.args, c.env)
			if c.check != nil {
				if msg := c.check(cfg); msg != "" {
					t.Error(msg)
				}
			}
			if len(c.errs) == 0 && err != nil {
				t.Fatal(err)
			}
			for _, w := range c.errs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
		})
	}
}
