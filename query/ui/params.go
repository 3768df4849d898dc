package ui

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/query"
)

// timeRange is the range a page covers: a preset relative to now ("1h") or
// custom start/end (UTC), as chosen in the range bar.
type timeRange struct {
	Preset     string // "15m", "1h", ... ; "" when custom; "all" for unbounded
	Start, End model.Timestamp
	// StartText and EndText are the custom bounds as typed (for the form).
	StartText, EndText string
}

// presets are the range bar's buttons.
var presets = []struct{ Key, Label string }{
	{"15m", "15 min"}, {"1h", "1 hour"}, {"6h", "6 hours"}, {"24h", "24 hours"}, {"7d", "7 days"}, {"all", "all"},
}

const defaultPreset = "1h"

func presetDuration(p string) (time.Duration, bool) {
	switch p {
	case "15m":
		return 15 * time.Minute, true
	case "1h":
		return time.Hour, true
	case "6h":
		return 6 * time.Hour, true
	case "24h":
		return 24 * time.Hour, true
	case "7d":
		return 7 * 24 * time.Hour, true
	}
	return 0, false
}

// customLayouts are the accepted forms of start and end: the browser's
// datetime-local input, and RFC 3339; all without a zone are UTC.
var customLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339Nano, "2006-01-02 15:04", "2006-01-02"}

func parseTimeParam(name, s string) (model.Timestamp, error) {
	for _, l := range customLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			if t.Year() < 1678 || t.Year() > 2261 {
				break
			}
			return model.TimestampOf(t), nil
		}
	}
	return 0, badParam(name, s, "a time such as 2026-03-10T14:00 (UTC)")
}

// parseRange reads range=<preset> or start/end (custom, either may be empty).
func parseRange(v url.Values, now time.Time) (timeRange, error) {
	s, e := strings.TrimSpace(v.Get("start")), strings.TrimSpace(v.Get("end"))
	if s != "" || e != "" {
		tr := timeRange{StartText: s, EndText: e}
		var err error
		if s != "" {
			if tr.Start, err = parseTimeParam("start", s); err != nil {
				return tr, err
			}
		}
		if e != "" {
			if tr.End, err = parseTimeParam("end", e); err != nil {
				return tr, err
			}
		}
		if tr.End != 0 && tr.Start > tr.End {
			return tr, badParam("end", e, "after start ("+s+")")
		}
		return tr, nil
	}
	p := v.Get("range")
	if p == "" {
		p = defaultPreset
	}
	if p == "all" {
		return timeRange{Preset: p}, nil
	}
	d, ok := presetDuration(p)
	if !ok {
		return timeRange{}, badParam("range", p, "one of 15m, 1h, 6h, 24h, 7d or all")
	}
	return timeRange{Preset: p, Start: model.TimestampOf(now.Add(-d))}, nil
}

// bounds returns the range's start and end, an open end being now.
func (tr timeRange) bounds(now time.Time) (model.Timestamp, model.Timestamp) {
	end := tr.End
	if end == 0 {
		end = model.TimestampOf(now)
	}
	return tr.Start, end
}

// Describe says the range in words, for headings and empty states.
func (tr timeRange) Describe() string {
	switch {
	case tr.Preset == "all":
		return "all stored data"
	case tr.Preset != "":
		for _, p := range presets {
			if p.Key == tr.Preset {
				return "the last " + p.Label
			}
		}
	case tr.Start != 0 && tr.End != 0:
		return fmtTime(tr.Start.Time()) + " to " + fmtTime(tr.End.Time()) + " UTC"
	case tr.Start != 0:
		return "since " + fmtTime(tr.Start.Time()) + " UTC"
	case tr.End != 0:
		return "until " + fmtTime(tr.End.Time()) + " UTC"
	}
	return "all stored data"
}

// values returns the range as URL parameters.
func (tr timeRange) values() url.Values {
	v := url.Values{}
	switch {
	case tr.Preset != "":
		v.Set("range", tr.Preset)
	default:
		if tr.StartText != "" {
			v.Set("start", tr.StartText)
		}
		if tr.EndText != "" {
			v.Set("end", tr.EndText)
		}
	}
	return v
}

// resolutionFor picks the rollup resolution that draws a range with a few
// dozen to a few hundred points.
func resolutionFor(start, end model.Timestamp) time.Duration {
	if start == 0 {
		return 24 * time.Hour
	}
	switch d := end.Sub(start); {
	case d <= 6*time.Hour:
		return time.Minute
	case d <= 14*24*time.Hour:
		return time.Hour
	}
	return 24 * time.Hour
}

func parseDurationParam(v url.Values, name string) (time.Duration, error) {
	s := strings.TrimSpace(v.Get(name))
	if s == "" {
		return 0, nil
	}
	d, err := query.ParseDuration(s) // as the API: 150ms, 2s, 1d12h
	if err != nil || d < 0 {
		if n, err2 := strconv.ParseFloat(s, 64); err2 == nil && n >= 0 { // a bare number is milliseconds
			return time.Duration(n * float64(time.Millisecond)), nil
		}
		return 0, badParam(name, s, "a duration such as 150ms or 2s")
	}
	return d, nil
}

func parseIntParam(v url.Values, name string, def, lo, hi int) (int, error) {
	s := strings.TrimSpace(v.Get(name))
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, badParam(name, s, "a number from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi))
	}
	return n, nil
}

// parseTags reads one parameter per promoted tag key ("shard=7"); empty
// values are no filter.
func parseTags(v url.Values, promoted []string) map[string]string {
	var tags map[string]string
	for _, k := range promoted {
		if s := strings.TrimSpace(v.Get(k)); s != "" {
			if tags == nil {
				tags = map[string]string{}
			}
			tags[k] = s
		}
	}
	return tags
}

// checkKnown rejects parameters a page does not read (a typo would
// otherwise silently show unfiltered data).
func checkKnown(v url.Values, known []string, promoted []string) error {
	for k := range v {
		ok := false
		for _, n := range known {
			ok = ok || n == k
		}
		for _, n := range promoted {
			ok = ok || n == k
		}
		if !ok {
			return badParam(k, v.Get(k), "a parameter of this page (known: "+strings.Join(append(append([]string{}, known...), promoted...), ", ")+")")
		}
	}
	return nil
}

var rangeParams = []string{"range", "start", "end"}
