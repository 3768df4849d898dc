package embedded

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
)

// scanPage bounds the documents EachRollup and EachEdgeRollup hold at once.
const scanPage = 500

// EachRollup calls fn with every stored rollup whose window starts in
// [start, end), in pages of at most 500, ordered by window start and ID
// (`tracepipe replay` reads its staging store so), with their stored
// versions.
func (s *Store) EachRollup(ctx context.Context, start, end model.Timestamp, fn func([]model.Rollup) error) error {
	return eachPage(ctx, s, "rollups", start, end, func(doc []byte, version int64) (model.Rollup, error) {
		var d dbmodel.Rollup
		if err := json.Unmarshal(doc, &d); err != nil {
			return model.Rollup{}, err
		}
		r, err := d.ToDomain()
		r.Version = version
		return r, err
	}, fn)
}

// EachEdgeRollup is EachRollup for service-edge rollups.
func (s *Store) EachEdgeRollup(ctx context.Context, start, end model.Timestamp, fn func([]model.EdgeRollup) error) error {
	return eachPage(ctx, s, "edge_rollups", start, end, func(doc []byte, version int64) (model.EdgeRollup, error) {
		var d dbmodel.EdgeRollup
		if err := json.Unmarshal(doc, &d); err != nil {
			return model.EdgeRollup{}, err
		}
		e, err := d.ToDomain()
		e.Version = version
		return e, err
	}, fn)
}

// eachPage pages through table by (window_start, id), keyset-style, so no
// page holds a read transaction open while fn runs.
func eachPage[T any](ctx context.Context, s *Store, table string, start, end model.Timestamp, decode func(doc []byte, version int64) (T, error), fn func([]T) error) error {
	lastStart, lastID := int64(start)-1, ""
	for {
		rows, err := s.r.QueryContext(ctx, `SELECT window_start, id, doc, version FROM `+table+`
			WHERE (window_start > ? OR (window_start = ? AND id > ?)) AND window_start < ?
			ORDER BY window_start, id LIMIT ?`, lastStart, lastStart, lastID, int64(end), scanPage)
		if err != nil {
			return fmt.Errorf("scan %s: %w", table, err)
		}
		page := make([]T, 0, scanPage)
		for rows.Next() {
			var doc []byte
			var version int64
			if err := rows.Scan(&lastStart, &lastID, &doc, &version); err != nil {
				rows.Close()
				return fmt.Errorf("scan %s: %w", table, err)
			}
			v, err := decode(doc, version)
			if err != nil {
				rows.Close()
				return fmt.Errorf("scan %s: decode %s: %w", table, lastID, err)
			}
			page = append(page, v)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("scan %s: %w", table, err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		if len(page) < scanPage {
			return nil
		}
	}
}
