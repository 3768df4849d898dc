package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// ServiceReader lists what a store holds, for the web UI's services page and
// `tracepipe query services`.
type ServiceReader interface {
	// Services returns every service of the stored spans with its
	// operations, services and operations sorted by name. It returns at most
	// model.MaxServiceOperations (service, operation) pairs, the first in that
	// order, and truncated reports that more are stored.
	Services(ctx context.Context) (services []model.ServiceOperations, truncated bool, err error)
	// EdgeRollups returns the stored edge rollups of every caller → callee
	// pair at resolution res whose window started in [start, end) (zero:
	// unbounded), ordered by caller, callee and window start, at most limit
	// of them (1..model.MaxLimit), retractions (Calls == 0) included. Bad
	// arguments are an error wrapping model.ErrBadQuery.
	EdgeRollups(ctx context.Context, res time.Duration, start, end model.Timestamp, limit int) ([]model.EdgeRollup, error)
}

// CheckEdgeRollupsQuery validates the arguments of EdgeRollups.
func CheckEdgeRollupsQuery(res time.Duration, start, end model.Timestamp, limit int) error {
	if err := CheckEdgeQuery(res, start, end); err != nil {
		return err
	}
	if limit < 1 || limit > model.MaxLimit {
		return fmt.Errorf("%w: limit %d is outside [1, %d]", model.ErrBadQuery, limit, model.MaxLimit)
	}
	return nil
}

// GroupServices turns (service, operation) pairs sorted by service then
// operation into ServiceOperations, keeping the first
// model.MaxServiceOperations pairs; truncated reports that pairs held more
// (a store reads at most one pair past the bound to know).
func GroupServices(pairs [][2]string) (services []model.ServiceOperations, truncated bool) {
	if truncated = len(pairs) > model.MaxServiceOperations; truncated {
		pairs = pairs[:model.MaxServiceOperations]
	}
	out := []model.ServiceOperations{}
	for _, p := range pairs {
		if n := len(out); n == 0 || out[n-1].Service != p[0] {
			out = append(out, model.ServiceOperations{Service: p[0], Operations: []string{}})
		}
		o := &out[len(out)-1]
		o.Operations = append(o.Operations, p[1])
	}
	return out, truncated
}
