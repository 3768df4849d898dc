package aggregator

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/config"
)

func TestConfigFlags(t *testing.T) {
	cases := []struct {
		name   string
		prefix string
		args   []string
		env    map[string]string
		check  func(c Config) string // "" when as expected
		errs   []string              // every one in Validate's error; none: valid
	}{
		{name: "defaults", args: []string{"--kafka-brokers=k:9092"}, check: func(c Config) string {
			if c.Stats.Window != time.Minute || fmt.Sprint(c.Stats.Coarse) != "[1h0m0s 24h0m0s]" {
				return fmt.Sprintf("window %v coarse %v", c.Stats.Window, c.Stats.Coarse)
			}
			return ""
		}},
		{name: "lists from flags and env", prefix: "aggregator-", args: []string{"--aggregator-kafka-brokers=a:1, b:2", "--aggregator-coarse=1h"},
			env: map[string]string{"TRACEPIPE_AGGREGATOR_DIMENSIONS": "shard, host", "TRACEPIPE_AGGREGATOR_COARSE": "1d"},
			check: func(c Config) string {
				if strings.Join(c.Brokers, ",") != "a:1,b:2" || strings.Join(c.Stats.Dimensions, ",") != "shard,host" || fmt.Sprint(c.Stats.Coarse) != "[1h0m0s]" {
					return fmt.Sprintf("%v %v %v", c.Brokers, c.Stats.Dimensions, c.Stats.Coarse)
				}
				return ""
			}},
		{name: "empty coarse means none", args: []string{"--kafka-brokers=k:9092", "--coarse="}, check: func(c Config) string {
			if c.Stats.Coarse == nil || len(c.Stats.Coarse) != 0 {
				return fmt.Sprint(c.Stats.Coarse)
			}
			return ""
		}},
		{name: "every problem at once", args: []string{"--kafka-brokers=", "--group=g", "--reduce-group=g", "--flush-interval=0s", "--window=7m", "--no-map", "--no-reduce"},
			errs: []string{"at least one broker", "--group and --reduce-group must differ", "--flush-interval must be positive", "must divide an hour", "--no-map and --no-reduce"}},
		{name: "tls without enabling it", args: []string{"--kafka-brokers=k:9092", "--kafka-tls-ca=/ca.pem"}, errs: []string{"TLS is not enabled"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.RegisterFlags(fs, c.prefix)
			if err := config.Parse(fs, c.args, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }); err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				if msg := c.check(cfg); msg != "" {
					t.Error(msg)
				}
			}
			before := fmt.Sprintf("%#v", cfg)
			err := cfg.Validate()
			if after := fmt.Sprintf("%#v", cfg); after != before {
				t.Errorf("Validate changed the config:\n%s\n%s", before, after)
			}
			if len(c.errs) == 0 && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			for _, w := range c.errs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
		})
	}
}

// TestValidateZeroStats: zero statistics settings mean their defaults, so
// Validate accepts them without filling them in; Normalized does that.
func TestValidateZeroStats(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Brokers = []string{"k:9092"}
	cfg.Stats.Window, cfg.Stats.Coarse = 0, nil
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Stats.Window != 0 || cfg.Stats.Coarse != nil {
		t.Fatal("Validate filled in defaults")
	}
	if n := cfg.Normalized(); n.Stats.Window != time.Minute || len(n.Stats.Coarse) != 2 {
		t.Fatalf("Normalized: %+v", n.Stats)
	}
}
