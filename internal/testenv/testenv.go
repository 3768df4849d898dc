// Package testenv gives integration tests the addresses of the real services
// started by deploy/local/services.sh (Apache Kafka, an Elasticsearch-API
// engine, Prometheus and promtool) and unique names for the topics, indices
// and groups a test creates.
//
// Every accessor reads an environment variable that
// `eval "$(bash deploy/local/services.sh env)"` exports. When the variable is
// unset the test is skipped with a message saying how to start the services,
// except under CI=true, where a missing service fails the test: CI runs every
// test against the real systems, none skipped.
//
//	TRACEPIPE_KAFKA                 host:port[,host:port...] of the Kafka brokers
//	TRACEPIPE_ES                    URL of the Elasticsearch-API engine
//	TRACEPIPE_ES_ENGINE             elasticsearch or opensearch (informational)
//	TRACEPIPE_PROMETHEUS            URL of the Prometheus server
//	TRACEPIPE_PROMETHEUS_TARGETS    directory of its file_sd target files
//	TRACEPIPE_PROMTOOL              path of promtool (else looked up in PATH)
//	TRACEPIPE_KAFKA_CLUSTER         the 3-node Kafka cluster (see Cluster)
//	TRACEPIPE_SPARE_ES              the spare Elasticsearch (see SpareSearch)
//	TRACEPIPE_SERVICES_SH           deploy/local/services.sh, which kills,
//	                                starts and pauses their nodes
//
// The accessors are safe for concurrent use by parallel tests.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"testing"
)

// Environment variable names read by this package.
const (
	EnvKafka             = "TRACEPIPE_KAFKA"
	EnvElasticsearch     = "TRACEPIPE_ES"
	EnvEngine            = "TRACEPIPE_ES_ENGINE"
	EnvPrometheus        = "TRACEPIPE_PROMETHEUS"
	EnvPrometheusTargets = "TRACEPIPE_PROMETHEUS_TARGETS"
	EnvPromtool          = "TRACEPIPE_PROMTOOL"
	EnvJaegerQuery       = "TRACEPIPE_JAEGER_QUERY"
)

// HowToStart is the advice given when a service's variable is unset.
const HowToStart = "integration test: run `make services-up` and `eval \"$(bash deploy/local/services.sh env)\"`"

// CI reports whether the tests run in CI (CI=true), where a missing service is
// a failure rather than a skip.
func CI() bool { return os.Getenv("CI") == "true" }

// missing skips t, or fails it under CI=true, explaining what is missing.
func missing(t testing.TB, what string) {
	t.Helper()
	msg := what + ": " + HowToStart
	if CI() {
		t.Fatal("CI=true and " + msg)
	}
	t.Skip(msg)
}

func require(t testing.TB, env, what string) string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(env))
	if v == "" {
		missing(t, env+" is not set ("+what+")")
	}
	return v
}

// Kafka returns the comma-separated bootstrap brokers of the real Kafka
// (TRACEPIPE_KAFKA), e.g. "127.0.0.1:9092".
func Kafka(t testing.TB) string {
	t.Helper()
	return require(t, EnvKafka, "real Apache Kafka")
}

// KafkaBrokers is Kafka split into one address per broker.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, b := range strings.Split(Kafka(t), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Elasticsearch returns the URL of the real Elasticsearch-API engine
// (TRACEPIPE_ES), with an http:// scheme added when the variable has none.
func Elasticsearch(t testing.TB) string {
	t.Helper()
	u := require(t, EnvElasticsearch, "real Elasticsearch-API engine")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return strings.TrimRight(u, "/")
}

// Engine names the search engine behind Elasticsearch: "elasticsearch",
// "opensearch", or "" when unknown.
func Engine() string { return os.Getenv(EnvEngine) }

// Promtool returns the path of promtool: TRACEPIPE_PROMTOOL, else promtool
// from PATH.
func Promtool(t testing.TB) string {
	t.Helper()
	if p := strings.TrimSpace(os.Getenv(EnvPromtool)); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		missing(t, "promtool is not installed and "+EnvPromtool+" is not set")
	}
	return p
}

// PrometheusServer is the real Prometheus started by services.sh.
type PrometheusServer struct {
	// URL of its HTTP API, e.g. http://127.0.0.1:9090.
	URL string
	// TargetsDir is watched by its "tracepipe" scrape job (file_sd, scraped
	// every second); see AddTarget.
	TargetsDir string
}

// Prometheus returns the real Prometheus (TRACEPIPE_PROMETHEUS and
// TRACEPIPE_PROMETHEUS_TARGETS).
func Prometheus(t testing.TB) PrometheusServer {
	t.Helper()
	u := require(t, EnvPrometheus, "real Prometheus")
	dir := require(t, EnvPrometheusTargets, "Prometheus file_sd directory")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return PrometheusServer{URL: strings.TrimRight(u, "/"), TargetsDir: dir}
}

// Name returns a name unique to this run of t, usable as a Kafka topic,
// consumer group or Elasticsearch index name: lowercase letters, digits and
// '-', starting with prefix (itself lowercased and cleaned), then part of the
// test's name, then 8 random hex digits; at most 100 bytes.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("testenv: random name: %v", err)
	}
	base := clean(prefix)
	if base == "" {
		base = "tp"
	}
	if tn := clean(t.Name()); tn != "" {
		base += "-" + tn
	}
	const max = 100 - 1 - 8
	if len(base) > max {
		base = strings.TrimRight(base[:max], "-")
	}
	return base + "-" + hex.EncodeToString(rnd[:])
}

// clean lowercases s and replaces every run of characters other than [a-z0-9]
// with one '-', trimming '-' at both ends.
func clean(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

// JaegerQuery returns the path of an unmodified Jaeger v1 query binary
// (TRACEPIPE_JAEGER_QUERY; `bash deploy/local/jaeger-query.sh` builds it and
// prints the path, and `services.sh env` exports it once built).
func JaegerQuery(t testing.TB) string {
	t.Helper()
	return require(t, EnvJaegerQuery, "Jaeger Query binary: bash deploy/local/jaeger-query.sh")
}

// CPUProfile starts a CPU profile into path and returns what stops it;
// with path "" it does nothing. A benchmark calls it around its measured
// part only, with the path from its own environment variable (e.g.
// TRACEPIPE_BENCH_REPLAY_CPUPROFILE=/tmp/replay.prof); go test's
// -cpuprofile would also profile the set-up and checks.
func CPUProfile(tb testing.TB, path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		tb.Fatalf("cpu profile: %v (not together with -cpuprofile)", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			tb.Error(err)
		}
	}
}
