package dag

import (
	"fmt"

	"github.com/tracepipe/tracepipe/model"
)

type warnCount struct {
	kind  model.WarningKind
	count int
}

// warnf records a warning unless MaxWarningsPerKind warnings of that kind are
// already recorded, in which case it is only counted.
func (a *Analyzer) warnf(kind model.WarningKind, span model.SpanID, format string, args ...any) {
	if a.admit(kind) {
		a.warns = append(a.warns, model.Warning{Kind: kind, SpanID: span, Message: fmt.Sprintf(format, args...)})
	}
}

func (a *Analyzer) warn(kind model.WarningKind, span model.SpanID, msg string) {
	if a.admit(kind) {
		a.warns = append(a.warns, model.Warning{Kind: kind, SpanID: span, Message: msg})
	}
}

func (a *Analyzer) admit(kind model.WarningKind) bool {
	for i := range a.warnKinds {
		if w := &a.warnKinds[i]; w.kind == kind {
			w.count++
			return a.opts.MaxWarningsPerKind < 0 || w.count <= a.opts.MaxWarningsPerKind
		}
	}
	a.warnKinds = append(a.warnKinds, warnCount{kind, 1})
	return a.opts.MaxWarningsPerKind != 0
}

// finishWarnings appends a note for each kind whose warnings were capped and
// returns a fresh slice (nil when there is nothing to say).
func (a *Analyzer) finishWarnings() []model.Warning {
	if max := a.opts.MaxWarningsPerKind; max >= 0 {
		for _, w := range a.warnKinds {
			if w.count > max {
				a.warns = append(a.warns, model.Warning{Kind: w.kind,
					Message: fmt.Sprintf("%d more %s warnings left out", w.count-max, w.kind)})
			}
		}
	}
	if len(a.warns) == 0 {
		return nil
	}
	return append([]model.Warning(nil), a.warns...)
}
