package query

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// HumanDuration renders nanoseconds for people: 1.25s, 120ms, 3.4ms, 850µs, 0s.
func HumanDuration(ns int64) string {
	d := time.Duration(ns)
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	var s string
	switch {
	case d == 0:
		return "0s"
	case d >= time.Minute:
		s = d.Round(time.Second).String()
	case d >= time.Second:
		s = trim(strconv.FormatFloat(d.Seconds(), 'f', 2, 64)) + "s"
	case d >= 10*time.Millisecond:
		s = trim(strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64)) + "ms"
	case d >= time.Millisecond:
		s = trim(strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64)) + "ms"
	case d >= time.Microsecond:
		s = trim(strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64)) + "µs"
	default:
		s = strconv.FormatInt(int64(d), 10) + "ns"
	}
	return neg + s
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func pct(f float64) string { return trim(strconv.FormatFloat(100*f, 'f', 1, 64)) + "%" }

const timeLayout = "2006-01-02 15:04:05.000"

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// WriteTraceText renders a trace for people: header, bottleneck, warnings,
// critical path, then the span tree with self and critical-path times.
func WriteTraceText(w io.Writer, t Trace) error {
	s := t.Summary
	fmt.Fprintf(w, "trace %s  %s %s\n", s.TraceID, s.RootService, s.RootOperation)
	fmt.Fprintf(w, "  start %s UTC  duration %s  spans %d  errors %d  version %d (%s)\n",
		s.Start.UTC().Format(timeLayout), HumanDuration(s.DurationNanos), s.SpanCount, s.ErrorCount, s.Version, s.Completion)
	if s.Truncated {
		fmt.Fprintf(w, "  truncated: the trace hit the span limit\n")
	}
	if b := s.Bottleneck; b != nil {
		share := ""
		if s.DurationNanos > 0 {
			share = ", " + pct(float64(b.CriticalPathNanos)/float64(s.DurationNanos)) + " of the trace"
		}
		fmt.Fprintf(w, "  bottleneck: %s %s (%s on the critical path%s)\n", b.Service, b.Operation, HumanDuration(b.CriticalPathNanos), share)
	}
	if len(t.Warnings) > 0 {
		fmt.Fprintf(w, "\nwarnings:\n")
		for _, x := range t.Warnings {
			if x.SpanID != "" {
				fmt.Fprintf(w, "  %s: span %s: %s\n", x.Kind, x.SpanID, x.Message)
			} else {
				fmt.Fprintf(w, "  %s: %s\n", x.Kind, x.Message)
			}
		}
	}
	if len(t.CriticalPath) > 0 {
		fmt.Fprintf(w, "\ncritical path:\n")
		tw := table(w)
		fmt.Fprintf(tw, "  AT\tFOR\tSERVICE\tOPERATION\tSPAN\n")
		for _, c := range t.CriticalPath {
			fmt.Fprintf(tw, "  +%s\t%s\t%s\t%s\t%s\n", HumanDuration(c.OffsetNanos), HumanDuration(c.DurationNanos), c.Service, c.Operation, c.SpanID)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nspans:\n")
	tw := table(w)
	fmt.Fprintf(tw, "  AT\tDURATION\tSELF\tCRITICAL\tSERVICE\tOPERATION\tSPAN\n")
	for _, sp := range t.Spans {
		flag := ""
		if sp.Error {
			flag = "  ERROR"
		}
		fmt.Fprintf(tw, "  +%s\t%s\t%s\t%s\t%s%s\t%s%s\t%s\n", HumanDuration(sp.OffsetNanos), HumanDuration(sp.DurationNanos),
			HumanDuration(sp.SelfNanos), HumanDuration(sp.CriticalPathNanos), strings.Repeat("  ", sp.Depth), sp.Service, sp.Operation, flag, sp.SpanID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeLogsText(w, t.Spans)
}

// writeLogsText renders the spans' logs (span events), in time order, after
// the span tree.
func writeLogsText(w io.Writer, spans []Span) error {
	type row struct {
		sp  *Span
		log *Log
	}
	var rows []row
	for i := range spans {
		for k := range spans[i].Logs {
			rows = append(rows, row{&spans[i], &spans[i].Logs[k]})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].log.OffsetNanos < rows[j].log.OffsetNanos })
	fmt.Fprintf(w, "\nlogs (span events):\n")
	tw := table(w)
	fmt.Fprintf(tw, "  AT\tSERVICE\tOPERATION\tSPAN\tEVENT\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "  +%s\t%s\t%s\t%s\t%s\n", HumanDuration(r.log.OffsetNanos), r.sp.Service, r.sp.Operation, r.sp.SpanID, logText(r.log))
	}
	return tw.Flush()
}

// logText renders a log as its event followed by its other fields, sorted by
// key: `Waiting for lock behind 9 transactions  blockers=9`.
func logText(l *Log) string {
	keys := make([]string, 0, len(l.Fields))
	for k := range l.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys)+1)
	if l.Event != "" {
		parts = append(parts, l.Event)
	}
	for _, k := range keys {
		v := l.Fields[k]
		if strings.ContainsAny(v, " \t\n\"") || v == "" {
			v = strconv.Quote(v)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, "  ")
}

// WriteSummariesText renders trace summaries as a table.
func WriteSummariesText(w io.Writer, sums []Summary) error {
	if len(sums) == 0 {
		_, err := fmt.Fprintln(w, "no traces match")
		return err
	}
	tw := table(w)
	fmt.Fprintf(tw, "TRACE\tSTART (UTC)\tDURATION\tSPANS\tERRORS\tROOT\tBOTTLENECK\tTAGS\n")
	for _, s := range sums {
		bn := "-"
		if s.Bottleneck != nil {
			bn = fmt.Sprintf("%s %s (%s)", s.Bottleneck.Service, s.Bottleneck.Operation, HumanDuration(s.Bottleneck.CriticalPathNanos))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s %s\t%s\t%s\n", s.TraceID, s.Start.UTC().Format(timeLayout), HumanDuration(s.DurationNanos),
			s.SpanCount, s.ErrorCount, s.RootService, s.RootOperation, bn, tagText(s.PromotedTags))
	}
	return tw.Flush()
}

func tagText(m map[string][]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strings.Join(m[k], ",")
	}
	return strings.Join(parts, " ")
}

// WriteBottlenecksText renders ranked operations as a table.
func WriteBottlenecksText(w io.Writer, rows []Bottleneck) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no traces in range")
		return err
	}
	tw := table(w)
	fmt.Fprintf(tw, "RANK\tSERVICE\tOPERATION\tCRITICAL PATH\tSHARE\tTRACES\tSPANS\tERRORS\tSELF\tDURATION\n")
	for i, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", i+1, r.Service, r.Operation, HumanDuration(r.CriticalPathNanos),
			pct(r.Share), r.Traces, r.Count, r.Errors, HumanDuration(r.SelfNanos), HumanDuration(r.DurationNanos))
	}
	return tw.Flush()
}

