package query

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// TestSpanLogs: span logs come out in time order with their offset from the
// trace's start, the "event" field apart, in JSON and in the text's logs
// table (values with spaces quoted).
func TestSpanLogs(t *testing.T) {
	t0 := model.TimestampOf(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	span := &model.Span{TraceID: model.TraceID{Low: 1}, SpanID: 2, Operation: "SQL SELECT", Start: t0.Add(time.Millisecond),
		Duration: 10 * time.Millisecond, Process: model.Process{ServiceName: "mysql"},
		Logs: []model.Log{
			{Timestamp: t0.Add(9 * time.Millisecond), Fields: model.KeyValues{model.String("event", "done")}},
			{Timestamp: t0.Add(2 * time.Millisecond), Fields: model.KeyValues{
				model.String("event", "Waiting for lock behind 9 transactions"), model.Int64("blockers", 9), model.String("sql", "SELECT 1")}},
		}}
	st := &model.StoredTrace{
		Summary: model.TraceSummary{TraceID: span.TraceID, Start: t0, Duration: 20 * time.Millisecond},
		Trace:   model.Trace{TraceID: span.TraceID, Spans: []*model.Span{span}},
	}
	tr := NewTrace(st)
	logs := tr.Spans[0].Logs
	if len(logs) != 2 || logs[0].Event != "Waiting for lock behind 9 transactions" || logs[0].OffsetNanos != int64(2*time.Millisecond) ||
		logs[0].Fields["blockers"] != "9" || logs[1].Event != "done" || logs[1].Fields != nil {
		t.Fatalf("logs %+v", logs)
	}
	var b bytes.Buffer
	if err := WriteTraceText(&b, tr); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	i, j := strings.Index(text, "Waiting for lock behind 9 transactions  blockers=9  sql=\"SELECT 1\""), strings.Index(text, "done")
	if !strings.Contains(text, "logs (span events):") || i < 0 || j < i || !strings.Contains(text, "+2ms") {
		t.Errorf("text:\n%s", text)
	}
}
