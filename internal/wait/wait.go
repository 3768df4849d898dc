// Package wait is the one way tracepipe's stages pause between retries: a
// sleep that ends early when its context does.
package wait

import (
	"context"
	"time"
)

// Sleep waits d and reports true, or reports false as soon as ctx is done.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
