package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/query"
	"github.com/tracepipe/tracepipe/query/ui"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/storeflags"
)

const queryUsage = `usage: tracepipe query <command> [flags]

commands:
  trace <trace-id>   one trace: spans as a tree, critical path, self times, warnings
  slowest            the N slowest traces, overall or of a service/operation, in a time range
  search             traces by promoted tag values, service, operation and duration range
  bottlenecks        operations ranked by their total critical-path time and share
  rollups            the rollup time series of one operation
  edges              the rollup time series of one service edge (caller → callee): calls, errors, latency
  services           the stored services and their operations
  serve              serve the web UI at / and the same as JSON over HTTP under /api/v1/
  retention          delete stored data older than a number of days

backend (every command; each also from its environment variable):
  --es-url URL        Elasticsearch/OpenSearch URL (env TRACEPIPE_ES_URL); with --index-prefix (TRACEPIPE_INDEX_PREFIX),
                      --es-username/--es-password(-file) or --es-api-key(-file), --es-tls-ca, ...
  --store PATH        embedded store file (env TRACEPIPE_STORE; default ./tracepipe-data/tracepipe.db), used without --es-url
  --promoted-tags L   comma-separated searchable tag keys (env TRACEPIPE_PROMOTED_TAGS; default shard,host,client,http.status_code)
  --format F          text or json (env TRACEPIPE_FORMAT; default text)
  (every flag and variable: docs/configuration.md)

examples:
  tracepipe query trace 4bf92f3577b34da6a3ce929d0e0e4736
  tracepipe query slowest --service checkout --since 1h --limit 10
  tracepipe query search --tag shard=7 --service checkout --min-duration 100ms
  tracepipe query bottlenecks --since 24h
  tracepipe query rollups --service db --operation SELECT --resolution 1m --since 2h
  tracepipe query edges --caller frontend --callee db --resolution 1m --since 2h
  tracepipe query serve --listen 127.0.0.1:16689
  tracepipe query retention --older-than 7d --dry-run
  tracepipe query retention --older-than 7d --yes

Run 'tracepipe query <command> -h' for a command's flags.
`

// DefaultStorePath is where the embedded store lives unless --store says otherwise.
const DefaultStorePath = "tracepipe-data/tracepipe.db"

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, queryUsage)
		return fmt.Errorf("%w: missing command", errUsage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, queryUsage)
		return nil
	case "trace", "slowest", "search", "bottlenecks", "rollups", "edges", "services", "serve", "retention":
	default:
		fmt.Fprint(stderr, queryUsage)
		return fmt.Errorf("%w: unknown query command %q", errUsage, cmd)
	}
	c := newQueryCmd(cmd, stderr)
	// Flags may come before or after positional arguments
	// ("query trace <id> --es-url URL").
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if c.fs.NArg() == 0 {
			break
		}
		c.pos = append(c.pos, c.fs.Arg(0))
		args = c.fs.Args()[1:]
	}
	// The backend's settings come from the environment too; a query's own
	// arguments (--service, --since, ...) only from the command line.
	if err := config.ApplyEnvOf(c.fs, nil, func(name string) bool { return c.fromEnv[name] }); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if c.format != "text" && c.format != "json" {
		return fmt.Errorf("%w: --format %q: want text or json", errUsage, c.format)
	}
	err := c.run(ctx, stdout)
	if errors.Is(err, model.ErrBadQuery) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

