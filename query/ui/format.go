package ui

import (
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// fmtDur writes a duration for a person: µs below a millisecond, ms below a
// second, s above, with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 0:
		return "-" + fmtDur(-d)
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + " ns"
	case d < time.Millisecond:
		return sig(float64(d)/1e3) + " µs"
	case d < time.Second:
		return sig(float64(d)/1e6) + " ms"
	case d < time.Minute:
		return sig(float64(d)/1e9) + " s"
	}
	return d.Round(time.Second).String()
}

// sig formats f with three significant digits (at least no decimals).
func sig(f float64) string {
	switch {
	case f >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case f >= 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func fmtTimeMs(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") }

func fmtPct(f float64) string {
	switch {
	case f == 0:
		return "0%"
	case f < 0.001:
		return "<0.1%"
	}
	return strconv.FormatFloat(f*100, 'f', 1, 64) + "%"
}

func fmtCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	if len(s) <= 4 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteString(",")
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// link builds path?params, skipping empty values.
func link(path string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Add(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

var funcs = template.FuncMap{
	"dur": func(v any) string {
		switch d := v.(type) {
		case time.Duration:
			return fmtDur(d)
		case int64:
			return fmtDur(time.Duration(d))
		case int:
			return fmtDur(time.Duration(d))
		}
		return fmt.Sprint(v)
	},
	"time":   fmtTime,
	"timems": fmtTimeMs,
	"pct":    fmtPct,
	"count": func(v any) string {
		switch n := v.(type) {
		case int:
			return fmtCount(int64(n))
		case int64:
			return fmtCount(n)
		}
		return fmt.Sprint(v)
	},
	"link": link,
	// withq is link with the encoded parameters q added first.
	"withq": func(path, q string, kv ...string) string {
		v, _ := url.ParseQuery(q)
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				v.Set(kv[i], kv[i+1])
			} else {
				v.Del(kv[i])
			}
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	},
	"pctw": func(f float64) string { // a width in percent for bars, at least visible
		if f > 1 {
			f = 1
		}
		return strconv.FormatFloat(f*100, 'f', 1, 64)
	},
	"add": func(a, b int) int { return a + b },
}
