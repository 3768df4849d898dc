package dag

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// sec is an expected critical-path section in test milliseconds.
type sec struct {
	id         uint64
	start, end int64
}

var (
	otherTrace = model.TraceID{Low: 0x999}
	days2      = 48 * time.Hour
	negDur     = -5 * time.Millisecond
)

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name  string
		spans []sp
		opts  Options
		root  uint64 // expected RootSpanID
		start int64  // expected Start (ms)
		dur   int64  // expected Duration (ms)
		cp    []sec
		self  map[uint64]int64 // expected self time (ms) of some spans
		warns []model.WarningKind
		check func(t *testing.T, tr *model.Trace, an model.Analysis)
	}{
		{
			name: "single span",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
			},
			root: 1, dur: 100,
			cp:   []sec{{1, 0, 100}},
			self: map[uint64]int64{1: 100},
		},
		{
			name: "simple chain",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 10, dur: 80},
				{id: 3, parent: 2, start: 20, dur: 50},
			},
			root: 1, dur: 100,
			cp:   []sec{{1, 0, 10}, {2, 10, 20}, {3, 20, 70}, {2, 70, 90}, {1, 90, 100}},
			self: map[uint64]int64{1: 20, 2: 30, 3: 50},
		},
		{
			name: "parallel children",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 10, dur: 50},
				{id: 3, parent: 1, start: 20, dur: 60},
			},
			root: 1, dur: 100,
			// 3 ends last; at its start (20) child 2 has not finished, so 1 is critical.
			cp:   []sec{{1, 0, 20}, {3, 20, 80}, {1, 80, 100}},
			self: map[uint64]int64{1: 30, 2: 50, 3: 60},
		},
		{
			name: "sequential children",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 3, parent: 1, start: 40, dur: 50},
				{id: 2, parent: 1, start: 10, dur: 30},
			},
			root: 1, dur: 100,
			// 2 ends exactly when 3 starts: both are critical.
			cp:   []sec{{1, 0, 10}, {2, 10, 40}, {3, 40, 90}, {1, 90, 100}},
			self: map[uint64]int64{1: 20},
		},
		{
			name: "overflowing child truncated",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 50, dur: 100},
				{id: 3, parent: 2, start: 120, dur: 10}, // outside the truncated parent: dropped
			},
			root: 1, dur: 100,
			cp:   []sec{{1, 0, 50}, {2, 50, 100}},
			self: map[uint64]int64{1: 50, 2: 90, 3: 10},
		},
		{
			name: "child starting before parent truncated",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: -20, dur: 50},
			},
			root: 1, dur: 100,
			cp:   []sec{{2, 0, 30}, {1, 30, 100}},
			self: map[uint64]int64{1: 70, 2: 50},
		},
		{
			name: "child outside parent dropped with subtree",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 150, dur: 20},
				{id: 3, parent: 2, start: 155, dur: 5},
				{id: 4, parent: 1, start: -50, dur: 50}, // ends exactly at the parent's start
			},
			root: 1, dur: 100,
			cp:   []sec{{1, 0, 100}},
			self: map[uint64]int64{1: 100, 2: 15},
		},
		{
			name: "async FOLLOWS_FROM child",
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a"},
				{id: 2, parent: 1, ref: model.FollowsFrom, start: 20, dur: 200, host: "b"},
				{id: 3, parent: 2, start: 30, dur: 10, host: "b"},
			},
			root: 1, dur: 100,
			cp:   []sec{{1, 0, 100}},
			self: map[uint64]int64{1: 100, 2: 190},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if s := tr.Spans[1]; s.Start != ms(20) || len(s.Warnings) != 0 {
					t.Errorf("async child moved: start %d warnings %v", s.Start, s.Warnings)
				}
			},
		},
		{
			name: "producer consumer",
			spans: []sp{
				{id: 1, start: 0, dur: 100, kind: model.KindServer, host: "a"},
				{id: 2, parent: 1, start: 10, dur: 10, kind: model.KindProducer, host: "a"},
				{id: 3, parent: 2, start: 50, dur: 100, kind: model.KindConsumer, host: "b"},
			},
			root: 1, dur: 100,
			cp:   []sec{{1, 0, 10}, {2, 10, 20}, {1, 20, 100}},
			self: map[uint64]int64{1: 90, 2: 10, 3: 100},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if tr.Spans[2].Start != ms(50) {
					t.Errorf("consumer moved to %d", tr.Spans[2].Start)
				}
			},
		},
		{
			name: "client child of consumer is blocking",
			spans: []sp{
				{id: 1, start: 0, dur: 100, kind: model.KindConsumer},
				{id: 2, parent: 1, start: 10, dur: 10, kind: model.KindClient},
			},
			root: 1, dur: 100,
			cp: []sec{{1, 0, 10}, {2, 10, 20}, {1, 20, 100}},
		},
		{
			name: "several roots",
			spans: []sp{
				{id: 1, start: 10, dur: 100},
				{id: 2, start: 0, dur: 30},
				{id: 3, start: 0, dur: 50},
				{id: 4, parent: 1, start: 20, dur: 10},
			},
			root: 3, dur: 50,
			cp:    []sec{{3, 0, 50}},
			self:  map[uint64]int64{1: 90},
			warns: []model.WarningKind{model.WarnMultipleRoots},
		},
		{
			name: "several roots same start and length: smallest id",
			spans: []sp{
				{id: 9, start: 0, dur: 50},
				{id: 7, start: 0, dur: 50},
			},
			root: 7, dur: 50,
			cp:    []sec{{7, 0, 50}},
			warns: []model.WarningKind{model.WarnMultipleRoots},
		},
		{
			name: "no root",
			spans: []sp{
				{id: 2, parent: 99, start: 60, dur: 40},
				{id: 1, parent: 99, start: 0, dur: 50},
				{id: 3, parent: 1, start: 10, dur: 10},
			},
			root: 0, start: 0, dur: 100,
			// The virtual root's own time (50-60) is a gap.
			cp:    []sec{{1, 0, 10}, {3, 10, 20}, {1, 20, 50}, {2, 60, 100}},
			self:  map[uint64]int64{1: 40, 2: 40},
			warns: []model.WarningKind{model.WarnOrphan, model.WarnOrphan, model.WarnNoRoot},
		},
		{
			name: "orphan",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 10, dur: 20},
				{id: 3, parent: 77, start: 30, dur: 10},
				{id: 4, parent: 3, start: 32, dur: 4},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 10}, {2, 10, 30}, {1, 30, 100}},
			self:  map[uint64]int64{1: 80, 3: 6, 4: 4},
			warns: []model.WarningKind{model.WarnOrphan},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if an.Warnings[0].SpanID != 3 {
					t.Errorf("orphan warning on %s, want span 3", an.Warnings[0].SpanID)
				}
			},
		},
		{
			name: "duplicate identical",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 10, dur: 20},
				{id: 2, parent: 1, start: 10, dur: 20},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 10}, {2, 10, 30}, {1, 30, 100}},
			warns: []model.WarningKind{model.WarnDuplicateSpan},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if len(tr.Spans) != 2 || an.SpanCount != 2 {
					t.Errorf("%d spans after merge, want 2", len(tr.Spans))
				}
			},
		},
		{
			name: "duplicate conflicting keeps longest at first position",
			spans: []sp{
				{id: 2, parent: 1, start: 10, dur: 20},
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 10, dur: 30},
				{id: 2, parent: 1, start: 10, rawDur: &negDur},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 10}, {2, 10, 40}, {1, 40, 100}},
			warns: []model.WarningKind{model.WarnConflictingSpan},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if len(tr.Spans) != 2 || tr.Spans[0].SpanID != 2 || tr.Spans[0].Duration != 30*time.Millisecond {
					t.Errorf("kept %v %v, want span 2 lasting 30ms first", tr.Spans[0].SpanID, tr.Spans[0].Duration)
				}
			},
		},
		{
			name: "cycle of two",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 3, start: 10, dur: 50},
				{id: 3, parent: 2, start: 20, dur: 10},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 100}},
			self:  map[uint64]int64{2: 40, 3: 10},
			warns: []model.WarningKind{model.WarnCycle},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if an.Warnings[0].SpanID != 2 {
					t.Errorf("cycle cut at %s, want the earliest span 2", an.Warnings[0].SpanID)
				}
			},
		},
		{
			name: "cycle without root",
			spans: []sp{
				{id: 2, parent: 3, start: 10, dur: 50},
				{id: 3, parent: 2, start: 20, dur: 10},
			},
			root: 0, start: 10, dur: 50,
			cp:    []sec{{2, 10, 20}, {3, 20, 30}, {2, 30, 60}},
			warns: []model.WarningKind{model.WarnCycle, model.WarnNoRoot},
		},
		{
			name: "self loop",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 5, parent: 5, start: 10, dur: 10},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 100}},
			warns: []model.WarningKind{model.WarnCycle},
		},
		{
			name: "foreign trace id removed",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 10, dur: 20, trace: &otherTrace},
				{id: 3, parent: 1, start: 40, dur: 20},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 40}, {3, 40, 60}, {1, 60, 100}},
			warns: []model.WarningKind{model.WarnForeignTrace},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if len(tr.Spans) != 2 || tr.Spans[1].SpanID != 3 {
					t.Errorf("spans after removal: %d", len(tr.Spans))
				}
			},
		},
		{
			name: "negative duration",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 10, rawDur: &negDur},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 100}},
			self:  map[uint64]int64{1: 100, 2: 0},
			warns: []model.WarningKind{model.WarnBadDuration},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if tr.Spans[1].Duration != negDur {
					t.Errorf("duration rewritten to %v", tr.Spans[1].Duration)
				}
			},
		},
		{
			name: "absurd duration",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 10, rawDur: &days2},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 100}},
			self:  map[uint64]int64{1: 100, 2: 0},
			warns: []model.WarningKind{model.WarnBadDuration},
		},
		{
			name: "absurd root duration",
			spans: []sp{
				{id: 1, start: 0, rawDur: &days2},
				{id: 2, parent: 1, start: 10, dur: 5},
			},
			root: 1, dur: 0,
			cp:    nil,
			warns: []model.WarningKind{model.WarnBadDuration},
		},
		{
			name: "zero start timestamp",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: -int64(base) / 1e6, dur: 10},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 100}},
			warns: []model.WarningKind{model.WarnBadTimestamp},
		},
		{
			name: "timestamp far outside the root",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 30 * 3600 * 1000, dur: 10},
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 100}},
			warns: []model.WarningKind{model.WarnBadTimestamp},
		},
		{
			name: "clock skew different host shifted with subtree",
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a", kind: model.KindClient},
				{id: 2, parent: 1, start: -10, dur: 40, host: "b", kind: model.KindServer},
				{id: 3, parent: 2, start: -5, dur: 10, host: "b"},
			},
			root: 1, dur: 100,
			// 2 is centred: shifted by (100-40)/2 - (-10) = 40ms; 3 moves with it.
			cp:    []sec{{1, 0, 30}, {2, 30, 35}, {3, 35, 45}, {2, 45, 70}, {1, 70, 100}},
			self:  map[uint64]int64{1: 60, 2: 30, 3: 10},
			warns: []model.WarningKind{model.WarnClockSkew},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				for i, want := range []int64{0, 30, 35} {
					if got := tr.Spans[i].Start; got != ms(want) {
						t.Errorf("span %d start %d, want %d", i+1, got, ms(want))
					}
				}
				if len(tr.Spans[0].Warnings) != 0 || len(tr.Spans[1].Warnings) != 1 || len(tr.Spans[2].Warnings) != 1 {
					t.Errorf("span notes: %q %q %q", tr.Spans[0].Warnings, tr.Spans[1].Warnings, tr.Spans[2].Warnings)
				}
				if !strings.Contains(tr.Spans[1].Warnings[0], "40ms") {
					t.Errorf("note %q does not give the shift", tr.Spans[1].Warnings[0])
				}
			},
		},
		{
			name: "clock skew by ip tag, longer child aligned to parent start",
			spans: []sp{
				{id: 1, start: 0, dur: 50, host: "ip:10.0.0.1"},
				{id: 2, parent: 1, start: -30, dur: 100, host: "ip:10.0.0.2"},
			},
			root: 1, dur: 50,
			cp:    []sec{{2, 0, 50}},
			warns: []model.WarningKind{model.WarnClockSkew},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if tr.Spans[1].Start != ms(0) {
					t.Errorf("child start %d, want the parent's", tr.Spans[1].Start)
				}
			},
		},
		{
			name: "longer child starting inside parent not shifted",
			spans: []sp{
				{id: 1, start: 0, dur: 50, host: "a"},
				{id: 2, parent: 1, start: 10, dur: 100, host: "b"},
			},
			root: 1, dur: 50,
			cp: []sec{{1, 0, 10}, {2, 10, 50}},
		},
		{
			name: "per span: clock skew of grandchild on third host judged afresh",
			opts: Options{ClockSkew: ClockSkewPerSpan},
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a"},
				{id: 2, parent: 1, start: 110, dur: 60, host: "b"}, // shifted by -90 to [20,80]
				{id: 3, parent: 2, start: 30, dur: 10, host: "c"},  // fits the adjusted parent: stays
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 20}, {2, 20, 30}, {3, 30, 40}, {2, 40, 80}, {1, 80, 100}},
			warns: []model.WarningKind{model.WarnClockSkew},
		},
		{
			name: "host offsets: grandchild on third host moved by the least shift, a hop inside its parent",
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a"},
				{id: 2, parent: 1, start: 110, dur: 60, host: "b"}, // x_b in [70, 110]: 70 + 0.1 (hop)
				{id: 3, parent: 2, start: 30, dur: 10, host: "c"},  // x_c − x_b in [−130, −80]: x_c = −10 (hop)
			},
			root: 1, dur: 100,
			cp:    []sec{{1, 0, 39}, {2, 39, 40}, {3, 40, 50}, {2, 50, 99}, {1, 99, 100}},
			warns: []model.WarningKind{model.WarnClockSkew, model.WarnClockSkew},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if got, want := tr.Spans[1].Start, ms(110)-model.Timestamp(70100*time.Microsecond); got != want {
					t.Errorf("span 2 start %d, want %d", got, want)
				}
				if got, want := tr.Spans[2].Start, ms(40); got != want {
					t.Errorf("span 3 start %d, want %d", got, want)
				}
			},
		},
		{
			name: "host offsets: siblings on one host keep their order",
			// Per span, 3 fits and stays while 2 is centred past it; one
			// offset for host b moves both by the same amount.
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a"},
				{id: 2, parent: 1, start: -20, dur: 30, host: "b"},
				{id: 3, parent: 1, start: 20, dur: 30, host: "b"},
			},
			root: 1, dur: 100,
			// x_b in [−50, −20], no client/server evidence: the least shift
			// keeping a hop, +20.1ms (sections shown truncated to ms).
			cp:    []sec{{1, 0, 0}, {2, 0, 30}, {1, 30, 40}, {3, 40, 70}, {1, 70, 100}},
			warns: []model.WarningKind{model.WarnClockSkew},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if d := tr.Spans[2].Start - tr.Spans[1].Start; d != model.Timestamp(40*time.Millisecond) {
					t.Errorf("siblings %v apart, want 40ms", time.Duration(d))
				}
			},
		},
		{
			name: "host offsets: client/server pairs of two hosts give the centre of their common interval",
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a", kind: model.KindServer},
				{id: 2, parent: 1, start: 10, dur: 20, host: "a", kind: model.KindClient},
				{id: 3, parent: 2, start: 14, dur: 10, host: "b", kind: model.KindServer}, // x_b in [−6, 4]
				{id: 4, parent: 1, start: 50, dur: 20, host: "a", kind: model.KindClient},
				{id: 5, parent: 4, start: 48, dur: 16, host: "b", kind: model.KindServer}, // x_b in [−6, −2]
			},
			root: 1, dur: 100,
			// Common interval [−6, −2]: 0 does not fit, centre −4: b moves +4.
			cp:    []sec{{1, 0, 10}, {2, 10, 18}, {3, 18, 28}, {2, 28, 30}, {1, 30, 50}, {4, 50, 52}, {5, 52, 68}, {4, 68, 70}, {1, 70, 100}},
			warns: []model.WarningKind{model.WarnClockSkew},
		},
		{
			name: "host offsets: conflicting pairs fall back to span by span",
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a"},
				{id: 2, parent: 1, start: -10, dur: 40, host: "b"}, // x_b in [−70, −10]
				{id: 3, parent: 1, start: 90, dur: 5, host: "b"},   // x_b in [−5, 90]
			},
			root: 1, dur: 100,
			warns: []model.WarningKind{model.WarnClockSkew, model.WarnClockSkew},
			cp:    []sec{{1, 0, 30}, {2, 30, 70}, {1, 70, 90}, {3, 90, 95}, {1, 95, 100}},
		},
		{
			name: "tie after truncation: earliest start wins (Jaeger UI)",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 50, dur: 70}, // ends at 120, truncated to 100
				{id: 3, parent: 1, start: 40, dur: 60}, // ends at 100
				{id: 4, parent: 1, start: 60, dur: 80}, // ends at 140, truncated to 100
			},
			root: 1, dur: 100,
			cp: []sec{{1, 0, 40}, {3, 40, 100}},
		},
		{
			name: "tie after truncation: equal starts, smaller span ID wins",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 7, parent: 1, start: 30, dur: 90},
				{id: 5, parent: 1, start: 30, dur: 80},
				{id: 6, parent: 1, start: 30, dur: 75},
			},
			root: 1, dur: 100,
			cp: []sec{{1, 0, 30}, {5, 30, 100}},
		},
		{
			name: "tie on equal ends: earliest start wins, async children never critical",
			spans: []sp{
				{id: 1, start: 0, dur: 100, kind: model.KindProducer},
				{id: 2, parent: 1, start: 60, dur: 40},
				{id: 3, parent: 1, start: 20, dur: 80},
				{id: 4, parent: 1, ref: model.FollowsFrom, start: 10, dur: 90},
				{id: 5, parent: 1, start: 5, dur: 95, kind: model.KindConsumer},
			},
			root: 1, dur: 100,
			cp: []sec{{1, 0, 20}, {3, 20, 100}},
		},
		{
			name: "same host not shifted",
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a"},
				{id: 2, parent: 1, start: -10, dur: 40, host: "a"},
			},
			root: 1, dur: 100,
			cp: []sec{{2, 0, 30}, {1, 30, 100}},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if tr.Spans[1].Start != ms(-10) {
					t.Errorf("same-host child moved to %d", tr.Spans[1].Start)
				}
			},
		},
		{
			name: "no host identity on either side not shifted",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: -10, dur: 40},
			},
			root: 1, dur: 100,
			cp: []sec{{2, 0, 30}, {1, 30, 100}},
		},
		{
			name: "skew beyond max not shifted",
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a"},
				{id: 2, parent: 1, start: -10, dur: 40, host: "b"},
			},
			opts: Options{MaxClockSkewAdjust: 10 * time.Millisecond},
			root: 1, dur: 100,
			cp:    []sec{{2, 0, 30}, {1, 30, 100}},
			warns: []model.WarningKind{model.WarnSkewTooLarge},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				if tr.Spans[1].Start != ms(-10) || len(tr.Spans[1].Warnings) != 0 {
					t.Errorf("child moved to %d", tr.Spans[1].Start)
				}
			},
		},
		{
			name: "skew repair disabled",
			spans: []sp{
				{id: 1, start: 0, dur: 100, host: "a"},
				{id: 2, parent: 1, start: -10, dur: 40, host: "b"},
			},
			opts: Options{MaxClockSkewAdjust: -1},
			root: 1, dur: 100,
			cp: []sec{{2, 0, 30}, {1, 30, 100}},
		},
		{
			name: "zero-length children between sections merged",
			spans: []sp{
				{id: 1, start: 0, dur: 100},
				{id: 2, parent: 1, start: 50, dur: 0},
				{id: 3, parent: 1, start: 100, dur: 0}, // at the parent's end: dropped
			},
			root: 1, dur: 100,
			cp: []sec{{1, 0, 100}},
		},
		{
			name: "operations summarised",
			spans: []sp{
				{id: 1, start: 0, dur: 100, svc: "front", op: "GET"},
				{id: 2, parent: 1, start: 10, dur: 30, svc: "db", op: "query", err: true},
				{id: 3, parent: 1, start: 50, dur: 30, svc: "db", op: "query"},
				{id: 4, parent: 1, start: 40, dur: 5, svc: "cache", op: "get"},
			},
			root: 1, dur: 100,
			cp: []sec{{1, 0, 10}, {2, 10, 40}, {4, 40, 45}, {1, 45, 50}, {3, 50, 80}, {1, 80, 100}},
			check: func(t *testing.T, tr *model.Trace, an model.Analysis) {
				want := []model.OperationSummary{
					{OperationKey: model.OperationKey{Service: "db", Operation: "query"}, Count: 2, Errors: 1,
						Duration: 60 * time.Millisecond, Self: 60 * time.Millisecond, CriticalPath: 60 * time.Millisecond},
					{OperationKey: model.OperationKey{Service: "front", Operation: "GET"}, Count: 1,
						Duration: 100 * time.Millisecond, Self: 35 * time.Millisecond, CriticalPath: 35 * time.Millisecond},
					{OperationKey: model.OperationKey{Service: "cache", Operation: "get"}, Count: 1,
						Duration: 5 * time.Millisecond, Self: 5 * time.Millisecond, CriticalPath: 5 * time.Millisecond},
				}
				if !reflect.DeepEqual(an.Operations, want) {
					t.Errorf("operations\n got %+v\nwant %+v", an.Operations, want)
				}
				if an.ErrorCount != 1 {
					t.Errorf("ErrorCount %d", an.ErrorCount)
				}
				if b, _ := an.Bottleneck(); b.Service != "db" {
					t.Errorf("bottleneck %+v", b)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := buildTrace(tc.spans...)
			an := Analyze(tr, tc.opts)
			checkInvariants(t, tr, an, tc.opts)
			if got := uint64(an.RootSpanID); got != tc.root {
				t.Errorf("RootSpanID %d, want %d", got, tc.root)
			}
			if an.Start != ms(tc.start) || an.Duration != time.Duration(tc.dur)*time.Millisecond {
				t.Errorf("Start %d Duration %v, want %d %v", an.Start, an.Duration, ms(tc.start), time.Duration(tc.dur)*time.Millisecond)
			}
			var got []sec
			for _, s := range an.CriticalPath {
				got = append(got, sec{uint64(s.SpanID), int64(s.Start-base) / 1e6, int64(s.End-base) / 1e6})
			}
			if !reflect.DeepEqual(got, tc.cp) {
				t.Errorf("critical path\n got %v\nwant %v", got, tc.cp)
			}
			for id, want := range tc.self {
				found := false
				for _, st := range an.Spans {
					if uint64(st.SpanID) == id {
						found = true
						if st.Self != time.Duration(want)*time.Millisecond {
							t.Errorf("span %d self %v, want %dms", id, st.Self, want)
						}
					}
				}
				if !found {
					t.Errorf("span %d missing from Spans", id)
				}
			}
			var kinds []model.WarningKind
			for _, w := range an.Warnings {
				kinds = append(kinds, w.Kind)
			}
			if !reflect.DeepEqual(kinds, tc.warns) {
				t.Errorf("warnings %v, want kinds %v", an.Warnings, tc.warns)
			}
			if tc.check != nil {
				tc.check(t, tr, an)
			}
		})
	}
}

