package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/kafka"
)

// stateVersion is the format of the work directory's state file.
const stateVersion = 1

// identity is what makes two replays the same one: a work directory is
// resumed only by a replay with an equal identity.
type identity struct {
	Topic     string        `json:"topic"`
	Traces    bool          `json:"traces"`
	From      time.Time     `json:"from"`
	To        time.Time     `json:"to"`
	EventFrom time.Time     `json:"eventFrom"`
	EventTo   time.Time     `json:"eventTo"`
	Margin    time.Duration `json:"margin"`
	Index     bool          `json:"index"`
	Aggregate bool          `json:"aggregate"`
	// Stats is the aggregator's configuration as text (window,
	// resolutions, dimensions, limits): the staging rollups depend on it.
	Stats string `json:"stats"`
}

// partPlan is one source partition's range and copy position.
type partPlan struct {
	Partition int   `json:"partition"`
	Start     int64 `json:"start"`
	End       int64 `json:"end"`
	// Copied: every record below it is acknowledged by the private broker.
	Copied int64 `json:"copied"`
	// Missing counts offsets of the range deleted by retention before
	// they were read.
	Missing int64 `json:"missing"`
}

// state is the work directory's state.json.
type state struct {
	Version    int        `json:"version"`
	Identity   identity   `json:"identity"`
	Started    time.Time  `json:"started"`
	Partitions []partPlan `json:"partitions"`
}

func (s *state) total() (total, copied int64) {
	for _, p := range s.Partitions {
		total += p.End - p.Start
		copied += p.Copied - p.Start
	}
	return total, copied
}

// plan finds every partition's offsets for [from−margin, to+margin) by
// record timestamp.
func plan(ctx context.Context, admin *kafka.Admin, id identity) ([]partPlan, error) {
	starts, err := admin.OffsetsForTimes(ctx, id.Topic, id.From.Add(-id.Margin))
	if err != nil {
		return nil, err
	}
	ends, err := admin.OffsetsForTimes(ctx, id.Topic, id.To.Add(id.Margin))
	if err != nil {
		return nil, err
	}
	parts := make([]partPlan, 0, len(starts))
	for p, start := range starts {
		end := max(ends[p], start)
		parts = append(parts, partPlan{Partition: p, Start: start, End: end, Copied: start})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Partition < parts[j].Partition })
	return parts, nil
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// loadState reads the work directory's state; ok false when there is none.
func loadState(dir string) (s state, ok bool, err error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return state{}, false, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	if s.Version != stateVersion {
		return state{}, false, fmt.Errorf("%s: format %d, this build reads %d; remove the work directory to start over", statePath(dir), s.Version, stateVersion)
	}
	return s, true, nil
}

// saveState replaces the state file atomically (write, sync, rename).
func saveState(dir string, s state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(dir) + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(dir))
}
