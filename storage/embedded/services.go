package embedded

import (
	"context"
	"fmt"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

// Services reads the distinct (service, operation) pairs of the hour
// buckets (see buckets.go), which hold a row per operation and hour with
// stored traces: far fewer rows than trace_ops, and kept equal to the stored
// traces by every write and by retention.
func (s *Store) Services(ctx context.Context) ([]model.ServiceOperations, bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT service, operation FROM op_buckets
		WHERE width = ? AND traces > 0 ORDER BY service, operation LIMIT ?`, int64(time.Hour), model.MaxServiceOperations+1)
	if err != nil {
		return nil, false, fmt.Errorf("services: %w", err)
	}
	defer rows.Close()
	var pairs [][2]string
	for rows.Next() {
		var p [2]string
		if err := rows.Scan(&p[0], &p[1]); err != nil {
			return nil, false, fmt.Errorf("services: %w", err)
		}
		pairs = append(pairs, p)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("services: %w", err)
	}
	services, truncated := storage.GroupServices(pairs)
	return services, truncated, nil
}

// EdgeRollups reads the edge rollups of every pair at one resolution in a
// range, walking the window-start index.
func (s *Store) EdgeRollups(ctx context.Context, res time.Duration, start, end model.Timestamp, limit int) ([]model.EdgeRollup, error) {
	if err := storage.CheckEdgeRollupsQuery(res, start, end, limit); err != nil {
		return nil, err
	}
	query := `SELECT doc FROM edge_rollups WHERE resolution = ?`
	args := []any{int64(res)}
	if start != 0 {
		query, args = query+" AND window_start >= ?", append(args, int64(start))
	}
	if end != 0 {
		query, args = query+" AND window_start < ?", append(args, int64(end))
	}
	return s.queryEdgeRollups(ctx, query+" ORDER BY caller, callee, window_start LIMIT ?", append(args, limit)...)
}
