package testenv

import "time"

// Usage is what the kernel counts of this process so far (getrusage): its
// user and system CPU time and minor page faults. Benchmarks measure spans
// per CPU-second with it, which other load on the machine does not change
// as it changes wall time.
type Usage struct {
	User, Sys   time.Duration
	MinorFaults int64
}

// CPU is the user and system CPU time together.
func (u Usage) CPU() time.Duration { return u.User + u.Sys }

// Sub is what was used between earlier and u.
func (u Usage) Sub(earlier Usage) Usage {
	return Usage{User: u.User - earlier.User, Sys: u.Sys - earlier.Sys, MinorFaults: u.MinorFaults - earlier.MinorFaults}
}
