// Command tracepipe is the user-facing CLI: analyze trace files, generate
// workloads, query stored traces and statistics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tracepipe/tracepipe/internal/config"
)

// errUsage marks an error caused by how the command was called (exit 2).
var errUsage = errors.New("usage")

const usage = `usage: tracepipe <command> [flags] [args]

commands:
  run       run the whole pipeline in one process (embedded broker and store, query API, metrics)
  analyze   explain Jaeger UI JSON trace files: critical path, self time, bottlenecks
  gen       generate a synthetic workload of traces to Kafka or a file
  query     query stored traces, slowest requests, bottlenecks and rollups
  replay    replay a time range of a Kafka topic through the stages into the store (backfill)
  demo      run the pipeline with an instrumented demo system and a bounded load (examples/feed)
  version   print the version of this build

Run 'tracepipe <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runRun(ctx, args[1:], stderr)
	case "analyze":
		err = runAnalyze(ctx, args[1:], stdin, stdout, stderr)
	case "gen":
		err = runGen(ctx, args[1:], stdout, stderr)
	case "query":
		err = runQuery(ctx, args[1:], stdout, stderr)
	case "replay":
		err = runReplay(ctx, args[1:], stdout, stderr)
	case "demo":
		err = runDemo(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version())
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "tracepipe: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "tracepipe %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// parseCommand parses a long-running command's flags (registered on fs by
// register) and its --log-level, refusing positional arguments: help
// is true when -h was asked (the usage is printed, nothing else to do).
// Errors wrap errUsage.
func parseCommand(name, usage string, args []string, stderr io.Writer, register func(fs *flag.FlagSet), logLevel *string) (fs *flag.FlagSet, level slog.Level, help bool, err error) {
	fs = flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage, "\nflags:\n")
		fs.PrintDefaults()
	}
	register(fs)
	if err := config.Parse(fs, args, nil); err != nil {
		if err == flag.ErrHelp {
			return fs, level, true, nil
		}
		return fs, level, false, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fs, level, false, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fs, level, false, fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	return fs, level, false, nil
}
