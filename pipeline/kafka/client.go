package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// ClientConfig is how every stage reaches its Kafka cluster: the bootstrap
// brokers and, optionally, TLS and SASL. It is the one place a Kafka
// connection is configured; the dialer, transport and clients of this package
// are built from it.
type ClientConfig struct {
	Brokers []string
	TLS     TLSConfig
	SASL    SASLConfig
}

// TLSConfig enables TLS to the brokers. With Enabled and no CAFile the
// system roots verify the brokers' certificates. CertFile and KeyFile (both or
// neither) present a client certificate (mutual TLS).
type TLSConfig struct {
	Enabled            bool
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string // overrides the name checked in the broker's certificate
	InsecureSkipVerify bool   // for tests only: accepts any certificate
}

// SASL mechanisms, as Kafka names them.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASLConfig authenticates to the brokers. An empty Mechanism means no SASL.
type SASLConfig struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Username  string
	Password  string
}

// Validate reports every problem of c at once; it does not change c and reads
// no file (Dialer and Transport do).
func (c ClientConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: at least one broker is required"))
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" || !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("kafka: broker %q is not host:port", b))
		}
	}
	t := c.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		errs = append(errs, errors.New("kafka: TLS options are set but TLS is not enabled"))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, errors.New("kafka: a TLS client certificate needs both a certificate and a key file"))
	}
	switch strings.ToUpper(c.SASL.Mechanism) {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" {
			errs = append(errs, errors.New("kafka: SASL username/password are set but no SASL mechanism"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASL.Username == "" {
			errs = append(errs, fmt.Errorf("kafka: SASL %s needs a username", c.SASL.Mechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("kafka: SASL mechanism %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.SASL.Mechanism))
	}
	return errors.Join(errs...)
}

// TLSClientConfig builds the *tls.Config of c (nil when TLS is off), reading
// the CA and client certificate files.
func (c ClientConfig) TLSClientConfig() (*tls.Config, error) {
	t := c.TLS
	if !t.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, documented as test-only
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka TLS CA file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// SASLMechanism builds c's SASL mechanism (nil when SASL is off).
func (c ClientConfig) SASLMechanism() (sasl.Mechanism, error) {
	s := c.SASL
	switch strings.ToUpper(s.Mechanism) {
	case "":
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
	return nil, fmt.Errorf("kafka: SASL mechanism %q is not supported", s.Mechanism)
}

// Dialer builds the dialer for single connections (partition reads,
// consumer-group membership).
func (c ClientConfig) Dialer() (*kafkago.Dialer, error) {
	tlsCfg, err := c.TLSClientConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.SASLMechanism()
	if err != nil {
		return nil, err
	}
	return &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: tlsCfg, SASLMechanism: mech}, nil
}

// Transport builds a transport for kafka-go's Writer and Client (produce,
// admin, offsets). The caller closes its idle connections when done.
func (c ClientConfig) Transport() (*kafkago.Transport, error) {
	tlsCfg, err := c.TLSClientConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.SASLMechanism()
	if err != nil {
		return nil, err
	}
	return &kafkago.Transport{DialTimeout: 10 * time.Second, TLS: tlsCfg, SASL: mech}, nil
}
