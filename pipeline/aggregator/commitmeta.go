package aggregator

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

// What a stage commits for a partition (issue #14). The offset committed to
// the group is the processed position: the partition's high-water mark, the
// offset below which every message was processed and everything derived
// from it is published (map) or written (reduce) — so the lag that
// kafka-consumer-groups and lag exporters compute (log end − committed)
// returns to 0 once the stage has caught up. A successor must nevertheless
// re-read from the first message of the oldest window still in memory (the
// rollup.Commit's offset, below the processed position while windows are
// open): that re-read start travels in the commit metadata, before the
// checkpoint itself:
//
//	from=<re-read start>;<checkpoint>
//
// A checkpoint (base64url) never contains '=' or ';', so metadata without
// the prefix is a commit of an earlier version, whose offset was the
// re-read start itself; it is still read.

const resumePrefix = "from="

// errCommitMeta reports commit metadata that is not the aggregator's.
var errCommitMeta = errors.New("malformed commit metadata")

// encodeCommit returns what to commit for c, a checkpoint taken when every
// offset below processed was processed (processed is at least c.Offset).
func encodeCommit(c rollup.Commit, processed int64) tpkafka.Commit {
	return tpkafka.Commit{
		Offset:   max(processed, c.Offset),
		Metadata: resumePrefix + strconv.FormatInt(c.Offset, 10) + ";" + string(c.Metadata),
	}
}

// decodeCommit returns the checkpoint a successor restores from: the
// re-read start and the checkpoint metadata. Metadata of an earlier version
// (no re-read start) is returned with the committed offset as its start.
func decodeCommit(gc tpkafka.Commit) (rollup.Commit, error) {
	rest, ok := strings.CutPrefix(gc.Metadata, resumePrefix)
	if !ok {
		return rollup.Commit{Offset: gc.Offset, Metadata: []byte(gc.Metadata)}, nil
	}
	num, ck, ok := strings.Cut(rest, ";")
	if !ok {
		return rollup.Commit{}, fmt.Errorf("%w: no ';' after the re-read start", errCommitMeta)
	}
	from, err := strconv.ParseInt(num, 10, 64)
	if err != nil || from < 0 || strconv.FormatInt(from, 10) != num {
		return rollup.Commit{}, fmt.Errorf("%w: re-read start %q", errCommitMeta, num)
	}
	if from > gc.Offset {
		return rollup.Commit{}, fmt.Errorf("%w: re-read start %d after the committed offset %d", errCommitMeta, from, gc.Offset)
	}
	if ck == "" {
		return rollup.Commit{}, fmt.Errorf("%w: no checkpoint", errCommitMeta)
	}
	return rollup.Commit{Offset: from, Metadata: []byte(ck)}, nil
}