func TestAnalyzeEmpty(t *testing.T) {
	for name, tr := range map[string]*model.Trace{
		"no spans":      {TraceID: testTraceID},
		"only nil":      {TraceID: testTraceID, Spans: []*model.Span{nil, nil}},
		"only foreign":  buildTrace(sp{id: 1, dur: 1, trace: &otherTrace}),
		"nil trace ptr": nil,
	} {
		t.Run(name, func(t *testing.T) {
			an := Analyze(tr, Options{})
			if an.SpanCount != 0 || len(an.Spans) != 0 || len(an.CriticalPath) != 0 || an.RootSpanID != 0 {
				t.Errorf("analysis of an empty trace: %+v", an)
			}
			if n := len(an.Warnings); n == 0 || an.Warnings[n-1].Kind != model.WarnEmpty {
				t.Errorf("warnings %v, want empty-trace last", an.Warnings)
			}
		})
	}
}

func TestAnalyzeAdoptsTraceID(t *testing.T) {
	tr := buildTrace(sp{id: 1, dur: 10}, sp{id: 2, parent: 1, dur: 5})
	tr.TraceID = model.TraceID{}
	an := Analyze(tr, Options{})
	if tr.TraceID != testTraceID || an.TraceID != testTraceID || an.SpanCount != 2 {
		t.Errorf("trace ID %v / %v, %d spans", tr.TraceID, an.TraceID, an.SpanCount)
	}
}

