package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// TextOptions tunes the text form.
type TextOptions struct {
	// TopOperations limits the operations table (default 10).
	TopOperations int
	// MaxPathRows limits the critical-path listing (default 30); the rest is summarised.
	MaxPathRows int
}

// WriteText renders the report for people: for each trace a header, the
// bottleneck, the critical path in time order, the top operations by
// critical-path time, and the warnings.
func WriteText(w io.Writer, doc Document, opts TextOptions) error {
	if opts.TopOperations <= 0 {
		opts.TopOperations = 10
	}
	if opts.MaxPathRows <= 0 {
		opts.MaxPathRows = 30
	}
	bw := bufio.NewWriter(w)
	for i, t := range doc.Traces {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		writeTrace(bw, t, opts)
	}
	return bw.Flush()
}

func writeTrace(w io.Writer, t Trace, opts TextOptions) {
	fmt.Fprintf(w, "trace %s  %s  %s", t.TraceID, us(t.DurationUs), plural(t.SpanCount, "span"))
	if t.ErrorCount > 0 {
		fmt.Fprintf(w, "  %s", plural(t.ErrorCount, "error"))
	}
	fmt.Fprintf(w, "  started %s\n", time.UnixMicro(t.StartUs).UTC().Format("2006-01-02T15:04:05.000000Z"))
	if len(t.Operations) > 0 && t.Operations[0].CriticalPathUs > 0 {
		o := t.Operations[0]
		fmt.Fprintf(w, "bottleneck: %s %s — %s on the critical path (%s of the trace)\n",
			o.Service, o.Operation, us(o.CriticalPathUs), share(o.CriticalPathUs, t.DurationUs))
	}

	fmt.Fprintln(w, "\ncritical path:")
	if len(t.CriticalPath) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	rows := make([][]string, 0, len(t.CriticalPath)+1)
	rows = append(rows, []string{"OFFSET", "TIME", "SERVICE", "OPERATION", "SPAN"})
	for i, c := range t.CriticalPath {
		if i == opts.MaxPathRows {
			break
		}
		rows = append(rows, []string{"+" + us(c.StartUs-t.StartUs), us(c.EndUs - c.StartUs), c.Service, c.Operation, c.SpanID})
	}
	if len(t.CriticalPath) > 0 {
		table(w, rows, "  ")
	}
	if n := len(t.CriticalPath) - opts.MaxPathRows; n > 0 {
		fmt.Fprintf(w, "  … %d more sections (use --format json for all)\n", n)
	}

	fmt.Fprintln(w, "\ntop operations by critical-path time:")
	rows = [][]string{{"SERVICE", "OPERATION", "COUNT", "CRITICAL", "SHARE", "SELF", "ERRORS"}}
	for i, o := range t.Operations {
		if i == opts.TopOperations {
			break
		}
		rows = append(rows, []string{o.Service, o.Operation, fmt.Sprint(o.Count), us(o.CriticalPathUs),
			share(o.CriticalPathUs, t.DurationUs), us(o.SelfUs), fmt.Sprint(o.Errors)})
	}
	table(w, rows, "  ")

	if len(t.Warnings) > 0 {
		fmt.Fprintf(w, "\nwarnings (%d):\n", len(t.Warnings))
		for _, m := range t.Warnings {
			fmt.Fprintf(w, "  - %s\n", m)
		}
	}
}

// us renders microseconds compactly: 850µs, 12.3ms, 1.25s.
func us(v int64) string {
	d := time.Duration(v) * time.Microsecond
	switch {
	case d < 0:
		return "-" + us(-v)
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", v)
	case d < time.Second:
		return trim(fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))) + "ms"
	case d < time.Minute:
		return trim(fmt.Sprintf("%.3f", d.Seconds())) + "s"
	default:
		return d.Round(time.Millisecond).String()
	}
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func share(part, whole int64) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

// table writes left-aligned columns separated by two spaces.
func table(w io.Writer, rows [][]string, indent string) {
	widths := map[int]int{}
	for _, r := range rows {
		for i, c := range r {
			if n := len([]rune(c)); n > widths[i] {
				widths[i] = n
			}
		}
	}
	for _, r := range rows {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
