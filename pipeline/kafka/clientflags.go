package kafka

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tracepipe/tracepipe/internal/config"
)

// RegisterFlags binds c to flags named prefix+"kafka-…" on fs, with c's
// current values as defaults (the convention of internal/config; each flag
// also reads TRACEPIPE_<NAME>). The names follow Jaeger's
// --kafka.consumer.tls.* and --kafka.consumer.plaintext.* flags with '-'
// for '.':
//
//	--kafka-brokers                 comma-separated host:port list
//	--kafka-tls                     TLS on (the other --kafka-tls-* need it)
//	--kafka-tls-ca                  CA file (PEM) verifying the brokers (default: system roots)
//	--kafka-tls-cert, -key          client certificate and key (PEM), for mutual TLS
//	--kafka-tls-server-name         name checked in the brokers' certificate
//	--kafka-tls-skip-host-verify    accept any certificate (tests only)
//	--kafka-sasl-mechanism          PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)
//	--kafka-sasl-username, -password
//	--kafka-sasl-password-file      file holding the password (read when the flag is set)
//
// The password is better given by TRACEPIPE_KAFKA_SASL_PASSWORD or the file
// than on the command line, where other users of the machine can see it.
func (c *ClientConfig) RegisterFlags(fs *flag.FlagSet, prefix string) {
	p := prefix + "kafka-"
	fs.Var(config.List{P: &c.Brokers}, p+"brokers", "Kafka bootstrap brokers, comma-separated host:port")
	fs.BoolVar(&c.TLS.Enabled, p+"tls", c.TLS.Enabled, "connect to the Kafka brokers over TLS")
	fs.StringVar(&c.TLS.CAFile, p+"tls-ca", c.TLS.CAFile, "CA certificate file (PEM) verifying the Kafka brokers (empty: the system roots)")
	fs.StringVar(&c.TLS.CertFile, p+"tls-cert", c.TLS.CertFile, "client certificate file (PEM) for mutual TLS to Kafka (with --"+p+"tls-key)")
	fs.StringVar(&c.TLS.KeyFile, p+"tls-key", c.TLS.KeyFile, "client private key file (PEM) for mutual TLS to Kafka")
	fs.StringVar(&c.TLS.ServerName, p+"tls-server-name", c.TLS.ServerName, "host name checked in the Kafka brokers' certificates (default: the broker address's host)")
	fs.BoolVar(&c.TLS.InsecureSkipVerify, p+"tls-skip-host-verify", c.TLS.InsecureSkipVerify, "accept any Kafka broker certificate (tests only: anyone in the path can read and change the traffic)")
	fs.StringVar(&c.SASL.Mechanism, p+"sasl-mechanism", c.SASL.Mechanism, "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	fs.StringVar(&c.SASL.Username, p+"sasl-username", c.SASL.Username, "Kafka SASL user name")
	fs.StringVar(&c.SASL.Password, p+"sasl-password", c.SASL.Password, "Kafka SASL password (prefer the environment variable or --"+p+"sasl-password-file)")
	fs.Var(passwordFile{&c.SASL.Password}, p+"sasl-password-file", "file holding the Kafka SASL password (trailing newline ignored)")
}

// passwordFile sets a password from a file when the flag is set; its
// default and shown value are empty, never the password.
type passwordFile struct{ p *string }

func (f passwordFile) String() string { return "" }

func (f passwordFile) Set(path string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	*f.p = strings.TrimRight(string(b), "\r\n")
	return nil
}
