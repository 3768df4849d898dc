//go:build unix

package testenv

import (
	"syscall"
	"time"
)

// SelfUsage reads this process's Usage (zero if getrusage fails).
func SelfUsage() Usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return Usage{}
	}
	return Usage{User: time.Duration(ru.Utime.Nano()), Sys: time.Duration(ru.Stime.Nano()), MinorFaults: int64(ru.Minflt)}
}