type queryCmd struct {
	name string
	fs   *flag.FlagSet

	store  storeflags.Config
	format string

	service, operation, since, start, end, minDur, maxDur, order, resolution, kind string
	caller, callee                                                                 string
	limit                                                                          int
	tags, dims                                                                     multi
	listen, olderThan, jaegerUI                                                    string
	dryRun, yes                                                                    bool
	pos                                                                            []string        // positional arguments
	fromEnv                                                                        map[string]bool // flags also read from TRACEPIPE_<NAME>
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func newQueryCmd(name string, stderr io.Writer) *queryCmd {
	c := &queryCmd{name: name, fs: flag.NewFlagSet("tracepipe query "+name, flag.ContinueOnError)}
	fs := c.fs
	fs.SetOutput(stderr)
	c.store = storeflags.Default()
	c.store.Path = DefaultStorePath
	c.store.RegisterFlags(fs, "")
	fs.StringVar(&c.format, "format", "text", "output: text or json")
	rangeFlags := func() {
		fs.StringVar(&c.since, "since", "", "only the last duration, e.g. 1h, 7d or 1d12h (instead of --start/--end)")
		fs.StringVar(&c.start, "start", "", "range start, RFC 3339 or YYYY-MM-DD (UTC)")
		fs.StringVar(&c.end, "end", "", "range end (exclusive), RFC 3339 or YYYY-MM-DD (UTC)")
	}
	switch name {
	case "trace":
		fs.Usage = func() { fmt.Fprintf(stderr, "usage: tracepipe query trace [flags] <trace-id>\n"); fs.PrintDefaults() }
	case "slowest", "search":
		fs.StringVar(&c.service, "service", "", "only traces with a span of this service")
		fs.StringVar(&c.operation, "operation", "", "only traces with a span of this operation (of --service when given)")
		fs.Var(&c.tags, "tag", "key=value of a promoted tag; repeat for several (all must match)")
		fs.StringVar(&c.minDur, "min-duration", "", "minimum trace duration, e.g. 100ms")
		fs.StringVar(&c.maxDur, "max-duration", "", "maximum trace duration, e.g. 2s")
		fs.IntVar(&c.limit, "limit", model.DefaultLimit, "number of traces")
		if name == "search" {
			fs.StringVar(&c.order, "order", "slowest", "slowest or newest first")
		}
		rangeFlags()
	case "bottlenecks":
		fs.StringVar(&c.service, "service", "", "only traces with a span of this service")
		fs.Var(&c.tags, "tag", "key=value of a promoted tag: only traces with it; repeat for several (all must match)")
		fs.IntVar(&c.limit, "limit", 10, "number of operations")
		rangeFlags()
	case "rollups":
		fs.StringVar(&c.service, "service", "", "service (required)")
		fs.StringVar(&c.operation, "operation", "", "operation (required)")
		fs.StringVar(&c.resolution, "resolution", "1m", "window length: 1m, 1h or 1d")
		fs.StringVar(&c.kind, "kind", "", "span kind: server, client, producer, consumer, internal")
		fs.Var(&c.dims, "dim", "name=value of a dimension; repeat for several")
		fs.IntVar(&c.limit, "limit", 0, "maximum number of rollups (default all, up to 10000)")
		rangeFlags()
	case "edges":
		fs.StringVar(&c.caller, "caller", "", "calling service (required)")
		fs.StringVar(&c.callee, "callee", "", "called service (required)")
		fs.StringVar(&c.resolution, "resolution", "1m", "window length: 1m, 1h or 1d")
		rangeFlags()
	case "serve":
		// Not Jaeger's 16686 (UI) or 16687 (admin), so both can run side by side on one cluster.
		// TRACEPIPE_QUERY_LISTEN: this flag's older variable, still read.
		fs.StringVar(&c.listen, "listen", env("TRACEPIPE_QUERY_LISTEN", "127.0.0.1:16689"), "HTTP listen address (older variable: TRACEPIPE_QUERY_LISTEN)")
		fs.StringVar(&c.jaegerUI, "jaeger-ui-url", "", "base URL of a Jaeger UI over the same store, e.g. http://127.0.0.1:16686: trace pages link to it")
	case "retention":
		// TRACEPIPE_RETENTION: this flag's older variable, still read.
		fs.StringVar(&c.olderThan, "older-than", env("TRACEPIPE_RETENTION", ""), "delete data of UTC days older than this, e.g. 7d or 36h (older variable: TRACEPIPE_RETENTION)")
		fs.BoolVar(&c.dryRun, "dry-run", false, "only say what would be deleted")
		fs.BoolVar(&c.yes, "yes", false, "delete without asking (needed when standard input is not a terminal)")
	}
	c.fromEnv = map[string]bool{"format": true, "listen": true, "jaeger-ui-url": true, "older-than": true}
	storeFlags := flag.NewFlagSet("", flag.ContinueOnError)
	c.store.RegisterFlags(storeFlags, "")
	storeFlags.VisitAll(func(f *flag.Flag) { c.fromEnv[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if c.fromEnv[f.Name] {
			f.Usage += " (env " + config.EnvName(f.Name) + ")"
		}
	})
	return c
}

// values turns the flags into the query package's parameters.
func (c *queryCmd) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("service", c.service)
	set("operation", c.operation)
	set("since", c.since)
	set("start", c.start)
	set("end", c.end)
	set("minDuration", c.minDur)
	set("maxDuration", c.maxDur)
	set("order", c.order)
	set("resolution", c.resolution)
	set("kind", c.kind)
	set("caller", c.caller)
	set("callee", c.callee)
	if c.limit != 0 {
		v.Set("limit", strconv.Itoa(c.limit))
	}
	for _, t := range c.tags {
		v.Add("tag", t)
	}
	for _, d := range c.dims {
		v.Add("dim", d)
	}
	return v
}

func (c *queryCmd) open(ctx context.Context) (storage.Store, error) {
	return c.store.Open(ctx, storeflags.Options{ReadOnly: true})
}

func (c *queryCmd) run(ctx context.Context, stdout io.Writer) (err error) {
	now := time.Now()
	// Check the arguments before touching a backend.
	var (
		id  model.TraceID
		tq  model.TraceQuery
		bq  model.BottleneckQuery
		rq  model.RollupQuery
		eq  query.EdgeQuery
		age time.Duration
	)
	switch c.name {
	case "trace":
		if len(c.pos) != 1 {
			return fmt.Errorf("%w: query trace takes exactly one trace ID", errUsage)
		}
		if id, err = model.ParseTraceID(c.pos[0]); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	case "slowest", "search":
		tq, err = query.ParseTraceQuery(c.values(), now)
	case "bottlenecks":
		bq, err = query.ParseBottleneckQuery(c.values(), now)
	case "rollups":
		rq, err = query.ParseRollupQuery(c.values(), now)
	case "edges":
		eq, err = query.ParseEdgeQuery(c.values(), now)
	case "retention":
		if age, err = parseAge(c.olderThan); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if err != nil {
		return err
	}
	if c.name != "trace" && len(c.pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, c.pos[0])
	}
	st, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()

	switch c.name {
	case "trace":
		t, err := st.GetTrace(ctx, id)
		if errors.Is(err, model.ErrNotFound) {
			c.hint(ctx)
			return fmt.Errorf("trace %s not found", c.pos[0]) // as typed
		}
		if err != nil {
			return err
		}
		tr := query.NewTrace(&t)
		return c.output(stdout, tr, func(w io.Writer) error { return query.WriteTraceText(w, tr) })
	case "slowest", "search":
		res, err := st.FindTraces(ctx, tq)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			c.hint(ctx)
		}
		sums := query.NewSummaries(res)
		return c.output(stdout, map[string]any{"traces": sums}, func(w io.Writer) error { return query.WriteSummariesText(w, sums) })
	case "bottlenecks":
		res, err := st.TopBottlenecks(ctx, bq)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			c.hint(ctx)
		}
		rows := query.NewBottlenecks(res)
		return c.output(stdout, map[string]any{"bottlenecks": rows}, func(w io.Writer) error { return query.WriteBottlenecksText(w, rows) })
	case "rollups":
		res, err := st.RollupSeries(ctx, rq)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			if err := checkResolution(rq.Resolution); err != nil {
				return err
			}
			c.hint(ctx)
		}
		rs := query.NewRollups(res)
		return c.output(stdout, map[string]any{"rollups": rs}, func(w io.Writer) error { return query.WriteRollupsText(w, rs) })
	case "services":
		svcs, truncated, err := st.Services(ctx)
		if err != nil {
			return err
		}
		out := query.NewServices(svcs, truncated)
		return c.output(stdout, out, func(w io.Writer) error { return query.WriteServicesText(w, out) })
	case "edges":
		res, err := st.EdgeSeries(ctx, eq.Resolution, eq.Caller, eq.Callee, eq.Start, eq.End)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			if err := checkResolution(eq.Resolution); err != nil {
				return err
			}
			c.hint(ctx)
		}
		es := query.NewEdges(res)
		return c.output(stdout, map[string]any{"edges": es}, func(w io.Writer) error { return query.WriteEdgesText(w, es) })
	case "retention":
		cutoff := storage.RetentionCutoff(now, age)
		if c.dryRun || !c.yes {
			doomed, err := st.FindTraces(ctx, model.TraceQuery{End: model.TimestampOf(cutoff), Order: model.OrderNewest, Limit: model.MaxLimit})
			if err != nil {
				return err
			}
			n := fmt.Sprint(len(doomed))
			if len(doomed) == model.MaxLimit {
				n = "at least " + n
			}
			what := fmt.Sprintf("data of UTC days before %s (%s traces, their spans, rollups and edge rollups", cutoff.Format("2006-01-02"), n)
			if len(c.store.ESURLs) > 0 {
				what += fmt.Sprintf("; whole daily indices under prefix %q", c.store.IndexPrefix)
			}
			what += ")"
			if c.dryRun {
				return c.output(stdout, map[string]any{"dryRun": true, "cutoff": cutoff, "traces": len(doomed), "tracesAtLeast": len(doomed) == model.MaxLimit},
					func(w io.Writer) error { _, err := fmt.Fprintf(w, "would delete %s\n", what); return err })
			}
			if err := confirm(c.fs.Output(), "delete "+what+"?"); err != nil {
				return err
			}
		}
		rep, err := st.DeleteBefore(ctx, cutoff)
		if err != nil {
			return err
		}
		text := func(w io.Writer) error {
			fmt.Fprintf(w, "deleted data of days before %s\n", cutoff.Format("2006-01-02"))
			for _, ix := range rep.Indices {
				fmt.Fprintf(w, "  index %s\n", ix)
			}
			if len(c.store.ESURLs) == 0 {
				fmt.Fprintf(w, "  %d traces, %d rollups, %d edge rollups\n", rep.Traces, rep.Rollups, rep.EdgeRollups)
			}
			return nil
		}
		return c.output(stdout, map[string]any{"cutoff": cutoff, "indices": rep.Indices, "traces": rep.Traces, "rollups": rep.Rollups, "edgeRollups": rep.EdgeRollups}, text)
	case "serve":
		return c.serve(ctx, st, stdout)
	}
	return fmt.Errorf("BUG: unhandled query command %q", c.name)
}

