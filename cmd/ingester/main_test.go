package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunRejectsBadConfig(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--idle-timeout=0s"}, "--idle-timeout must be positive"},
		{[]string{"--no-such-flag"}, "not defined"},
		{[]string{"--kafka-brokers="}, "at least one broker"},
		{[]string{"--kafka-sasl-mechanism=SCRAM-SHA-512", "--idle-timeout=0s"}, "needs a username"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		err := run(context.Background(), c.args, &stderr)
		if err == nil || !strings.Contains(err.Error()+stderr.String(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
	}
}
