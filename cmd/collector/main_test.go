package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunRejectsBadConfig(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--otlp-grpc", "nohostport"}, nil, "--otlp-grpc"},
		{[]string{"--kafka-brokers="}, nil, "at least one broker"},
		{[]string{"--kafka-tls-cert=c.pem"}, nil, "TLS is not enabled"},
		{nil, map[string]string{"TRACEPIPE_KAFKA_SASL_MECHANISM": "PLAIN"}, "needs a username"},
		{[]string{"--spans-topic="}, nil, "--spans-topic"},
		{[]string{"--collector-queue-bytes", "10"}, nil, "--collector-queue-bytes"},
		{[]string{"--sampling-strategies", "/nonexistent/strategies.json"}, nil, "strategies"},
		{[]string{"--no-such-flag"}, nil, "not defined"},
		{[]string{"extra"}, nil, "unexpected arguments"},
		{nil, map[string]string{"TRACEPIPE_JAEGER_HTTP": "bad"}, "--jaeger-http"},
		{nil, map[string]string{"TRACEPIPE_SAMPLING_DEFAULT_PROBABILITY": "2"}, "--sampling-default-probability"},
	} {
		t.Run(c.want, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v) // restored when the subtest ends
			}
			var stderr bytes.Buffer
			err := run(context.Background(), c.args, &stderr)
			if err == nil || !strings.Contains(err.Error()+stderr.String(), c.want) {
				t.Errorf("%v %v: err = %v, want one naming %q", c.args, c.env, err, c.want)
			}
		})
	}
}
