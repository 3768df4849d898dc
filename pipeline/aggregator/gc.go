package aggregator

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// GCPercent is the GOGC that TuneGC sets.
const GCPercent = 400

// cgroupMemoryMax is the cgroup v2 file holding the memory limit of the
// process's container ("max" without one).
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// TuneGC trades memory for CPU, as cmd/aggregator does at start, unless the
// operator set GOGC or GOMEMLIMIT (lookup reads the environment; nil means
// os.LookupEnv). The heap may grow to 5× the live data between collections
// (GOGC=400): most of what the stages allocate (decoded traces, partial and
// rollup encodings) is garbage within a message or a flush, while the live
// data (resident windows, reducer state) changes slowly, so each collection
// costs CPU and frees little (the end-to-end benchmark used 15-25% more CPU
// with Go's default, GOGC=100). In a container with a memory limit
// (memMax; nil reads cgroup v2's memory.max), a soft memory limit of 3/4 of it
// makes the collector run earlier rather than let the heap reach it. It
// returns what it set (limit 0: none) and whether it set anything. The
// settings are process-wide.
func TuneGC(lookup func(string) (string, bool), memMax func() (int64, bool)) (gogc int, limit int64, ok bool) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if memMax == nil {
		memMax = cgroupMemoryLimit
	}
	if _, set := lookup("GOGC"); set {
		return 0, 0, false
	}
	if _, set := lookup("GOMEMLIMIT"); set {
		return 0, 0, false
	}
	if m, ok := memMax(); ok && m > 0 {
		limit = m / 4 * 3
		debug.SetMemoryLimit(limit)
	}
	debug.SetGCPercent(GCPercent)
	return GCPercent, limit, true
}

// cgroupMemoryLimit reads the container's memory limit from cgroup v2
// (false without a limit or without cgroup v2).
func cgroupMemoryLimit() (int64, bool) {
	b, err := os.ReadFile(cgroupMemoryMax)
	if err != nil {
		return 0, false
	}
	return parseMemoryMax(string(b))
}

// parseMemoryMax reads memory.max: a byte count, or "max" for none.
func parseMemoryMax(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
