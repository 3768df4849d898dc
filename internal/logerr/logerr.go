// Package logerr keeps errors on one log line. slog's text handler formats
// an error attribute with %+v, and errors from some client libraries
// (olivere/elastic wraps with github.com/pkg/errors) then print a Go stack
// trace over many lines; errors.Join separates its errors with newlines.
// ReplaceAttr, set as slog.HandlerOptions.ReplaceAttr, writes every error
// as its message with the chain of causes, on one line.
package logerr

import (
	"io"
	"log/slog"
	"strings"
)

// ReplaceAttr replaces an error-valued attribute by its one-line message.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindAny {
		return a
	}
	if err, ok := a.Value.Any().(error); ok && err != nil {
		a.Value = slog.StringValue(Line(err))
	}
	return a
}

// Line is err's message (which includes the causes it wraps) on one line.
func Line(err error) string {
	s := err.Error()
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}

// NewLogger is the logger every tracepipe binary writes with: slog's text
// format on w at level (nil: info), errors on one line.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: ReplaceAttr}))
}
