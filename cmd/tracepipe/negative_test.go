package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/query"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// TestNegativeDurationTrace: a trace with a span of duration -5s is stored
// with a bad-duration warning, and both `query trace` and
// GET /api/v1/traces/{id} answer it (before: exit 1 and 500 "duration
// -5000000 out of range").
func TestNegativeDurationTrace(t *testing.T) {
	t.Setenv("TRACEPIPE_ES_URL", "")
	path := filepath.Join(t.TempDir(), "tracepipe.db")
	s, err := embedded.Open(context.Background(), embedded.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := model.TraceID{Low: 0x5eed}
	at := storagetest.Trace(storagetest.Spec{ID: id, Start: storagetest.Day0})
	at.Trace.Spans[2].Duration = -5 * time.Second
	at.Analysis = dag.Analyze(&at.Trace, dag.Options{})
	if err := s.WriteTraces(context.Background(), []model.AssembledTrace{at}); err != nil {
		t.Fatal(err)
	}

	out, err := runQ(t, "trace", "--store", path, id.String())
	if err != nil || !strings.Contains(out, "bad-duration") {
		t.Errorf("query trace: %v\n%s", err, out)
	}

	srv := httptest.NewServer(query.NewHandler(s, time.Now, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/traces/" + id.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "bad-duration") {
		t.Errorf("GET trace: %d %s", resp.StatusCode, body)
	}
}
