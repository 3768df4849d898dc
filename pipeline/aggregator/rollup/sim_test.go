package rollup

import (
	"context"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// The simulation runs the whole aggregation as the Kafka stage does, with
// the logs in memory: source partitions feeding Partitions, a partials topic
// keyed by family, Reducers writing to a store. It injects the failures the
// design must survive: instances crashing at any point and restarting from
// their last commit (losing unpublished work), zombies that keep publishing
// after their successor started, partials lost before they were published,
// re-emitted and out-of-order versions, and very late traces that force
// rewinds.

type simOpts struct {
	seed             uint64
	sources          int
	reducers         int
	salt             uint64
	batch            int     // max messages per step
	crashRate        float64 // per step, per instance, until maxCrashes
	maxCrashes       int     // 0: 60
	zombieRate       float64 // of crashes, the old instance lingers
	lostRate         float64 // of flushes, the batch is lost (and the instance dies)
	checkpointRate   float64
	flushRate        float64
	freshMapReplay   bool // afterwards, replay every source with a fresh group into the live reducers
	freshFullReplay  bool // afterwards, replay everything into a fresh partials topic and reducers
	shuffleLogs      bool // deliver each partition's messages in a random order
	reduceSourceIdle bool
	lateZombies      bool // zombie reducers live to the end and write last
}

type simSrc struct {
	id     int
	p      *Partition
	commit Commit
	zombie *Partition
}

type simRed struct {
	id     int
	r      *Reducer
	commit Commit
	zombie *zombieRed
}

// zombieRed is a reducer that lost its partition without knowing it (a
// paused process): it may still process partials up to the end of the log
// when it was replaced (it was paused, so it fetched nothing later), flush,
// and write its outputs at any later time, after its successor's writes.
type zombieRed struct {
	r       *Reducer
	limit   int64
	pending [][]Output
}

type partialRec struct {
	m     PartialMessage
	names []string
}

type sim struct {
	t     *testing.T
	cfg   Config
	o     simOpts
	rng   *rand.Rand
	logs  [][]Message
	srcs  []*simSrc
	topic [][]partialRec
	reds  []*simRed
	store *store
	clock model.Timestamp

	crashes, zombies, lost, rewinds, extended int
	zombieWrites                              int
}

func newSim(t *testing.T, cfg Config, logs [][]Message, o simOpts) *sim {
	s := &sim{t: t, cfg: cfg, o: o, rng: rand.New(rand.NewPCG(o.seed, 77)), logs: logs, store: newStore()}
	for i := range logs {
		p, err := NewPartition(cfg, int32(i), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.srcs = append(s.srcs, &simSrc{id: i, p: p})
	}
	s.topic = make([][]partialRec, o.reducers)
	for i := 0; i < o.reducers; i++ {
		s.reds = append(s.reds, &simRed{id: i, r: s.newReducer(0, nil)})
	}
	return s
}

func (s *sim) newReducer(off int64, meta []byte) *Reducer {
	r, err := NewReducer(s.cfg, off, meta)
	if err != nil {
		s.t.Fatal(err)
	}
	if s.o.reduceSourceIdle {
		r.SourceIdle = 1 // sources go idle at once: eviction races ahead, rewinds follow
	}
	return r
}

func (s *sim) feed(p *Partition, log []Message, m Message) {
	for {
		rw, err := p.Add(m)
		if err != nil {
			s.t.Fatal(err)
		}
		if rw == nil {
			return
		}
		s.rewinds++
		p.BeginRewind(rw)
		for _, x := range log[rw.From:rw.To] {
			if err := p.Replay(x); err != nil {
				s.t.Fatal(err)
			}
		}
		p.EndRewind()
	}
}

func (s *sim) watermark() model.Timestamp {
	wm := model.Timestamp(math.MaxInt64)
	for _, src := range s.srcs {
		if src.p.Position() < int64(len(s.logs[src.id])) {
			if m := src.p.MaxEventTime(); m != math.MinInt64 {
				wm = min(wm, m.Add(-s.cfg.Normalized().AllowedLateness))
			} else {
				return math.MinInt64
			}
		}
	}
	return wm
}

func (s *sim) publish(parts []Partial) {
	for _, pt := range parts {
		h := fnv.New64a()
		h.Write(pt.PartitionKey())
		r := int(h.Sum64() % uint64(len(s.topic)))
		// Through the wire form, as in Kafka.
		b := pt.AppendBinary(nil, s.cfg.Dimensions)
		dec, names, err := DecodePartial(b)
		if err != nil {
			s.t.Fatalf("decode own partial: %v", err)
		}
		s.topic[r] = append(s.topic[r], partialRec{PartialMessage{Offset: int64(len(s.topic[r])), Time: s.clock, Partial: dec}, names})
	}
}

// flushSource publishes and maybe checkpoints; it reports false when the
// instance died (lost batch).
func (s *sim) flushSource(src *simSrc, p *Partition, isZombie bool) bool {
	done := p.Position() >= int64(len(s.logs[src.id]))
	parts := p.Collect(FlushPolicy{Watermark: s.watermark(), All: done})
	if !isZombie && len(parts) > 0 && s.crashes < 60 && s.rng.Float64() < s.o.lostRate {
		s.lost++
		s.crashSource(src)
		return false
	}
	s.publish(parts)
	if isZombie {
		return true
	}
	if s.rng.Float64() < s.o.checkpointRate || done {
		// As the map stage: the flush before a checkpoint also publishes
		// the revived windows.
		s.publish(p.Collect(FlushPolicy{Watermark: s.watermark(), All: done, Checkpoint: true}))
		c, err := p.Checkpoint()
		if err == ErrUnpublished {
			return true
		}
		if err != nil {
			s.t.Fatal(err)
		}
		src.commit = c
		p.Committed(c)
	}
	return true
}

// crashNow draws whether an instance dies at this step.
func (s *sim) crashNow() bool {
	budget := s.o.maxCrashes
	if budget == 0 {
		budget = 60
	}
	return s.crashes < budget && s.rng.Float64() < s.o.crashRate
}

func (s *sim) crashSource(src *simSrc) {
	s.crashes++
	if s.rng.Float64() < s.o.zombieRate {
		src.zombie = src.p
		s.zombies++
	}
	p, err := NewPartition(s.cfg, int32(src.id), src.commit.Offset, src.commit.Metadata)
	if err != nil {
		s.t.Fatal(err)
	}
	src.p = p
}

func (s *sim) stepSource(src *simSrc) {
	log := s.logs[src.id]
	if src.zombie != nil {
		// A zombie processes a little more and publishes, then notices it
		// lost the partition.
		for k := 0; k < 1+s.rng.IntN(s.o.batch); k++ {
			if pos := src.zombie.Position(); pos < int64(len(log)) {
				s.feed(src.zombie, log, log[pos])
			}
		}
		s.flushSource(src, src.zombie, true)
		if s.rng.IntN(3) == 0 {
			src.zombie = nil
		}
	}
	if s.crashNow() {
		s.crashSource(src)
		return
	}
	for k := 0; k < 1+s.rng.IntN(s.o.batch); k++ {
		pos := src.p.Position()
		if pos >= int64(len(log)) {
			break
		}
		s.feed(src.p, log, log[pos])
		s.clock = max(s.clock, log[pos].Time)
	}
	if s.rng.Float64() < s.o.flushRate || src.p.Position() >= int64(len(log)) {
		s.flushSource(src, src.p, false)
	}
}

func (s *sim) stepReducer(rd *simRed) {
	log := s.topic[rd.id]
	if z := rd.zombie; z != nil {
		s.stepZombie(rd, z)
	}
	if s.crashNow() {
		s.crashReducer(rd)
		return
	}
	for k := 0; k < 1+s.rng.IntN(4*s.o.batch); k++ {
		pos := rd.r.Position()
		if pos >= int64(len(log)) {
			break
		}
		s.feedReducer(rd.r, log, log[pos])
	}
	if s.rng.Float64() < s.o.flushRate/3 {
		s.flushReducer(rd)
	}
}

func (s *sim) crashReducer(rd *simRed) {
	s.crashes++
	end := int64(len(s.topic[rd.id]))
	if rd.zombie == nil && s.rng.Float64() < s.o.zombieRate {
		rd.zombie = &zombieRed{r: rd.r, limit: end}
		s.zombies++
	}
	rd.r = s.newReducer(rd.commit.Offset, rd.commit.Metadata)
	rd.r.SetBarrier(end)
}

// stepZombie lets a zombie reducer process, flush (outputs held back as by
// a pause before the write), write what it held, or disappear.
func (s *sim) stepZombie(rd *simRed, z *zombieRed) {
	log := s.topic[rd.id]
	switch s.rng.IntN(4) {
	case 0:
		for k := 0; k < 1+s.rng.IntN(4*s.o.batch); k++ {
			if pos := z.r.Position(); pos < z.limit {
				s.feedReducer(z.r, log, log[pos])
			}
		}
	case 1:
		outs, err := z.r.Flush(context.Background(), s.store, s.rng.IntN(2) == 0)
		if err != nil {
			s.t.Fatal(err)
		}
		z.pending = append(z.pending, outs)
	case 2:
		if len(z.pending) > 0 {
			s.store.write(z.pending[0])
			s.zombieWrites += len(z.pending[0])
			z.pending = z.pending[1:]
		}
	default:
		if s.rng.IntN(4) == 0 && !s.o.lateZombies {
			rd.zombie = nil
		}
	}
}

func (s *sim) feedReducer(r *Reducer, log []partialRec, m partialRec) {
	for {
		rw, err := r.Add(m.m, m.names)
		if err != nil {
			s.t.Fatal(err)
		}
		if rw == nil {
			return
		}
		s.rewinds++
		// Like the Kafka stage, widen the rewind with partials that
		// follow (as if already fetched).
		ahead := log[min(len(log), int(m.m.Offset)+1):]
		for _, x := range ahead[:min(len(ahead), s.rng.IntN(30))] {
			if r.Extend(rw, x.m, x.names) {
				s.extended++
			}
		}
		r.BeginRewind(rw)
		for _, x := range log[rw.From:rw.To] {
			if err := r.Replay(x.m, x.names); err != nil {
				s.t.Fatal(err)
			}
		}
		r.EndRewind()
	}
}

func (s *sim) flushReducer(rd *simRed) {
	ck := s.rng.Float64() < s.o.checkpointRate
	outs, err := rd.r.Flush(context.Background(), s.store, ck || s.rng.IntN(5) == 0)
	if err != nil {
		s.t.Fatal(err)
	}
	if len(outs) > 0 && s.crashes < 60 && s.rng.Float64() < s.o.lostRate {
		s.lost++
		s.crashReducer(rd)
		return
	}
	s.store.write(outs)
	if ck {
		c, err := rd.r.Checkpoint(s.clock)
		if err == ErrUnpublished {
			return
		}
		if err != nil {
			s.t.Fatal(err)
		}
		rd.commit = c
	}
}

func (s *sim) busy() bool {
	for _, src := range s.srcs {
		if src.p.Position() < int64(len(s.logs[src.id])) || src.zombie != nil {
			return true
		}
	}
	for _, rd := range s.reds {
		if rd.r.Position() < int64(len(s.topic[rd.id])) {
			return true
		}
	}
	return false
}

// run drives everything to the end of the logs, then drains.
func (s *sim) run() {
	for steps := 0; s.busy(); steps++ {
		if steps > 2_000_000 {
			for _, src := range s.srcs {
				s.t.Logf("source %d: pos %d hw %d len %d commit %d zombie %v", src.id, src.p.Position(), src.p.HighWater(), len(s.logs[src.id]), src.commit.Offset, src.zombie != nil)
			}
			for _, rd := range s.reds {
				s.t.Logf("reducer %d: pos %d hw %d len %d commit %d", rd.id, rd.r.Position(), rd.r.HighWater(), len(s.topic[rd.id]), rd.commit.Offset)
			}
			s.t.Fatal("simulation does not converge")
		}
		if i := s.rng.IntN(len(s.srcs) + len(s.reds)); i < len(s.srcs) {
			s.stepSource(s.srcs[i])
		} else {
			s.stepReducer(s.reds[i-len(s.srcs)])
		}
	}
	// Drain without failures: every source publishes what is left, every
	// reducer consumes and writes everything.
	for _, src := range s.srcs {
		parts := src.p.Collect(FlushPolicy{Watermark: math.MaxInt64, All: true})
		s.publish(parts)
	}
	for _, rd := range s.reds {
		for rd.r.Position() < int64(len(s.topic[rd.id])) {
			s.feedReducer(rd.r, s.topic[rd.id], s.topic[rd.id][rd.r.Position()])
		}
		outs, err := rd.r.Flush(context.Background(), s.store, true)
		if err != nil {
			s.t.Fatal(err)
		}
		s.store.write(outs)
	}
	// Zombie reducers resume after their successors finished: they catch
	// up to where they were replaced, flush, and everything they still
	// held lands last.
	for _, rd := range s.reds {
		z := rd.zombie
		if z == nil {
			continue
		}
		for z.r.Position() < z.limit {
			s.feedReducer(z.r, s.topic[rd.id], s.topic[rd.id][z.r.Position()])
		}
		outs, err := z.r.Flush(context.Background(), s.store, true)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, p := range append(z.pending, outs) {
			s.store.write(p)
			s.zombieWrites += len(p)
		}
		rd.zombie = nil
	}
}

// restartSources starts every source again from offset 0 with a fresh
// group (no checkpoint), as a replay does.
func (s *sim) restartSources() {
	for _, src := range s.srcs {
		p, err := NewPartition(s.cfg, int32(src.id), 0, nil)
		if err != nil {
			s.t.Fatal(err)
		}
		src.p, src.commit, src.zombie = p, Commit{}, nil
	}
}

// restartReducers replays with fresh groups into the same partials topic
// and the kept store: the map stage republishes everything, fresh reducers
// re-read the whole partials topic (versions stay comparable), as
// recomputing into the same indices does.
func (s *sim) restartReducers() {
	s.restartSources()
	for i := range s.topic {
		r := s.newReducer(0, nil)
		r.SetBarrier(int64(len(s.topic[i])))
		s.reds[i] = &simRed{id: i, r: r}
	}
}

// restartAll replays into a fresh partials topic with fresh reducers and an
// empty store (versions of another partials topic are not comparable).
func (s *sim) restartAll() {
	s.restartSources()
	s.store = newStore()
	for i := range s.topic {
		s.topic[i] = nil
		s.reds[i] = &simRed{id: i, r: s.newReducer(0, nil)}
	}
}

func shuffleLogs(rng *rand.Rand, logs [][]Message) {
	for _, l := range logs {
		rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
		for i := range l {
			l[i].Offset = int64(i)
		}
	}
}

func simConfig() Config {
	return Config{
		Window: DefaultWindow, Coarse: []time.Duration{5 * time.Minute, 15 * time.Minute},
		AllowedLateness: 10 * time.Second, Retention: time.Minute, VersionSpread: 2 * time.Minute,
		Dimensions: []string{"shard", "client", "host"}, DimensionLimit: 8, Exemplars: 3,
	}
}
