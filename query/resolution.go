package query

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// UnwrittenResolution explains an empty rollup or edge answer at a
// resolution the aggregator does not write: it returns an error wrapping
// model.ErrBadQuery that names the resolutions it does write (valid), or nil
// when res is one of them or valid is empty (unknown).
func UnwrittenResolution(res time.Duration, valid []time.Duration) error {
	if len(valid) == 0 || slices.Contains(valid, res) {
		return nil
	}
	names := make([]string, len(valid))
	for i, v := range valid {
		names[i] = model.ResolutionName(v)
	}
	return fmt.Errorf("%w: no rollups at resolution %s; the aggregator writes %s (its --window and the coarse resolutions; a deployment with another --window has that one instead of %s)",
		model.ErrBadQuery, model.ResolutionName(res), strings.Join(names, ", "), names[0])
}
