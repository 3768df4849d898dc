package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// TestQueryCLISurprises: the CLI cases of issue 12 item 9.
func TestQueryCLISurprises(t *testing.T) {
	t.Setenv("TRACEPIPE_ES_URL", "")
	path := queryStore(t)
	cases := []struct {
		name  string
		args  []string
		usage bool
		fail  string
		want  string
	}{
		{"since in days", []string{"slowest", "--store", path, "--since", "1d"}, false, "", "no traces match"},
		{"since days and hours", []string{"bottlenecks", "--store", path, "--since", "1d12h"}, false, "", ""},
		{"limit 0 is the default", []string{"slowest", "--store", path, "--limit", "0"}, false, "", "40ms"},
		{"unknown resolution", []string{"rollups", "--store", path, "--service", "db", "--operation", "SELECT", "--resolution", "5m"}, true, "1m, 1h, 1d", ""},
		{"edges unknown resolution", []string{"edges", "--store", path, "--caller", "frontend", "--callee", "db", "--resolution", "5m"}, true, "1m, 1h, 1d", ""},
		{"known resolution, empty range", []string{"rollups", "--store", path, "--service", "db", "--operation", "SELECT", "--resolution", "1h"}, false, "", "no rollups in range"},
		{"not found as typed", []string{"trace", "--store", path, "00ABC"}, false, "trace 00ABC not found", ""},
		{"retention without --yes or a terminal", []string{"retention", "--store", path, "--older-than", "0d"}, true, "--yes", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runQ(t, tc.args...)
			switch {
			case tc.usage && !errors.Is(err, errUsage):
				t.Fatalf("err = %v, want a usage error\n%s", err, out)
			case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
				t.Fatalf("err = %v, want one containing %q", err, tc.fail)
			case !tc.usage && tc.fail == "" && err != nil:
				t.Fatalf("err = %v\n%s", err, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output %q lacks %q", out, tc.want)
			}
		})
	}
	// Nothing was deleted by the refused retention.
	if out, err := runQ(t, "slowest", "--store", path); err != nil || !strings.Contains(out, "40ms") {
		t.Errorf("after refused retention: %v %s", err, out)
	}
}

func TestQueryRetentionDryRunAndConfirm(t *testing.T) {
	t.Setenv("TRACEPIPE_ES_URL", "")
	path := queryStore(t)
	out, err := runQ(t, "retention", "--store", path, "--older-than", "0d", "--dry-run")
	if err != nil || !strings.Contains(out, "would delete data of UTC days before") || !strings.Contains(out, "(4 traces") {
		t.Fatalf("dry run: %v %s", err, out)
	}
	answer := func(s string) {
		confirmInput = func() (io.Reader, bool) { return strings.NewReader(s), true }
	}
	defer func(f func() (io.Reader, bool)) { confirmInput = f }(confirmInput)
	answer("n\n")
	if out, err = runQ(t, "retention", "--store", path, "--older-than", "0d"); err == nil || !strings.Contains(out, "[y/N]") {
		t.Fatalf("declined: %v %s", err, out)
	}
	if out, _ = runQ(t, "slowest", "--store", path); !strings.Contains(out, "40ms") {
		t.Fatalf("declined retention deleted data: %s", out)
	}
	answer("y\n")
	if out, err = runQ(t, "retention", "--store", path, "--older-than", "0d"); err != nil || !strings.Contains(out, "4 traces") {
		t.Fatalf("confirmed: %v %s", err, out)
	}
}

// TestQueryIndexPrefixHint (real Elasticsearch): a query under a prefix
// with no indices says so and names the prefixes that exist.
func TestQueryIndexPrefixHint(t *testing.T) {
	url := testenv.Elasticsearch(t)
	prefix := testenv.Name(t, "tphint")
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, url+"/"+prefix+"-*", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	s, err := elasticsearch.New(context.Background(), elasticsearch.Config{URLs: []string{url}, IndexPrefix: prefix, Refresh: "wait_for"})
	if err != nil {
		t.Fatal(err)
	}
	at := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 1}, Start: model.TimestampOf(time.Now())})
	if err := s.WriteTraces(context.Background(), []model.AssembledTrace{at}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	out, err := runQ(t, "slowest", "--es-url", url, "--index-prefix", prefix+"-typo")
	if err != nil || !strings.Contains(out, `hint: no tracepipe indices under --index-prefix "`+prefix+`-typo"`) || !strings.Contains(out, `"`+prefix+`"`) {
		t.Errorf("wrong prefix: %v\n%s", err, out)
	}
	if out, err = runQ(t, "slowest", "--es-url", url, "--index-prefix", prefix); err != nil || strings.Contains(out, "hint:") {
		t.Errorf("right prefix: %v\n%s", err, out)
	}
}
