//go:build !unix

package dirlock

import (
	"errors"
	"os"
)

// Without flock the lock is not taken (advisory locking is unix-only here).
var errWouldBlock = errors.New("would block")

func lockFile(*os.File) error   { return nil }
func unlockFile(*os.File) error { return nil }
