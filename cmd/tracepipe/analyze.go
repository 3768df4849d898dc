package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/report"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/uijson"
)

const analyzeUsage = `usage: tracepipe analyze [--format text|json] [--max-clock-skew D] FILE...

Reads Jaeger UI JSON documents ({"data":[{"traceID":…,"spans":[…],"processes":{…}}]},
as Jaeger Query's /api/traces returns and the UI's "Download JSON" saves; "-" reads
standard input), or files written by 'tracepipe gen --out' (any encoding), and
explains every trace in them: the critical path, each span's
self and critical-path time, and the operations that cost the most on the critical path.
`

func runAnalyze(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, analyzeUsage, "\nflags:\n"); fs.PrintDefaults() }
	format := fs.String("format", "text", "output format: text (for people) or json (the stable contract in docs/analyze-json.md)")
	maxSkew := fs.Duration("max-clock-skew", dag.DefaultMaxClockSkewAdjust, "largest clock-skew shift applied to one span")
	top := fs.Int("top", 10, "text form: operations listed per trace")
	// Flags may come before or after the files ("analyze FILE --format json").
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("%w: --format must be text or json, not %q", errUsage, *format)
	}
	if len(files) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: no input files (use - for standard input)", errUsage)
	}
	if *maxSkew < 0 || *maxSkew > 24*time.Hour {
		return fmt.Errorf("%w: --max-clock-skew must be between 0 and 24h", errUsage)
	}
	opts := dag.Options{MaxClockSkewAdjust: *maxSkew}

	doc := report.Document{Traces: []report.Trace{}}
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		traces, err := readTraceFile(name, stdin)
		if err != nil {
			return err
		}
		if len(traces) == 0 {
			fmt.Fprintf(stderr, "tracepipe analyze: %s holds no traces\n", name)
		}
		for i := range traces {
			t := &traces[i]
			a := dag.Analyze(t, opts)
			doc.Traces = append(doc.Traces, report.Build(t, &a))
		}
	}
	if len(doc.Traces) == 0 {
		return errors.New("no traces to analyze (an empty {\"data\":[]} document?)")
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
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	first := bytes.TrimLeft(b, " \t\r\n\xef\xbb\xbf")
	if len(first) > 0 && (first[0] == '{' || first[0] == '[') {
		traces, err := uijson.Parse(b)
		if err == nil && (len(traces) > 0 || first[0] == '[' || bytes.Contains(b, []byte(`"data"`))) {
			return traces, nil
		}
		if first[0] == '{' {
			// 'tracepipe gen --out' with a JSON encoding: one message per line.
			if gt, gerr := readGenFile(b, wire.JaegerJSON); gerr == nil && len(gt) > 0 {
				return gt, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		return traces, nil
	}
	// 'tracepipe gen --out' with a protobuf encoding: length-prefixed messages.
	traces, err := readGenFile(b, wire.JaegerProto)
	if err != nil {
		return nil, fmt.Errorf("read %s: neither Jaeger UI JSON nor a 'tracepipe gen --out' file: %w", name, err)
	}
	return traces, nil
}

// readGenFile decodes the messages of a 'tracepipe gen --out' file (framed
// as enc's family: JSON lines or length-prefixed protobuf; each message's
// encoding is detected) and groups the spans by trace, in order of first
// appearance.
func readGenFile(b []byte, framing wire.Encoding) ([]model.Trace, error) {
	msgs, err := tracegen.ReadFile(bytes.NewReader(b), framing)
	if err != nil {
		return nil, err
	}
	var traces []model.Trace
	at := map[model.TraceID]int{}
	for i, m := range msgs {
		spans, err := wire.Decode(wire.Auto, m, nil)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i+1, err)
		}
		for _, sp := range spans {
			j, ok := at[sp.TraceID]
			if !ok {
				j = len(traces)
				at[sp.TraceID] = j
				traces = append(traces, model.Trace{TraceID: sp.TraceID})
			}
			traces[j].Spans = append(traces[j].Spans, sp)
		}
	}
	return traces, nil
}
