package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

type slowFlags []tracegen.Slow

func (s *slowFlags) String() string { return fmt.Sprint(*s) }
func (s *slowFlags) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 3 {
		return fmt.Errorf("want service:operation:factor, got %q", v)
	}
	f, err := strconv.ParseFloat(parts[len(parts)-1], 64)
	if err != nil || f <= 0 {
		return fmt.Errorf("factor in %q must be a positive number", v)
	}
	*s = append(*s, tracegen.Slow{Service: parts[0], Operation: strings.Join(parts[1:len(parts)-1], ":"), Factor: f})
	return nil
}

const genUsage = `usage: tracepipe gen [flags]

Generates a synthetic workload of traces (services calling each other, parallel
and async calls, errors, shard/host/client tags), shuffles spans across
traces, and writes them to a Kafka topic (key = trace ID) or to a file
(--out; JSON encodings one message per line, protobuf ones length-prefixed).
Deterministic for a seed. Flags have TRACEPIPE_* environment equivalents.
--clock-skew gives every host a seeded clock offset; --truth then also holds
the offsets and every trace's analysis on true time (docs/clock-skew.md).

`

// runGen implements 'tracepipe gen'.
func runGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, genUsage); fs.PrintDefaults() }
	// --kafka-brokers, --kafka-tls*, --kafka-sasl-*
	cc := kafka.ClientConfig{Brokers: []string{"127.0.0.1:9092"}}
	cc.RegisterFlags(fs, "")
	var (
		seed       = fs.Uint64("seed", 1, "random seed; the same seed gives the same workload")
		traces     = fs.Int("traces", 1000, "number of traces")
		rate       = fs.Float64("rate", 0, "messages per second to Kafka (0: as fast as possible)")
		encoding   = fs.String("encoding", string(wire.JaegerProto), "jaeger-proto, jaeger-json, otlp-proto or otlp-json")
		topic      = fs.String("spans-topic", "jaeger-spans", "topic to write to")
		partitions = fs.Int("partitions", 0, "create the topic with this many partitions if it does not exist (0: don't)")
		out        = fs.String("out", "", "write to this file instead of Kafka ('-' for stdout)")
		truth      = fs.String("truth", "", "write the ground truth (traces, spans, counts per operation; with --clock-skew the host offsets and every trace's true-time analysis) as JSON to this file")
		batch      = fs.Int("batch", 20, "OTLP encodings: spans per message")
		mixed      = fs.Bool("mixed-batches", false, "OTLP encodings: batch spans of different traces together, unkeyed (needs the ingester's --rekey-to)")
		interleave = fs.Int("interleave", 50, "traces whose spans are shuffled together")
		errorRate  = fs.Float64("error-rate", 0.01, "probability that a leaf call fails")
		interval   = fs.Duration("interval", 10*time.Millisecond, "start-time distance between consecutive traces")
		start      = fs.String("start", "", "start time of the first trace (RFC 3339; default: so that the last trace starts now)")
		clockSkew  = fs.Duration("clock-skew", 0, "give every host a seeded clock offset of up to ± this much (--truth then holds the true-time analyses)")
		direct     = fs.Float64("uninstrumented-clients", 0, "share of calls without a client span (the server span is a child of the caller's span)")
		asymmetric = fs.Bool("asymmetric-latency", false, "draw request and response network latencies independently")
		slow       slowFlags
	)
	fs.Var(&slow, "slow", "make an operation slower: service:operation:factor (repeatable)")
	config.Document(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := config.ApplyEnv(fs, nil); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	enc, err := wire.ParseEncoding(*encoding)
	if err != nil {
		return fmt.Errorf("%w: --encoding: %v", errUsage, err)
	}
	encode, err := tracegen.EncoderFor(enc)
	if err != nil {
		return fmt.Errorf("%w: --encoding: %v", errUsage, err)
	}
	if *clockSkew < 0 || *direct < 0 || *direct > 1 {
		return fmt.Errorf("%w: --clock-skew must not be negative, --uninstrumented-clients must be in [0, 1]", errUsage)
	}
	if *traces <= 0 || *batch <= 0 || *interleave <= 0 {
		return fmt.Errorf("%w: --traces, --batch and --interleave must be positive", errUsage)
	}
	t0 := time.Now().UTC().Add(-time.Duration(*traces) * *interval).Truncate(time.Millisecond)
	if *start != "" {
		if t0, err = time.Parse(time.RFC3339, *start); err != nil {
			return fmt.Errorf("%w: --start: %v", errUsage, err)
		}
		if age := time.Since(t0); age > rollup.DefaultMaxLateness {
			fmt.Fprintf(stderr, "tracepipe gen: note: --start is %v ago; an aggregator that has seen newer data drops traces more than its --max-lateness (default %v) behind as too late (the indexer still stores them)\n",
				age.Round(time.Minute), rollup.DefaultMaxLateness)
		}
	}
	w := tracegen.Generate(tracegen.Config{Seed: *seed, Traces: *traces, ErrorRate: *errorRate, Interleave: *interleave,
		Interval: *interval, Start: t0, Slow: slow, ClockSkew: *clockSkew, DirectCalls: *direct, AsymmetricLatency: *asymmetric})
	msgs, err := tracegen.Messages(w.Order(), enc, encode, *batch, *mixed)
	if err != nil {
		return err
	}
	if *truth != "" {
		b, err := json.MarshalIndent(w.Truth(), "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*truth, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write truth: %w", err)
		}
	}
	t := w.Truth()
	if *out != "" {
		var f io.Writer = stdout
		if *out != "-" {
			file, err := os.Create(*out)
			if err != nil {
				return err
			}
			defer file.Close()
			f = file
		}
		if err := tracegen.WriteFile(f, enc, msgs); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
		if *out != "-" {
			fmt.Fprintf(stdout, "wrote %d traces, %d spans in %d messages to %s\n", t.Traces, t.Spans, len(msgs), *out)
		}
		return nil
	}
	if err := cc.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *partitions > 0 {
		if err := createTopic(ctx, cc, *topic, *partitions); err != nil {
			return err
		}
	}
	// A broker's death must not fail the run: the producer produces a
	// failed batch again (every RetryBackoff) until it is acknowledged — a
	// partition's leader moves once the cluster fences the dead broker
	// (Kafka's default broker.session.timeout.ms is 9 s) and the metadata
	// is refreshed — and a chunk fails the run only when it is not
	// acknowledged within genSendTimeout.
	pc := kafka.DefaultProducerConfig()
	pc.Brokers, pc.Topic = cc.Brokers, *topic
	pc.BatchSize, pc.Linger = 1000, 5*time.Millisecond
	p, err := kafka.NewProducer(pc, kafka.Options{Name: "gen", Client: &cc})
	if err != nil {
		return err
	}
	began := time.Now()
	err = tracegen.Publish(ctx, producerSender{p}, msgs, *rate, 1000)
	cctx, cancel := context.WithTimeout(context.Background(), genSendTimeout)
	cerr := p.Close(cctx)
	cancel()
	if err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	fmt.Fprintf(stdout, "published %d traces, %d spans in %d messages to %s in %v\n", t.Traces, t.Spans, len(msgs), *topic, time.Since(began).Round(time.Millisecond))
	return nil
}

// createTopic creates topic with the brokers' default replication factor
// (-1: default.replication.factor), not 1: on a cluster, a topic of one
// replica loses its partitions with their broker.
func createTopic(ctx context.Context, cc kafka.ClientConfig, topic string, partitions int) error {
	a, err := kafka.NewAdmin(cc)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.CreateTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: partitions, ReplicationFactor: -1})
}

// genSendTimeout bounds the wait for one chunk's acknowledgement.
const genSendTimeout = 2 * time.Minute

// producerSender publishes tracegen messages through a Producer.
type producerSender struct{ p *kafka.Producer }

func (s producerSender) Send(ctx context.Context, msgs []tracegen.Message) error {
	ctx, cancel := context.WithTimeout(ctx, genSendTimeout)
	defer cancel()
	kms := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		kms[i] = kafka.Message{Key: m.Key, Value: m.Value}
	}
	return s.p.Send(ctx, kms)
}
