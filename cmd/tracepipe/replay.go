package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/dirlock"
	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/deadletter"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/pipeline/local"
	"github.com/tracepipe/tracepipe/pipeline/replay"
	"github.com/tracepipe/tracepipe/query"
	"github.com/tracepipe/tracepipe/storage/storeflags"
)

const replayUsage = `usage: tracepipe replay --from TIME --to TIME [flags]

Replays a time range of a Kafka topic through the stages into the store, to
backfill it: the spans topic through the ingester, the indexer and the
aggregator, or with --traces the assembled-traces topic through the indexer
and/or the aggregator (--stages), e.g. to aggregate again with new
--aggregator-dimensions or --aggregator-coarse.

--from and --to are record times (when records reached Kafka): each
partition's offsets come from Kafka's offsets-for-times, widened by --margin
so the traces at either end are read whole. Written are the traces starting
in the range and the rollups of the windows lying wholly inside it (by event
time; --event-from/--event-to when the data reached Kafka long after it
happened). A replay never replaces what the store holds: a trace is written
only when the store has no version of it or an older one, a rollup only when
the store has none. Replaying data the pipeline already processed changes
nothing.

Without --kafka-brokers it reads the embedded broker's log under --data-dir,
and without --es-url it writes the embedded store there: stop 'tracepipe run'
first. With real Kafka and Elasticsearch it runs beside the live pipeline.

Ctrl-C stops it cleanly; the same command resumes it (the work directory,
--work-dir, keeps the plan and the position; it is removed at the end).
Progress: a bar on a terminal, else a line every 10 s; a summary at the end.
`

type replayOptions struct {
	replay.Config
	store            storeflags.Config
	dataDir          string
	from, to         string
	eventFrom        string
	eventTo          string
	stages           string
	progress         string
	logLevel         string
	dlqTopic         string
	progressInterval time.Duration
}

func registerReplayFlags(fs *flag.FlagSet, o *replayOptions) {
	fs.StringVar(&o.from, "from", "", "start of the range, record time: RFC 3339 (2026-12-01T00:00Z) or a date (UTC midnight)")
	fs.StringVar(&o.to, "to", "", "end of the range (exclusive), record time")
	fs.StringVar(&o.eventFrom, "event-from", "", "start of the event-time range of the traces and windows written (default --from)")
	fs.StringVar(&o.eventTo, "event-to", "", "end of the event-time range (default --to)")
	fs.DurationVar(&o.Margin, "margin", o.Margin, "read this much before --from and after --to, so traces at either end are whole")
	fs.StringVar(&o.Topic, "topic", "", "topic to replay (default jaeger-spans, with --traces tracepipe-traces)")
	fs.BoolVar(&o.Traces, "traces", false, "the topic holds assembled traces (the ingester's output): replay it through the indexer and/or aggregator only")
	fs.StringVar(&o.stages, "stages", "index,aggregate", "stages whose output is written: index (traces), aggregate (rollups), or both")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "directory of the replay's private broker, staging store and position (resumable; removed when done)")
	fs.BoolVar(&o.KeepWorkDir, "keep-work-dir", false, "keep the work directory after the replay finished")
	fs.StringVar(&o.dataDir, "data-dir", "tracepipe-data", "'tracepipe run''s data directory: its embedded broker (without --kafka-brokers) and store (without --es-url)")
	fs.StringVar(&o.progress, "progress", "auto", "auto (a bar on a terminal, else lines), bar, lines or none")
	fs.DurationVar(&o.progressInterval, "progress-interval", 10*time.Second, "interval of the progress lines")
	fs.StringVar(&o.dlqTopic, "dlq-topic", deadletter.DefaultTopic, "topic on the source cluster for traces and documents the store rejects for good")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	o.Source.RegisterFlags(fs, "")
	fs.Lookup("kafka-brokers").Usage = "Kafka brokers holding the topic, comma-separated host:port (default: the embedded broker's log under --data-dir)"
	config.Stage(fs, "ingester-", o.Ingest.RegisterFlags, "metrics-addr", "create-topics", "rekey-to", "spans-topic", "traces-topic", "group", "dlq-topic")
	config.Stage(fs, "indexer-", o.Indexer.RegisterFlags, "topic", "group")
	config.Stage(fs, "aggregator-", o.Aggregator.RegisterFlags, "traces-topic", "group", "partials-topic", "reduce-group", "partials-partitions", "no-map", "no-reduce")
	config.Stage(fs, "", o.store.RegisterFlags, "store")
	config.Document(fs)
}

