package kafka

import (
	"context"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/testenv"
)

// clientFromFlags builds a ClientConfig the way every binary does: flags
// and TRACEPIPE_* variables through internal/config.
func clientFromFlags(t *testing.T, args []string, env map[string]string) ClientConfig {
	t.Helper()
	var c ClientConfig
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs, "")
	if err := config.Parse(fs, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// roundTrip connects through c's Dialer (TLS and SASL handshakes happen
// there, so a refusal is reported as such), then creates a topic, produces
// one message through c's Transport and reads it back through the Dialer.
func roundTrip(ctx context.Context, c ClientConfig) error {
	d, err := c.Dialer()
	if err != nil {
		return err
	}
	conn, err := d.DialContext(ctx, "tcp", c.Brokers[0])
	if err != nil {
		return err
	}
	_, err = conn.Brokers()
	conn.Close()
	if err != nil {
		return err
	}
	tr, err := c.Transport()
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	cl := &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Transport: tr, Timeout: 5 * time.Second}
	if _, err := cl.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{Topic: "secured", NumPartitions: 1, ReplicationFactor: 1}}}); err != nil {
		return err
	}
	if _, err := cl.Produce(ctx, &kafkago.ProduceRequest{Topic: "secured", Partition: 0, RequiredAcks: kafkago.RequireAll,
		Records: kafkago.NewRecordReader(kafkago.Record{Value: kafkago.NewBytes([]byte("hello"))})}); err != nil {
		return err
	}
	lc, err := d.DialLeader(ctx, "tcp", c.Brokers[0], "secured", 0)
	if err != nil {
		return err
	}
	defer lc.Close()
	lc.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := lc.ReadMessage(1 << 20)
	if err != nil {
		return err
	}
	if string(m.Value) != "hello" {
		return &unexpected{string(m.Value)}
	}
	return nil
}

type unexpected struct{ v string }

func (u *unexpected) Error() string { return "read back " + u.v }

