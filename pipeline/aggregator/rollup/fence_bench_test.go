package rollup

import "testing"

// BenchmarkReducerTakeover is BenchmarkReducer for a reducer that took its
// partition over: every partial is below its barrier, so it fences off a
// predecessor (ghost keys for every key read; outputs versioned at the
// barrier) — the worst case, as in a fresh-group replay.
func BenchmarkReducerTakeover(b *testing.B) { benchReducer(b, true) }
