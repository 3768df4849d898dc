package rollup

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// The oracle computes the expected rollups by brute force, independently of
// the package's incremental machinery: take the latest version of every
// trace, put it in its window at each resolution, compute every statistic
// from the raw values, and apply the cardinality limit to the whole window.

type outKey struct {
	res time.Duration
	win model.Timestamp
	key Key
}

func (k outKey) String() string {
	return fmt.Sprintf("%s@%s %v/%s/%s/%s %q", model.ResolutionName(k.res), k.win.Time().Format("15:04:05"), k.key.Edge, k.key.Service, k.key.Operation, k.key.Kind, dimValues(k.key.Dims, nil))
}

type oracleStats struct {
	Stats
	durs, selfs, cps []int64
}

func latestVersions(msgs []*model.AssembledTrace) map[model.TraceID]*model.AssembledTrace {
	latest := map[model.TraceID]*model.AssembledTrace{}
	for _, at := range msgs {
		if !valid(at) {
			continue
		}
		id := traceIDOf(at)
		if cur := latest[id]; cur == nil || at.Version > cur.Version {
			latest[id] = at
		}
	}
	return latest
}

func oracleDimValue(sp *model.Span, name string) string {
	for _, kv := range sp.Tags {
		if kv.Key == name {
			return kv.AsString()
		}
	}
	for _, kv := range sp.Process.Tags {
		if kv.Key == name {
			return kv.AsString()
		}
	}
	return ""
}

