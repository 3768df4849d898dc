package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/report"
	"github.com/tracepipe/tracepipe/wire/uijson"
)

const analyzeUsage = `usage: tracepipe analyze [--format text|json] [--max-clock-skew D] FILE...

Reads Jaeger UI JSON documents ({"data":[{"traceID":…,"spans":[…],"processes":{…}}]},
as Jaeger Query's /api/traces returns and the UI's "Download JSON" saves; "-" reads
standard input) and explains every trace in them: the critical path, each span's
self and critical-path time, and the operations that cost the most on the critical path.
`

func runAnalyze(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, analyzeUsage, "\nflags:\n"); fs.PrintDefaults() }
	format := fs.String("format", "text", "output format: text (for people) or json (the stable contract in docs/analyze-json.md)")
	maxSkew := fs.Duration("max-clock-skew", dag.DefaultMaxClockSkewAdjust, "largest clock-skew shift applied to one span")
	top := fs.Int("top", 10, "text form: operations listed per trace")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("%w: --format must be text or json, not %q", errUsage, *format)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("%w: no input files (use - for standard input)", errUsage)
	}
	if *maxSkew < 0 || *maxSkew > 24*time.Hour {
		return fmt.Errorf("%w: --max-clock-skew must be between 0 and 24h", errUsage)
	}
	opts := dag.Options{MaxClockSkewAdjust: *maxSkew}

	doc := report.Document{Traces: []report.Trace{}}
	for _, name := range fs.Args() {
		if err := ctx.Err(); err != nil {
			return err
		}
		traces, err := readTraceFile(name, stdin)
		if err != nil {
			return err
		}
		for i := range traces {
			t := &traces[i]
			a := dag.Analyze(t, opts)
			doc.Traces = append(doc.Traces, report.Build(t, &a))
		}
	}
	if *format == "json" {
		return report.WriteJSON(stdout, doc)
	}
	return report.WriteText(stdout, doc, report.TextOptions{TopOperations: *top})
}

func readTraceFile(name string, stdin io.Reader) ([]model.Trace, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	traces, err := uijson.Read(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return traces, nil
}
