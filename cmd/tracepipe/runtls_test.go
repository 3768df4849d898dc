package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tracepipe/tracepipe/internal/testenv"
)

// TestRunAndGenOnSecuredKafka: a Kafka cluster that requires TLS (a
// private CA) and SASL SCRAM-SHA-512; `tracepipe gen` publishes to it and
// `tracepipe run --kafka-brokers` assembles, indexes and stores the traces,
// each given the connection only by the --kafka-* flags and
// TRACEPIPE_KAFKA_SASL_PASSWORD — so every connection of every stage
// (topic creation, consumer groups, producers, dead letters) uses them.
func TestRunAndGenOnSecuredKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline for several seconds")
	}
	pki := testenv.NewPKI(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(pki.ServerTLS(false)), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "tracepipe", "s3cret"), kfake.GroupMinSessionTimeout(time.Second),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	t.Setenv("TRACEPIPE_KAFKA_SASL_PASSWORD", "s3cret")
	kafkaFlags := []string{"--kafka-brokers", strings.Join(cluster.ListenAddrs(), ","), "--kafka-tls", "--kafka-tls-ca", pki.CAFile,
		"--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "tracepipe"}

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runArgs := append([]string{"run", "--data-dir", dir, "--listen", "", "--metrics-addr", "", "--partitions", "2",
		"--jaeger-compact-udp", "", "--jaeger-binary-udp", "", "--jaeger-http", "", "--otlp-grpc", "", "--otlp-http", "", "--sampling-http", "",
		"--idle-timeout", "500ms", "--max-wait", "2s", "--indexer-batch-wait", "50ms"}, kafkaFlags...)
	var runOut, runErr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, runArgs, nil, &runOut, &runErr) }()

	var genOut, genErr bytes.Buffer
	if code := run(context.Background(), append([]string{"gen", "--traces", "20", "--seed", "3", "--partitions", "2"}, kafkaFlags...), nil, &genOut, &genErr); code != 0 {
		cancel()
		<-done
		t.Fatalf("gen: exit %d: %s\nrun: %s", code, genErr.String(), runErr.String())
	}

	// The store holds the traces once the indexer wrote them; stop run
	// and read them from its embedded store.
	store := filepath.Join(dir, "tracepipe.db")
	deadline := time.Now().Add(90 * time.Second)
	for {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"query", "slowest", "--store", store, "--limit", "100", "--since", "48h", "--format", "json"}, nil, &out, &errOut)
		var res struct {
			Traces []struct {
				TraceID string `json:"traceID"`
			} `json:"traces"`
		}
		if code == 0 && json.Unmarshal(out.Bytes(), &res) == nil && len(res.Traces) == 20 {
			break
		}
		select {
		case c := <-done:
			t.Fatalf("run exited %d before storing the traces:\n%s", c, runErr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("traces not stored in time; last query: %s %s\nrun:\n%s", out.String(), errOut.String(), runErr.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	cancel()
	if c := <-done; c != 0 {
		t.Fatalf("run exit %d:\n%s", c, runErr.String())
	}
}
