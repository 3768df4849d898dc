package procset

import (
	"testing"

	"github.com/tracepipe/tracepipe/model"
)

func TestSet(t *testing.T) {
	a := model.Process{ServiceName: "a", Tags: model.KeyValues{model.String("host", "1")}}
	a2 := model.Process{ServiceName: "a", Tags: model.KeyValues{model.String("host", "1")}}
	b := model.Process{ServiceName: "a", Tags: model.KeyValues{model.String("host", "2")}}
	c := model.Process{ServiceName: "a", Tags: model.KeyValues{model.Binary("host", []byte("1"))}}
	s := New()
	for _, step := range []struct {
		p     *model.Process
		index int
		added bool
	}{{&a, 0, true}, {&a2, 0, false}, {&b, 1, true}, {&a, 0, false}, {&c, 2, true}, {&b, 1, false}} {
		i, added := s.Add(step.p)
		if i != step.index || added != step.added {
			t.Fatalf("Add(%+v) = %d, %v; want %d, %v", *step.p, i, added, step.index, step.added)
		}
	}
	if s.Len() != 3 || s.Get(1) != &b {
		t.Fatal(s.Len())
	}
}

// BenchmarkAddDistinct shows Add stays linear with many distinct processes.
func BenchmarkAddDistinct(b *testing.B) {
	procs := make([]model.Process, 10000)
	for i := range procs {
		procs[i] = model.Process{ServiceName: "svc", Tags: model.KeyValues{model.Int64("pid", int64(i))}}
	}
	b.ReportAllocs()
	for b.Loop() {
		s := New()
		for i := range procs {
			s.Add(&procs[i])
		}
	}
}