func (c *queryCmd) output(w io.Writer, v any, text func(io.Writer) error) error {
	if c.format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return text(w)
}

// serve runs the HTTP API until ctx ends, then shuts down within 5s.
func (c *queryCmd) serve(ctx context.Context, st ui.Reader, stdout io.Writer) error {
	log := logerr.NewLogger(stdout, nil)
	// The web UI at /, the JSON API under /api/.
	api := query.NewHandler(st, time.Now, log)
	// The resolutions an aggregator writes with the default --window and
	// --coarse, as the CLI's checkResolution assumes.
	api.SetResolutions(aggregator.DefaultConfig().Stats.Normalized().Resolutions())
	web, err := ui.New(st, ui.Options{API: api, Logger: log, JaegerUIURL: c.jaegerUI, PromotedTags: c.store.PromotedTags})
	if err != nil {
		return fmt.Errorf("%w: --jaeger-ui-url: %v", errUsage, err)
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.listen, err)
	}
	limits := query.DefaultLimits()
	limits.IsCheap = ui.IsCheap
	// /healthz and /metrics (the query lanes' metrics, Go and process
	// metrics) sit outside the lanes: probes and scrapes pass a full queue.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h, err := query.Limit(web, limits, query.LimitOptions{Logger: log, Registry: reg, Refused: web.Refused})
	if err != nil {
		ln.Close()
		return err
	}
	srv := query.NewServer(query.WithOps(h, reg), limits)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("query API and web UI listening", "url", "http://"+ln.Addr().String()+"/api/v1/traces", "ui", "http://"+ln.Addr().String()+"/")
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-errc
	return err
}

// parseAge reads "7d" (days) or a duration ("36h", "1d12h"; query.ParseDuration).
func parseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("--older-than is required, e.g. --older-than 7d")
	}
	d, err := query.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--older-than %q: want a number of days such as 7d, or a duration such as 36h", s)
	}
	return d, nil
}