// WriteRollupsText renders a rollup series as a table.
func WriteRollupsText(w io.Writer, rs []Rollup) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no rollups in range")
		return err
	}
	tw := table(w)
	fmt.Fprintf(tw, "WINDOW (UTC)\tRES\tDIMENSIONS\tCOUNT\tERRORS\tP50\tP90\tP99\tMAX\tCRIT P50\tCRIT P99\tCRIT SHARE\tSLOWEST\n")
	for _, r := range rs {
		dims := make([]string, 0, len(r.Dimensions))
		for k, v := range r.Dimensions {
			dims = append(dims, k+"="+v)
		}
		sort.Strings(dims)
		d := strings.Join(dims, " ")
		if d == "" {
			d = "-"
		}
		ex := "-"
		if len(r.Exemplars) > 0 {
			ex = r.Exemplars[0].TraceID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.WindowStart.UTC().Format("2006-01-02 15:04"), r.Resolution, d,
			r.Count, r.Errors, HumanDuration(r.Duration.P50Nanos), HumanDuration(r.Duration.P90Nanos), HumanDuration(r.Duration.P99Nanos),
			HumanDuration(r.Duration.MaxNanos), HumanDuration(r.CriticalPath.P50Nanos), HumanDuration(r.CriticalPath.P99Nanos),
			pct(r.CriticalPathShare), ex)
	}
	return tw.Flush()
}

// WriteEdgesText renders a service edge's series as a table, one line per
// window: calls, errors, error rate ("-" for a window with no calls), p50 and
// p99 latency and the slowest exemplar trace.
func WriteEdgesText(w io.Writer, es []Edge) error {
	if len(es) == 0 {
		_, err := fmt.Fprintln(w, "no edge rollups in range")
		return err
	}
	tw := table(w)
	fmt.Fprintf(tw, "WINDOW (UTC)\tCALLS\tERRORS\tERROR %%\tP50\tP99\tSLOWEST\n")
	for _, e := range es {
		rate := "-"
		if e.Calls > 0 {
			rate = pct(float64(e.Errors) / float64(e.Calls))
		}
		ex := "-"
		if len(e.Exemplars) > 0 {
			ex = e.Exemplars[0].TraceID
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\n", e.WindowStart.UTC().Format("2006-01-02 15:04"), e.Calls, e.Errors, rate,
			HumanDuration(e.Latency.P50Nanos), HumanDuration(e.Latency.P99Nanos), ex)
	}
	return tw.Flush()
}

// WriteServicesText lists services, each with its operations indented.
func WriteServicesText(w io.Writer, s Services) error {
	if len(s.Services) == 0 {
		_, err := fmt.Fprintln(w, "no services stored")
		return err
	}
	for _, svc := range s.Services {
		unit := "operations"
		if len(svc.Operations) == 1 {
			unit = "operation"
		}
		fmt.Fprintf(w, "%s (%d %s)\n", svc.Service, len(svc.Operations), unit)
		for _, op := range svc.Operations {
			fmt.Fprintf(w, "  %s\n", op)
		}
	}
	if s.Truncated {
		fmt.Fprintln(w, "(truncated: more services and operations are stored)")
	}
	return nil
}