// TestClientFlagsTLSAndSASL runs the flags against kfake brokers that
// require TLS (with and without client certificates) and SASL (PLAIN and
// both SCRAMs), checking that the right settings connect and wrong ones
// are refused.
func TestClientFlagsTLSAndSASL(t *testing.T) {
	pki := testenv.NewPKI(t)
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" must connect
	}
	clusters := []struct {
		name  string
		opts  []kfake.Opt
		cases []tc
	}{
		{"tls", []kfake.Opt{kfake.TLS(pki.ServerTLS(false))}, []tc{
			{"verified by CA file", []string{"--kafka-tls", "--kafka-tls-ca=" + pki.CAFile}, nil, ""},
			{"from environment", nil, map[string]string{"TRACEPIPE_KAFKA_TLS": "true", "TRACEPIPE_KAFKA_TLS_CA": pki.CAFile}, ""},
			{"unknown CA", []string{"--kafka-tls"}, nil, "certificate"},
			{"skip verify", []string{"--kafka-tls", "--kafka-tls-skip-host-verify"}, nil, ""},
			{"wrong server name", []string{"--kafka-tls", "--kafka-tls-ca=" + pki.CAFile, "--kafka-tls-server-name=kafka.example"}, nil, "certificate"},
		}},
		{"mtls", []kfake.Opt{kfake.TLS(pki.ServerTLS(true))}, []tc{
			{"client certificate", []string{"--kafka-tls", "--kafka-tls-ca=" + pki.CAFile, "--kafka-tls-cert=" + pki.CertFile, "--kafka-tls-key=" + pki.KeyFile}, nil, ""},
			{"no client certificate", []string{"--kafka-tls", "--kafka-tls-ca=" + pki.CAFile}, nil, "certificate"},
		}},
		{"sasl", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("PLAIN", "plain", "s3cret"),
			kfake.Superuser("SCRAM-SHA-256", "scram256", "s3cret"), kfake.Superuser("SCRAM-SHA-512", "scram512", "s3cret")}, []tc{
			{"plain", []string{"--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=plain", "--kafka-sasl-password=s3cret"}, nil, ""},
			{"plain password from env", []string{"--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=plain"}, map[string]string{"TRACEPIPE_KAFKA_SASL_PASSWORD": "s3cret"}, ""},
			{"plain wrong password", []string{"--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=plain", "--kafka-sasl-password=nope"}, nil, "SASL"},
			{"scram-sha-256 password file", []string{"--kafka-sasl-mechanism=SCRAM-SHA-256", "--kafka-sasl-username=scram256", "--kafka-sasl-password-file=" + pwFile}, nil, ""},
			{"scram-sha-512", []string{"--kafka-sasl-mechanism=SCRAM-SHA-512", "--kafka-sasl-username=scram512", "--kafka-sasl-password=s3cret"}, nil, ""},
			{"scram-sha-512 wrong password", []string{"--kafka-sasl-mechanism=SCRAM-SHA-512", "--kafka-sasl-username=scram512", "--kafka-sasl-password=nope"}, nil, "SASL"},
			{"no SASL", nil, nil, "SASL"},
		}},
		{"sasl over tls", []kfake.Opt{kfake.TLS(pki.ServerTLS(false)),
			kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "scram512", "s3cret")}, []tc{
			{"scram-sha-512", []string{"--kafka-tls", "--kafka-tls-ca=" + pki.CAFile, "--kafka-sasl-mechanism=SCRAM-SHA-512", "--kafka-sasl-username=scram512", "--kafka-sasl-password=s3cret"}, nil, ""},
		}},
	}
	for _, cl := range clusters {
		t.Run(cl.name, func(t *testing.T) {
			opts := append([]kfake.Opt{kfake.NumBrokers(1), kfake.ListenFn(func(network, _ string) (net.Listener, error) {
				return net.Listen(network, "127.0.0.1:0")
			})}, cl.opts...)
			c, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, k := range cl.cases {
				t.Run(k.name, func(t *testing.T) {
					cfg := clientFromFlags(t, append([]string{"--kafka-brokers=" + strings.Join(c.ListenAddrs(), ",")}, k.args...), k.env)
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					err := roundTrip(ctx, cfg)
					switch {
					case k.wantErr == "" && err != nil:
						t.Fatalf("round trip: %v", err)
					case k.wantErr != "" && err == nil:
						t.Fatalf("connected, want an error mentioning %q", k.wantErr)
					case k.wantErr != "" && !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(k.wantErr)) && !isConnErr(err):
						t.Fatalf("error %v, want it to mention %q", err, k.wantErr)
					}
				})
			}
		})
	}
}

// isConnErr accepts a refused handshake seen as a closed connection (a
// broker may hang up without telling why).
func isConnErr(err error) bool {
	s := err.Error()
	return strings.Contains(s, "EOF") || strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

func TestClientFlagsValidate(t *testing.T) {
	cases := []struct {
		args []string
		want []string // every one in the joined error
	}{
		{[]string{"--kafka-brokers=a:1", "--kafka-tls-ca=x"}, []string{"TLS is not enabled"}},
		{[]string{"--kafka-brokers=nohost", "--kafka-tls", "--kafka-tls-cert=c", "--kafka-sasl-mechanism=GSSAPI"},
			[]string{"not host:port", "both a certificate and a key", "GSSAPI"}},
		{[]string{"--kafka-brokers=a:1", "--kafka-sasl-mechanism=PLAIN"}, []string{"needs a username"}},
	}
	for _, c := range cases {
		var cfg ClientConfig
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs, "")
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		before := cfg
		before.Brokers = append([]string(nil), cfg.Brokers...)
		err := cfg.Validate()
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %v lacks %q", c.args, err, w)
			}
		}
		if strings.Join(before.Brokers, ",") != strings.Join(cfg.Brokers, ",") || before.TLS != cfg.TLS || before.SASL != cfg.SASL {
			t.Errorf("%v: Validate changed the config", c.args)
		}
	}
	var cfg ClientConfig
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs, "")
	if err := fs.Parse([]string{"--kafka-sasl-password-file=/nonexistent/pw"}); err == nil || !strings.Contains(err.Error(), "password file") {
		t.Errorf("missing password file: %v", err)
	}
}
