package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"partitions", []string{"run", "--partitions", "0"}, nil, "--partitions"},
		{"encoding", []string{"run", "--encoding", "xml"}, nil, "flag -encoding"},
		{"arguments", []string{"run", "extra"}, nil, "unexpected arguments"},
		{"log level", []string{"run", "--log-level", "loud"}, nil, "--log-level"},
		{"env", []string{"run"}, map[string]string{"TRACEPIPE_PARTITIONS": "lots"}, "TRACEPIPE_PARTITIONS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, nil, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 naming %s", code, stderr.String(), tc.want)
			}
		})
	}
}