func oracle(cfg Config, msgs []*model.AssembledTrace) map[outKey]*oracleStats {
	cfg = cfg.Normalized()
	raw := map[outKey]*oracleStats{}
	for id, at := range latestVersions(msgs) {
		for _, res := range cfg.Resolutions() {
			win := windowOf(at.Analysis.Start, res)
			type cand struct{ dur, start int64 }
			best := map[Key]cand{}
			seen := map[Key]bool{}
			byID := map[model.SpanID]*model.Span{}
			for _, sp := range at.Trace.Spans {
				byID[sp.SpanID] = sp
			}
			add := func(k Key, sp *model.Span, self, cp int64, edge bool) {
				ok := outKey{res, win, k}
				s := raw[ok]
				if s == nil {
					s = &oracleStats{}
					raw[ok] = s
				}
				d := max(0, int64(sp.Duration))
				s.Count++
				if sp.Status == model.StatusError {
					s.Errors++
				}
				s.durs = append(s.durs, d)
				if !edge {
					s.selfs = append(s.selfs, max(0, self))
					s.cps = append(s.cps, max(0, cp))
					if !seen[k] {
						s.TraceDuration += max(0, int64(at.Analysis.Duration))
					}
				}
				seen[k] = true
				if c, ok := best[k]; !ok || d > c.dur || d == c.dur && int64(sp.Start) < c.start {
					best[k] = cand{d, int64(sp.Start)}
				}
			}
			for i, sp := range at.Trace.Spans {
				vals := make([]string, len(cfg.Dimensions))
				for j, d := range cfg.Dimensions {
					vals[j] = oracleDimValue(sp, d)
				}
				k := Key{Family: Family{Service: sp.Process.ServiceName, Operation: sp.Operation, Kind: sp.Kind}, Dims: encodeDims(vals)}
				add(k, sp, int64(at.Analysis.Spans[i].Self), int64(at.Analysis.Spans[i].CriticalPath), false)
				if cfg.NoEdges {
					continue
				}
				var parent *model.Span
				for _, r := range sp.References {
					if r.Type == model.ChildOf && r.TraceID == sp.TraceID {
						parent = byID[r.SpanID]
						break
					}
				}
				if parent == nil {
					for _, r := range sp.References {
						if r.TraceID == sp.TraceID {
							parent = byID[r.SpanID]
							break
						}
					}
				}
				if parent != nil && parent.Process.ServiceName != sp.Process.ServiceName {
					add(Key{Family: Family{Edge: true, Service: parent.Process.ServiceName, Operation: sp.Process.ServiceName}}, sp, 0, 0, true)
				}
			}
			for k, c := range best {
				s := raw[outKey{res, win, k}]
				s.Exemplars = append(s.Exemplars, model.Exemplar{TraceID: id, Duration: time.Duration(c.dur), Start: model.Timestamp(c.start)})
			}
		}
	}
	// Cardinality limit per (resolution, window, family): per dimension the
	// limit values with the smallest (FNV-1a hash, value) keep their keys.
	type famWin struct {
		res time.Duration
		win model.Timestamp
		fam Family
	}
	groups := map[famWin][]outKey{}
	for k := range raw {
		fw := famWin{k.res, k.win, k.key.Family}
		groups[fw] = append(groups[fw], k)
	}
	out := map[outKey]*oracleStats{}
	for fw, keys := range groups {
		admit := make([]map[string]bool, len(cfg.Dimensions))
		for d := range cfg.Dimensions {
			set := map[string]bool{}
			for _, k := range keys {
				if k.key.Edge {
					continue
				}
				if v := dimValues(k.key.Dims, nil)[d]; v != "" && v != Overflow {
					set[v] = true
				}
			}
			vs := make([]string, 0, len(set))
			for v := range set {
				vs = append(vs, v)
			}
			h := func(v string) uint64 { f := fnv.New64a(); f.Write([]byte(v)); return f.Sum64() }
			sort.Slice(vs, func(i, j int) bool {
				if h(vs[i]) != h(vs[j]) {
					return h(vs[i]) < h(vs[j])
				}
				return vs[i] < vs[j]
			})
			admit[d] = map[string]bool{"": true}
			for i, v := range vs {
				if i < cfg.DimensionLimit {
					admit[d][v] = true
				}
			}
		}
		for _, k := range keys {
			fk := k
			if !k.key.Edge && len(cfg.Dimensions) > 0 {
				vals := dimValues(k.key.Dims, nil)
				for d := range vals {
					if !admit[d][vals[d]] {
						vals[d] = Overflow
					}
				}
				fk.key.Dims = encodeDims(vals)
			}
			s := raw[k]
			t := out[fk]
			if t == nil {
				t = &oracleStats{}
				out[fk] = t
			}
			t.Count += s.Count
			t.Errors += s.Errors
			t.TraceDuration += s.TraceDuration
			t.durs = append(t.durs, s.durs...)
			t.selfs = append(t.selfs, s.selfs...)
			t.cps = append(t.cps, s.cps...)
			t.Exemplars = append(t.Exemplars, s.Exemplars...)
		}
		_ = fw
	}
	for _, s := range out {
		for _, p := range []struct {
			d  *Dist
			vs []int64
		}{{&s.Duration, s.durs}, {&s.Self, s.selfs}, {&s.CriticalPath, s.cps}} {
			for _, v := range p.vs {
				p.d.Sum += v
				p.d.Max = max(p.d.Max, v)
				p.d.Sketch.Add(v)
			}
			slices.Sort(p.vs)
		}
		sort.Slice(s.Exemplars, func(i, j int) bool { return exemplarLess(&s.Exemplars[i], &s.Exemplars[j]) })
		if len(s.Exemplars) > cfg.Exemplars {
			s.Exemplars = s.Exemplars[:cfg.Exemplars]
		}
	}
	return out
}

// store is an in-memory rollup sink: the latest write per key wins, as
// with deterministic document IDs. It is also the reducers' ChildSource.
type store struct {
	m      map[outKey]Output
	byFam  map[storeKey]map[outKey]bool
	writes int
	stale  int // writes rejected for an older version
}

type storeKey struct {
	res time.Duration
	fam Family
}

func newStore() *store { return &store{m: map[outKey]Output{}, byFam: map[storeKey]map[outKey]bool{}} }

