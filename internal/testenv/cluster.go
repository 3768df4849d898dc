package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Environment variables of the failure-test services (`services.sh up
// kafka-cluster spare-search`).
const (
	// EnvKafkaCluster is host:port,host:port,host:port of the 3-node cluster;
	// node N (broker-N) is the N-th address.
	EnvKafkaCluster = "TRACEPIPE_KAFKA_CLUSTER"
	// EnvSpareSearch is the URL of the spare Elasticsearch, which a test may
	// pause or stop (no other test uses it).
	EnvSpareSearch = "TRACEPIPE_SPARE_ES"
	// EnvServicesScript is the path of deploy/local/services.sh, through
	// which tests kill, start, pause and resume nodes.
	EnvServicesScript = "TRACEPIPE_SERVICES_SH"
)

// KafkaCluster is the real 3-node Kafka cluster (KRaft, every node broker
// and controller, replication factor 3, min.insync.replicas 2).
type KafkaCluster struct {
	// Brokers are the nodes' addresses: Brokers[i] is broker-(i+1).
	Brokers []string
	script  string
}

// Cluster returns the 3-node cluster (TRACEPIPE_KAFKA_CLUSTER and
// TRACEPIPE_SERVICES_SH), skipping the test (failing it under CI=true) when
// it does not run.
func Cluster(t testing.TB) *KafkaCluster {
	t.Helper()
	c := &KafkaCluster{script: require(t, EnvServicesScript, "deploy/local/services.sh")}
	for _, b := range strings.Split(require(t, EnvKafkaCluster, "3-node Kafka: services.sh up kafka-cluster"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	return c
}

// Node is the node number (1-based, as in broker-N) of a broker address,
// or 0 if addr is none of the cluster's.
func (c *KafkaCluster) Node(addr string) int {
	for i, b := range c.Brokers {
		if b == addr {
			return i + 1
		}
	}
	return 0
}

// Kill sends SIGKILL to node n and waits until it is gone.
func (c *KafkaCluster) Kill(t testing.TB, n int) {
	t.Helper()
	node(t, c.script, "kill", fmt.Sprintf("broker-%d", n))
}

// Start restarts node n with its data and waits until it accepts connections.
func (c *KafkaCluster) Start(t testing.TB, n int) {
	t.Helper()
	node(t, c.script, "start", fmt.Sprintf("broker-%d", n))
}

// Restore starts the nodes that do not run (`services.sh up
// kafka-cluster`): for a test's cleanup after it killed one.
func (c *KafkaCluster) Restore(t testing.TB) { t.Helper(); script(t, c.script, "up", "kafka-cluster") }

// SpareEngine is the spare Elasticsearch of `services.sh up spare-search`.
type SpareEngine struct {
	URL    string
	script string
}

// SpareSearch returns the spare engine (TRACEPIPE_SPARE_ES and
// TRACEPIPE_SERVICES_SH), skipping the test (failing it under CI=true) when
// it does not run.
func SpareSearch(t testing.TB) *SpareEngine {
	t.Helper()
	s := &SpareEngine{script: require(t, EnvServicesScript, "deploy/local/services.sh")}
	s.URL = strings.TrimRight(require(t, EnvSpareSearch, "spare Elasticsearch: services.sh up spare-search"), "/")
	return s
}

// Pause stops the engine's process with SIGSTOP: connections stay open and
// nothing answers.
func (s *SpareEngine) Pause(t testing.TB) { t.Helper(); node(t, s.script, "pause", "spare-search") }

// Resume continues a paused engine (SIGCONT).
func (s *SpareEngine) Resume(t testing.TB) { t.Helper(); node(t, s.script, "resume", "spare-search") }

// Kill kills the engine with SIGKILL (also when paused): connections are
// refused until Start.
func (s *SpareEngine) Kill(t testing.TB) { t.Helper(); node(t, s.script, "kill", "spare-search") }

// Stop stops the engine (SIGTERM, then SIGKILL): connections are refused.
func (s *SpareEngine) Stop(t testing.TB) { t.Helper(); node(t, s.script, "stop", "spare-search") }

// Start starts a stopped engine with its data and waits until it is healthy.
func (s *SpareEngine) Start(t testing.TB) { t.Helper(); node(t, s.script, "start", "spare-search") }

// Restore resumes the engine if it is paused and starts it if it does not
// run: for a test's cleanup.
func (s *SpareEngine) Restore(t testing.TB) {
	t.Helper()
	exec.Command("bash", s.script, "node", "resume", "spare-search").Run() // fails when it does not run
	script(t, s.script, "up", "spare-search")
}

// node runs `services.sh node ACTION UNIT`.
func node(t testing.TB, path, action, unit string) { t.Helper(); script(t, path, "node", action, unit) }

// script runs services.sh with args, failing the test if it fails.
func script(t testing.TB, path string, args ...string) {
	t.Helper()
	t0 := time.Now()
	cmd := exec.Command("bash", append([]string{path}, args...)...)
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("services.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("services.sh %s (%v)", strings.Join(args, " "), time.Since(t0).Round(10*time.Millisecond))
}
