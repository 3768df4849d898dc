package dbmodel

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestTraceCompactGolden: the compact summary the Elasticsearch store
// writes, and its way back to the same summary and analysis.
func TestTraceCompactGolden(t *testing.T) {
	s, a := traceCase()
	d := FromDomainTrace(&s, &a)
	full := d
	d.Compact()
	if len(d.Operations) != 0 || len(d.Analysis.Spans) != 0 || len(d.Analysis.CriticalPath) != 0 || len(d.Analysis.Packed) == 0 {
		t.Fatalf("compact form keeps the full fields: %+v", d)
	}
	golden(t, "trace_compact.stored.json", d)
	var back Trace
	readStored(t, "trace_compact.stored.json", &back)
	if err := back.Expand(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, full) {
		t.Errorf("expanded:\n%+v\nwant\n%+v", back, full)
	}
	checkTraceRoundTrip(t, &back, s, a)
	// A summary in the full form is left as it is.
	again := full
	if err := again.Expand(); err != nil || !reflect.DeepEqual(again, full) {
		t.Errorf("Expand changed a full summary (%v):\n%+v", err, again)
	}
}

// TestCompactKeepsInseparableOperations: a name holding a record or key
// separator keeps the nested form for the operations (the analysis is
// still packed), and reads back the same.
func TestCompactKeepsInseparableOperations(t *testing.T) {
	for _, name := range []string{"odd\x1ename", "odd\x1fname"} {
		s, a := traceCase()
		s.Operations[0].Operation = name
		d := FromDomainTrace(&s, &a)
		full := d
		d.Compact()
		if len(d.Operations) != len(full.Operations) || d.OperationStats != nil || d.OperationKeys != nil || len(d.Analysis.Packed) == 0 {
			t.Errorf("%q: compacted to %+v", name, d)
		}
		if err := d.Expand(); err != nil || !reflect.DeepEqual(d, full) {
			t.Errorf("%q: expanded (%v) to\n%+v\nwant\n%+v", name, err, d, full)
		}
	}
}

func TestOperationStat(t *testing.T) {
	o := Operation{Key: OperationKey("svc a", "GET /x y"), Service: "svc a", Operation: "GET /x y",
		Count: 3, Errors: 1, DurationNanos: 9_000_000_000_000, SelfNanos: 7, CriticalPathNanos: -2}
	got, err := ParseOperationStat(string(appendOperationStat(nil, o)))
	if err != nil || got != o {
		t.Errorf("round trip: %+v, %v; want %+v", got, err, o)
	}
	for _, bad := range []string{"", "1 2 3 4 svc\x1fop", "1 2 x 4 5 svc\x1fop", "1 2 3 4 5 svc-op", "99999999999999999999 2 3 4 5 s\x1fo"} {
		if _, err := ParseOperationStat(bad); err == nil {
			t.Errorf("ParseOperationStat(%q): no error", bad)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	s, a := traceCase()
	good := FromDomainTrace(&s, &a)
	good.Compact()
	cases := map[string]func(d *Trace){
		"bad stats":          func(d *Trace) { d.OperationStats = []byte("nope") },
		"bad second record":  func(d *Trace) { d.OperationStats = append(append([]byte(nil), d.OperationStats...), "\x1e1 2"...) },
		"unknown version":    func(d *Trace) { d.Analysis.Packed = append([]byte{9}, d.Analysis.Packed[1:]...) },
		"cut short":          func(d *Trace) { d.Analysis.Packed = d.Analysis.Packed[:len(d.Analysis.Packed)-1] },
		"trailing bytes":     func(d *Trace) { d.Analysis.Packed = append(append([]byte(nil), d.Analysis.Packed...), 0) },
		"count beyond bytes": func(d *Trace) { d.Analysis.Packed = []byte{packedVersion, 200, 1} },
	}
	for name, mutate := range cases {
		d := good
		d.OperationStats = append([]byte(nil), good.OperationStats...)
		mutate(&d)
		if err := d.Expand(); err == nil || !strings.Contains(err.Error(), good.TraceID) {
			t.Errorf("%s: Expand() = %v, want an error naming the trace", name, err)
		}
	}
}

// FuzzExpand: no stored summary makes Expand panic, and a compact summary
// that expands compacts to the same document again.
func FuzzExpand(f *testing.F) {
	s, a := traceCase()
	d := FromDomainTrace(&s, &a)
	d.Compact()
	f.Add(d.Analysis.Packed, d.OperationStats)
	f.Add([]byte{packedVersion, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, packed, stats []byte) {
		d := Trace{TraceID: "t", Analysis: Analysis{Packed: packed}, OperationStats: stats}
		if err := d.Expand(); err != nil {
			return
		}
		before, _ := json.Marshal(d)
		d.Compact()
		if err := d.Expand(); err != nil {
			t.Fatalf("expanded summary does not expand again: %v", err)
		}
		after, _ := json.Marshal(d)
		if string(before) != string(after) {
			t.Fatalf("compact and expand changed the summary:\n%s\n%s", before, after)
		}
	})
}
