package logerr

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/olivere/elastic/v7"
	pkgerrors "github.com/pkg/errors"
)

func TestOneLine(t *testing.T) {
	cases := []struct {
		desc string
		err  error
		want string
	}{
		{"the Elasticsearch client's error with a stack", fmt.Errorf("write rollups: %w", pkgerrors.Wrap(elastic.ErrNoClient, "no available connection")),
			"write rollups: no available connection: no Elasticsearch node available"},
		{"unwrapped, as the writer's retry log had it", pkgerrors.Wrap(elastic.ErrNoClient, "no available connection"),
			"no available connection: no Elasticsearch node available"},
		{"joined", errors.Join(errors.New("a"), errors.New("b")), "a; b"},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			var b bytes.Buffer
			slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: ReplaceAttr})).Warn("store failed", "err", c.err, "n", 3)
			out := b.String()
			if strings.Count(out, "\n") != 1 {
				t.Fatalf("not one line: %q", out)
			}
			if !strings.Contains(out, fmt.Sprintf("err=%q", c.want)) || !strings.Contains(out, "n=3") {
				t.Errorf("got %q, want err=%q", out, c.want)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelWarn)
	log.Info("not written")
	log.Warn("write failed", "err", pkgerrors.Wrap(errors.Join(errors.New("a"), errors.New("b")), "bulk"))
	got := buf.String()
	if strings.Count(got, "\n") != 1 || !strings.Contains(got, `err="bulk: a; b"`) || strings.Contains(got, "not written") {
		t.Fatalf("log output %q: want one warn line with the error on it", got)
	}
}
