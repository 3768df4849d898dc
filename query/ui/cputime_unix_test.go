//go:build unix

package ui

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) the process used so far:
// on a loaded machine it measures a page's work better than the wall clock.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