func TestAnalyzeNilSpansRemoved(t *testing.T) {
	tr := buildTrace(sp{id: 1, dur: 10}, sp{id: 2, parent: 1, dur: 5})
	tr.Spans = []*model.Span{nil, tr.Spans[0], nil, tr.Spans[1]}
	backing := tr.Spans
	an := Analyze(tr, Options{})
	checkInvariants(t, tr, an, Options{})
	if len(tr.Spans) != 2 || backing[2] != nil || backing[3] != nil {
		t.Errorf("spans %v, backing %v", tr.Spans, backing)
	}
}

func TestWarningsCapped(t *testing.T) {
	spans := []sp{{id: 1, dur: 100}}
	for i := range 30 {
		spans = append(spans, sp{id: uint64(100 + i), parent: 5000, start: 1, dur: 1})
	}
	opts := Options{MaxWarningsPerKind: 5}
	an := Analyze(buildTrace(spans...), opts)
	if len(an.Warnings) != 6 {
		t.Fatalf("%d warnings, want 5 + 1 note: %v", len(an.Warnings), an.Warnings)
	}
	last := an.Warnings[5]
	if last.Kind != model.WarnOrphan || last.SpanID != 0 || !strings.Contains(last.Message, "25 more") {
		t.Errorf("last warning %v", last)
	}
	an = Analyze(buildTrace(spans...), Options{MaxWarningsPerKind: -1})
	if len(an.Warnings) != 30 {
		t.Errorf("%d warnings uncapped, want 30", len(an.Warnings))
	}
}