func defaultReplayOptions() replayOptions {
	return replayOptions{Config: replay.DefaultConfig(), store: storeflags.Default()}
}

// parse turns the flags into the replay's configuration and validates it,
// joining every problem.
func (o *replayOptions) parse() error {
	var errs []error
	t := func(name, s string, dst *time.Time) {
		if s == "" {
			return
		}
		ts, err := query.ParseTime(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s: %v", name, err))
			return
		}
		*dst = ts.Time()
	}
	t("from", o.from, &o.From)
	t("to", o.to, &o.To)
	t("event-from", o.eventFrom, &o.EventFrom)
	t("event-to", o.eventTo, &o.EventTo)
	if o.Topic == "" {
		o.Topic = o.Ingest.SpansTopic
		if o.Traces {
			o.Topic = o.Ingest.TracesTopic
		}
	}
	o.Index, o.Aggregate = false, false
	for _, s := range config.SplitList(o.stages) {
		switch s {
		case "index", "indexer":
			o.Index = true
		case "aggregate", "aggregator":
			o.Aggregate = true
		default:
			errs = append(errs, fmt.Errorf("--stages: unknown stage %q (want index, aggregate)", s))
		}
	}
	if !slices.Contains([]string{"auto", "bar", "lines", "none"}, o.progress) {
		errs = append(errs, fmt.Errorf("--progress %q: want auto, bar, lines or none", o.progress))
	}
	if o.progressInterval <= 0 {
		errs = append(errs, errors.New("--progress-interval must be positive"))
	}
	if len(o.Source.Brokers) > 0 {
		if err := o.Source.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	o.store.Path = filepath.Join(o.dataDir, "tracepipe.db")
	errs = append(errs, o.Config.Validate(), o.store.Validate())
	return errors.Join(errs...)
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := defaultReplayOptions()
	_, level, help, err := parseCommand("replay", replayUsage, args, stderr, func(fs *flag.FlagSet) { registerReplayFlags(fs, &o) }, &o.logLevel)
	if help || err != nil {
		return err
	}
	if err := o.parse(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := logerr.NewLogger(stderr, level)

	embeddedBroker := len(o.Source.Brokers) == 0
	embeddedStore := len(o.store.ESURLs) == 0
	if embeddedBroker || embeddedStore {
		// 'tracepipe run' holds this lock while it runs.
		if _, err := os.Stat(o.dataDir); err != nil {
			return fmt.Errorf("--data-dir: %w (without --kafka-brokers and --es-url replay reads 'tracepipe run''s data directory)", err)
		}
		lock, err := dirlock.Acquire(o.dataDir)
		if err != nil {
			return fmt.Errorf("%w (stop 'tracepipe run' first, or replay with --kafka-brokers and --es-url beside it)", err)
		}
		defer lock.Unlock()
	}
	if embeddedBroker {
		lc := local.DefaultConfig()
		lc.DataDir, lc.BrokerListen = o.dataDir, "127.0.0.1:0"
		cluster, err := local.StartBroker(lc)
		if err != nil {
			return err
		}
		defer cluster.Close()
		o.Source = kafka.ClientConfig{Brokers: cluster.ListenAddrs()}
	}
	dl, err := deadletter.New(deadletter.Config{Brokers: o.Source.Brokers, Topic: o.dlqTopic, Client: &o.Source}, deadletter.Options{Logger: log.With("component", "dead-letter")})
	if err != nil {
		return err
	}
	defer dl.Close()
	store, err := o.store.Open(ctx, storeflags.Options{DeadLetter: dl, Logger: log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()

	mode := o.progress
	if mode == "auto" {
		mode = "lines"
		if f, ok := stderr.(*os.File); ok && isTerminal(f) {
			mode = "bar"
		}
	}
	o.ProgressInterval = o.progressInterval
	if mode == "bar" {
		o.ProgressInterval = 500 * time.Millisecond
	}
	pp := &progressPrinter{w: stderr, bar: mode == "bar", none: mode == "none"}
	sum, err := replay.Run(ctx, o.Config, replay.Deps{Store: store, Logger: log, DeadLetter: dl, Progress: pp.print})
	pp.end()
	if err != nil {
		if errors.Is(err, replay.ErrInterrupted) {
			fmt.Fprintf(stderr, "replay stopped after %s: %d records copied; run the same command again to resume (work directory %s)\n",
				sum.Elapsed.Round(time.Second), sum.Records, o.WorkDir)
		}
		return err
	}
	printReplaySummary(stdout, o.Config, sum)
	return nil
}

// progressPrinter shows replay progress: a bar redrawn in place, or plain
// lines.
type progressPrinter struct {
	w         io.Writer
	bar, none bool
	last      replay.Progress
	lastAt    time.Duration
	rate      float64 // records per second, smoothed
	drawn     bool
}

func (p *progressPrinter) print(pr replay.Progress) {
	if p.none {
		return
	}
	if dt := (pr.Elapsed - p.lastAt).Seconds(); dt > 0 && pr.Elapsed > p.lastAt {
		inst := float64(pr.Processed-p.last.Processed) / dt
		if p.rate == 0 {
			p.rate = inst
		} else {
			p.rate = 0.7*p.rate + 0.3*inst
		}
	}
	p.last, p.lastAt = pr, pr.Elapsed
	line := progressLine(pr, p.rate)
	if p.bar {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
		return
	}
	fmt.Fprintf(p.w, "replay: %s\n", line)
}

func (p *progressPrinter) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// progressLine renders one progress state: the bar (on a terminal), the
// records processed of the total, the rate, the ETA and the partitions
// read whole.
func progressLine(pr replay.Progress, rate float64) string {
	frac := 1.0
	if pr.Total > 0 {
		frac = float64(pr.Processed) / float64(pr.Total)
	}
	const width = 24
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	if pr.Phase != replay.PhaseCopying {
		what := map[replay.Phase]string{
			replay.PhaseSettling: "every record read; the stages finish their last traces and windows",
			replay.PhaseRollups:  "writing the rollups of whole windows",
			replay.PhaseDone:     "done",
		}[pr.Phase]
		return fmt.Sprintf("[%s] %5.1f%% %d/%d records  partitions %d/%d read  %s  %s",
			bar, 100*frac, pr.Processed, pr.Total, pr.PartitionsDone, pr.Partitions, pr.Elapsed.Round(time.Second), what)
	}
	eta := "-"
	if rate > 0 {
		eta = (time.Duration(float64(pr.Total-pr.Processed)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %5.1f%% %d/%d records  %.0f/s  ETA %s  partitions %d/%d read  %s",
		bar, 100*frac, pr.Processed, pr.Total, rate, eta, pr.PartitionsDone, pr.Partitions, pr.Elapsed.Round(time.Second))
}

func printReplaySummary(w io.Writer, cfg replay.Config, s replay.Summary) {
	resumed := ""
	if s.Resumed {
		resumed = " (resumed)"
	}
	fmt.Fprintf(w, "replay of %s finished in %s%s\n", cfg.Topic, s.Elapsed.Round(time.Millisecond), resumed)
	fmt.Fprintf(w, "  range     %s .. %s (record time, margin %s)\n", s.From.UTC().Format(time.RFC3339), s.To.UTC().Format(time.RFC3339), cfg.Margin)
	fmt.Fprintf(w, "  events    %s .. %s (event time of the traces and windows written)\n", s.EventFrom.UTC().Format(time.RFC3339), s.EventTo.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  records   %d from %d partitions", s.Records, s.Partitions)
	if s.Missing > 0 {
		fmt.Fprintf(w, ", %d already deleted by retention", s.Missing)
	}
	fmt.Fprintln(w)
	if cfg.Index {
		fmt.Fprintf(w, "  traces    %d trace versions written (already stored ones kept), %d outside the range skipped\n", s.Traces, s.OutsideTraces)
	}
	if cfg.Aggregate {
		fmt.Fprintf(w, "  rollups   %d rollups and %d edge rollups of whole windows written (already stored ones kept)\n", s.Rollups, s.Edges)
		var res []time.Duration
		for r := range s.PartialWindows {
			res = append(res, r)
		}
		slices.Sort(res)
		for _, r := range res {
			fmt.Fprintf(w, "  left      %d %s windows only partly in the range (widen the range to whole %s windows to write them)\n", s.PartialWindows[r], shortDuration(r), shortDuration(r))
		}
	}
}

func shortDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
