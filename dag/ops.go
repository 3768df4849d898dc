package dag

import (
	"cmp"
	"slices"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// operations sums the spans of each (service, operation) and returns a fresh
// slice ordered by critical-path time descending, then self time descending,
// then service and operation. Durations are the analysis durations (absurd
// ones count as 0), so Self <= Duration for every summary.
func (a *Analyzer) operations() []model.OperationSummary {
	if a.opIndex == nil {
		a.opIndex = make(map[model.OperationKey]int32)
	}
	ops := a.ops[:0]
	for i, s := range a.spans {
		key := model.OperationKey{Service: s.Process.ServiceName, Operation: s.Operation}
		k, ok := a.opIndex[key]
		if !ok {
			k = int32(len(ops))
			a.opIndex[key] = k
			ops = append(ops, model.OperationSummary{OperationKey: key})
		}
		o := &ops[k]
		o.Count++
		if s.IsError() {
			o.Errors++
		}
		o.Duration = time.Duration(addSat(int64(o.Duration), a.end[i]-a.start[i]))
		o.Self = time.Duration(addSat(int64(o.Self), a.self[i]))
		o.CriticalPath = time.Duration(addSat(int64(o.CriticalPath), a.cp[i]))
	}
	a.ops = ops
	// Sort compact keys rather than the large summaries.
	keys := grow(a.opKeys, len(ops))
	for k := range ops {
		keys[k] = opKey{cp: ops[k].CriticalPath, self: ops[k].Self, idx: int32(k)}
	}
	slices.SortFunc(keys, func(x, y opKey) int {
		if x.cp != y.cp {
			return cmp.Compare(y.cp, x.cp)
		}
		if x.self != y.self {
			return cmp.Compare(y.self, x.self)
		}
		return compareOps(ops[x.idx], ops[y.idx])
	})
	a.opKeys = keys
	out := make([]model.OperationSummary, len(ops))
	for k, key := range keys {
		out[k] = ops[key.idx]
	}
	return out
}

type opKey struct {
	cp, self time.Duration
	idx      int32
}

func compareOps(x, y model.OperationSummary) int {
	if x.CriticalPath != y.CriticalPath {
		return cmp.Compare(y.CriticalPath, x.CriticalPath)
	}
	if x.Self != y.Self {
		return cmp.Compare(y.Self, x.Self)
	}
	if c := cmp.Compare(x.Service, y.Service); c != 0 {
		return c
	}
	return cmp.Compare(x.Operation, y.Operation)
}