func TestSameHost(t *testing.T) {
	withTags := func(kvs ...model.KeyValue) *model.Span {
		return &model.Span{Process: model.Process{Tags: kvs}}
	}
	tests := []struct {
		name string
		x, y *model.Span
		same bool
	}{
		{"no identity", withTags(), withTags(), true},
		{"one side only", withTags(model.String("hostname", "a")), withTags(), false},
		{"hostname equal", withTags(model.String("hostname", "a")), withTags(model.String("hostname", "a")), true},
		{"hostname differs", withTags(model.String("hostname", "a")), withTags(model.String("hostname", "b")), false},
		{"host.name and hostname", withTags(model.String("host.name", "a")), withTags(model.String("hostname", "a")), true},
		{"name wins over ip", withTags(model.String("hostname", "a"), model.String("ip", "1.1.1.1")),
			withTags(model.String("hostname", "a"), model.String("ip", "2.2.2.2")), true},
		{"ip string vs int64", withTags(model.String("ip", "10.0.0.1")), withTags(model.Int64("ip", 0x0a000001)), true},
		{"ip string vs binary v4-in-v6", withTags(model.String("ip", "10.0.0.1")),
			withTags(model.Binary("ip", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1})), true},
		{"ip differs", withTags(model.String("ip", "10.0.0.1")), withTags(model.String("ip", "10.0.0.2")), false},
		{"unparsable ip compared as text", withTags(model.String("ip", "box")), withTags(model.String("ip", "box")), true},
		{"name vs ip only", withTags(model.String("hostname", "a")), withTags(model.String("ip", "10.0.0.1")), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &Analyzer{spans: []*model.Span{tc.x, tc.y}, hosts: make([]hostID, 2), hostKnown: make([]bool, 2)}
			if got := a.sameHost(0, 1); got != tc.same {
				t.Errorf("sameHost = %v, want %v", got, tc.same)
			}
		})
	}
}