func (s *store) write(os []Output) {
	for _, o := range os {
		k := outKey{o.Resolution, o.Window, o.Key}
		// Like both stores: an older version loses (an equal one replaces).
		if old, ok := s.m[k]; ok && o.Version < old.Version {
			s.stale++
			continue
		}
		s.m[k] = o
		rf := storeKey{o.Resolution, o.Key.Family}
		if s.byFam[rf] == nil {
			s.byFam[rf] = map[outKey]bool{}
		}
		s.byFam[rf][k] = true
		s.writes++
	}
}

func (s *store) Children(_ context.Context, res time.Duration, fam Family, from, to model.Timestamp) ([]Output, error) {
	var out []Output
	for k := range s.byFam[storeKey{res, fam}] {
		if k.win >= from && k.win < to {
			out = append(out, s.m[k])
		}
	}
	return out, nil
}

// compare checks the stored rollups against the oracle: counts, sums,
// maxima and exemplars exactly; sketches bin for bin; quantiles within the
// sketch's accuracy of the exact ones.
func compare(t *testing.T, label string, want map[outKey]*oracleStats, got *store) {
	t.Helper()
	var errs []string
	for k, w := range want {
		o, ok := got.m[k]
		if !ok {
			errs = append(errs, fmt.Sprintf("missing %v (count %d)", k, w.Count))
			continue
		}
		g := &o.Stats
		if g.Count != w.Count || g.Errors != w.Errors || g.TraceDuration != w.TraceDuration {
			errs = append(errs, fmt.Sprintf("%v: count/errors/traceDur %d/%d/%d, want %d/%d/%d", k, g.Count, g.Errors, g.TraceDuration, w.Count, w.Errors, w.TraceDuration))
			continue
		}
		for i, p := range []struct {
			g, w *Dist
			vs   []int64
		}{{&g.Duration, &w.Duration, w.durs}, {&g.Self, &w.Self, w.selfs}, {&g.CriticalPath, &w.CriticalPath, w.cps}} {
			if p.g.Sum != p.w.Sum || p.g.Max != p.w.Max || !p.g.Sketch.Equal(&p.w.Sketch) {
				errs = append(errs, fmt.Sprintf("%v: dist %d: sum %d max %d, want %d %d (sketch equal %v)", k, i, p.g.Sum, p.g.Max, p.w.Sum, p.w.Max, p.g.Sketch.Equal(&p.w.Sketch)))
				continue
			}
			for _, q := range []float64{0.5, 0.9, 0.95, 0.99} {
				if len(p.vs) > 0 && !withinAccuracy(p.g.Sketch.Quantile(q), exactQuantile(p.vs, q)) {
					errs = append(errs, fmt.Sprintf("%v: dist %d q%v: %d vs exact %d", k, i, q, p.g.Sketch.Quantile(q), exactQuantile(p.vs, q)))
				}
			}
		}
		if !slices.Equal(g.Exemplars, w.Exemplars) {
			errs = append(errs, fmt.Sprintf("%v: exemplars %v, want %v", k, g.Exemplars, w.Exemplars))
		}
	}
	for k, o := range got.m {
		if want[k] == nil && !o.Stats.IsZero() {
			errs = append(errs, fmt.Sprintf("unexpected %v (count %d)", k, o.Stats.Count))
		}
	}
	if len(errs) > 0 {
		byRes := map[string]int{}
		for _, e := range errs {
			byRes[strings.SplitN(e, "@", 2)[0]]++
		}
		sort.Strings(errs)
		errs = append([]string{fmt.Sprintf("differences per resolution: %v", byRes)}, errs...)
		if len(errs) > 15 && !testing.Verbose() {
			errs = append(errs[:15], fmt.Sprintf("... and %d more", len(errs)-15))
		}
		t.Fatalf("%s: %d rollups expected, %d stored; differences:\n%s", label, len(want), len(got.m), strings.Join(errs, "\n"))
	}
}
