package query

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Query parameters, shared by the HTTP API (URL query) and the CLI (flags
// of the same names, dashed: --min-duration):
//
//	service, operation      exact names
//	tag                     key=value (or key:value), repeatable, promoted tags only
//	minDuration/maxDuration durations (ParseDuration): 150ms, 2s
//	since                   a duration (ParseDuration: 15m, 24h, 7d): the range is [now-since, now)
//	start, end              RFC 3339 times (2026-03-10T14:00:00Z) or dates (2026-03-10)
//	limit                   1..10000; 0 or absent: the default
//	order                   slowest (default) or newest
//	resolution              1m, 1h, 1d (rollups)
//	kind                    server, client, ... (rollups)
//	dim                     name=value, repeatable (rollups)
//	caller, callee          service names of a service edge (edges)
//
// Every error wraps model.ErrBadQuery.

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{model.ErrBadQuery}, args...)...)
}

// ParseDuration reads a Go duration ("150ms", "36h") that may start with a
// whole number of days ("7d", "1d12h"). It is the one duration syntax of
// the CLI and the API.
func ParseDuration(s string) (time.Duration, error) {
	days, rest := "", s
	if i := strings.IndexByte(s, 'd'); i > 0 {
		days, rest = s[:i], s[i+1:]
	}
	var d time.Duration
	if days != "" {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > 365*200 { // 200 years: far inside time.Duration
			return 0, fmt.Errorf("duration %q: want e.g. 150ms, 24h or 7d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
		if rest == "" {
			return d, nil
		}
	}
	r, err := time.ParseDuration(rest)
	if err != nil || (days != "" && (r < 0 || r > math.MaxInt64-d)) {
		return 0, fmt.Errorf("duration %q: want e.g. 150ms, 24h or 7d", s)
	}
	return d + r, nil
}

// ParseTag splits "key=value" or "key:value" at the first '=' or ':'.
func ParseTag(s string) (key, value string, err error) {
	i := strings.IndexAny(s, "=:")
	if i <= 0 {
		return "", "", badf("tag %q: want key=value", s)
	}
	return s[:i], s[i+1:], nil
}

// The times a model.Timestamp (int64 nanoseconds since the epoch) can hold:
// 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z. Times
// outside are refused rather than wrapped around.
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// timestampOf converts t, refusing a time outside [minTime, maxTime]; what
// names the input in the message.
func timestampOf(what string, t time.Time) (model.Timestamp, error) {
	if t.Before(minTime) || t.After(maxTime) {
		return 0, badf("%s is outside the range of timestamps (%s to %s)", what, minTime.Format(time.DateOnly), maxTime.Format(time.DateOnly))
	}
	return model.TimestampOf(t), nil
}

// ParseTime reads an RFC 3339 time (seconds may be left out:
// 2026-12-01T06:00Z) or a YYYY-MM-DD date (UTC midnight)
// between 1677-09-21 and 2262-04-11.
func ParseTime(s string) (model.Timestamp, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return timestampOf(fmt.Sprintf("time %q", s), t)
	}
	if t, err := time.Parse("2006-01-02T15:04Z07:00", s); err == nil { // RFC 3339 without seconds
		return timestampOf(fmt.Sprintf("time %q", s), t)
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return timestampOf(fmt.Sprintf("time %q", s), t)
	}
	return 0, badf("time %q: want RFC 3339 (2026-03-10T14:00:00Z) or a date (2026-03-10)", s)
}

func parseRange(v url.Values, now time.Time) (start, end model.Timestamp, err error) {
	since, s, e := v.Get("since"), v.Get("start"), v.Get("end")
	if since != "" {
		if s != "" || e != "" {
			return 0, 0, badf("since cannot be combined with start or end")
		}
		d, err := ParseDuration(since)
		if err != nil || d <= 0 {
			return 0, 0, badf("since %q: want a positive duration such as 15m, 24h or 7d", since)
		}
		start, err := timestampOf(fmt.Sprintf("since %q", since), now.Add(-d))
		return start, 0, err
	}
	if s != "" {
		if start, err = ParseTime(s); err != nil {
			return 0, 0, err
		}
	}
	if e != "" {
		if end, err = ParseTime(e); err != nil {
			return 0, 0, err
		}
	}
	return start, end, nil
}

func parseDuration(v url.Values, key string) (time.Duration, error) {
	s := v.Get(key)
	if s == "" {
		return 0, nil
	}
	d, err := ParseDuration(s)
	if err != nil || d < 0 {
		return 0, badf("%s %q: want a duration such as 150ms or 2s", key, s)
	}
	return d, nil
}

func parseLimit(v url.Values) (int, error) {
	s := v.Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > model.MaxLimit {
		return 0, badf("limit %q: want a number from 1 to %d (0: the default)", s, model.MaxLimit)
	}
	return n, nil
}

func parsePairs(v url.Values, key string) (map[string]string, error) {
	vs := v[key]
	if len(vs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(vs))
	for _, s := range vs {
		k, val, err := ParseTag(s)
		if err != nil {
			return nil, err
		}
		m[k] = val
	}
	return m, nil
}

var traceParams = []string{"service", "operation", "tag", "minDuration", "maxDuration", "since", "start", "end", "limit", "order"}

func checkKnown(v url.Values, known []string) error {
	for k := range v {
		ok := false
		for _, n := range known {
			ok = ok || n == k
		}
		if !ok {
			return badf("unknown parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
	}
	return nil
}

// ParseTraceQuery reads a trace search.
func ParseTraceQuery(v url.Values, now time.Time) (model.TraceQuery, error) {
	var q model.TraceQuery
	var err error
	if err = checkKnown(v, traceParams); err != nil {
		return q, err
	}
	q.Service, q.Operation = v.Get("service"), v.Get("operation")
	if q.Tags, err = parsePairs(v, "tag"); err != nil {
		return q, err
	}
	if q.MinDuration, err = parseDuration(v, "minDuration"); err != nil {
		return q, err
	}
	if q.MaxDuration, err = parseDuration(v, "maxDuration"); err != nil {
		return q, err
	}
	if q.Start, q.End, err = parseRange(v, now); err != nil {
		return q, err
	}
	if q.Limit, err = parseLimit(v); err != nil {
		return q, err
	}
	if q.Order, err = model.ParseTraceOrder(v.Get("order")); err != nil {
		return q, err
	}
	return q.Normalize()
}

// ParseBottleneckQuery reads a bottleneck ranking request.
func ParseBottleneckQuery(v url.Values, now time.Time) (model.BottleneckQuery, error) {
	var q model.BottleneckQuery
	var err error
	if err = checkKnown(v, []string{"service", "tag", "since", "start", "end", "limit"}); err != nil {
		return q, err
	}
	q.Service = v.Get("service")
	if q.Tags, err = parsePairs(v, "tag"); err != nil {
		return q, err
	}
	if q.Start, q.End, err = parseRange(v, now); err != nil {
		return q, err
	}
	if q.Limit, err = parseLimit(v); err != nil {
		return q, err
	}
	return q.Normalize()
}

// ParseRollupQuery reads a rollup series request (resolution defaults to 1m).
func ParseRollupQuery(v url.Values, now time.Time) (model.RollupQuery, error) {
	var q model.RollupQuery
	var err error
	if err = checkKnown(v, []string{"service", "operation", "kind", "resolution", "dim", "since", "start", "end", "limit"}); err != nil {
		return q, err
	}
	q.Service, q.Operation = v.Get("service"), v.Get("operation")
	q.Resolution = time.Minute
	if s := v.Get("resolution"); s != "" {
		if q.Resolution, err = model.ParseResolution(s); err != nil {
			return q, fmt.Errorf("%w: %v", model.ErrBadQuery, err)
		}
	}
	if s := v.Get("kind"); s != "" {
		if q.Kind = model.ParseSpanKind(s); q.Kind == model.KindUnspecified {
			return q, badf("kind %q: want server, client, producer, consumer or internal", s)
		}
	}
	if q.Dimensions, err = parsePairs(v, "dim"); err != nil {
		return q, err
	}
	if q.Start, q.End, err = parseRange(v, now); err != nil {
		return q, err
	}
	if q.Limit, err = parseLimit(v); err != nil {
		return q, err
	}
	return q.Normalize()
}

// EdgeQuery selects the edge rollups of one caller → callee pair at one
// resolution whose window started in [Start, End) (zero: unbounded): the
// arguments of storage.EdgeReader's EdgeSeries.
type EdgeQuery struct {
	Caller     string
	Callee     string
	Resolution time.Duration
	Start      model.Timestamp
	End        model.Timestamp
}

// ParseEdgeQuery reads a service-edge series request: caller and callee are
// required, resolution defaults to 1m. There is no limit: the stores return
// every window in the range.
func ParseEdgeQuery(v url.Values, now time.Time) (EdgeQuery, error) {
	var q EdgeQuery
	var err error
	if err = checkKnown(v, []string{"caller", "callee", "resolution", "since", "start", "end"}); err != nil {
		return q, err
	}
	q.Caller, q.Callee = v.Get("caller"), v.Get("callee")
	switch {
	case q.Caller == "":
		return q, badf("edges need a caller (the calling service)")
	case q.Callee == "":
		return q, badf("edges need a callee (the called service)")
	}
	q.Resolution = time.Minute
	if s := v.Get("resolution"); s != "" {
		if q.Resolution, err = model.ParseResolution(s); err != nil {
			return q, fmt.Errorf("%w: %v", model.ErrBadQuery, err)
		}
	}
	if q.Start, q.End, err = parseRange(v, now); err != nil {
		return q, err
	}
	if q.End != 0 && q.Start > q.End {
		return q, badf("start is after end")
	}
	return q, nil
}