// TestReanalyzeStable checks that analysing an already analysed (and so
// already skew-adjusted) trace gives the same result and moves nothing.
func TestReanalyzeStable(t *testing.T) {
	tr := buildTrace(
		sp{id: 1, start: 0, dur: 100, host: "a"},
		sp{id: 2, parent: 1, start: -10, dur: 40, host: "b"},
		sp{id: 3, parent: 2, start: -5, dur: 10, host: "b"},
		sp{id: 4, parent: 1, start: 90, dur: 100, host: "c"},
	)
	first := Analyze(tr, Options{})
	notes := len(tr.Spans[1].Warnings)
	second := Analyze(tr, Options{})
	if !reflect.DeepEqual(first.CriticalPath, second.CriticalPath) || !reflect.DeepEqual(first.Spans, second.Spans) {
		t.Errorf("second analysis differs:\n%+v\n%+v", first, second)
	}
	if len(second.Warnings) != 0 || len(tr.Spans[1].Warnings) != notes {
		t.Errorf("second analysis shifted again: %v", second.Warnings)
	}
}

// TestLogsShifted checks that log timestamps move with their span.
func TestLogsShifted(t *testing.T) {
	tr := buildTrace(
		sp{id: 1, start: 0, dur: 100, host: "a", kind: model.KindClient},
		sp{id: 2, parent: 1, start: -10, dur: 40, host: "b", kind: model.KindServer},
	)
	tr.Spans[1].Logs = []model.Log{{Timestamp: ms(-5)}}
	Analyze(tr, Options{})
	if got := tr.Spans[1].Logs[0].Timestamp; got != ms(35) {
		t.Errorf("log at %d, want %d", got, ms(35))
	}
}
