package dbmodel

import (
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Dependencies is Jaeger's dependency-link document (jaeger-dependencies-*
// indices, what Jaeger's spark-dependencies job writes and Jaeger Query's
// /api/dependencies reads for the UI's System Architecture view). tracepipe
// writes one per day and service edge, from the daily edge rollup: Jaeger
// Query concatenates the links of every document in range.
type Dependencies struct {
	Timestamp    time.Time        `json:"timestamp"`
	Dependencies []DependencyLink `json:"dependencies"`
}

// DependencyLink is one caller → callee link with its call count.
type DependencyLink struct {
	Parent    string `json:"parent"`
	Child     string `json:"child"`
	CallCount uint64 `json:"callCount"`
	Source    string `json:"source,omitempty"`
}

// DependencySource marks the links tracepipe wrote.
const DependencySource = "tracepipe"

// FromDomainDependency converts a daily edge rollup into Jaeger's document:
// its window start as the timestamp, and its link; a retracted edge (no
// calls) has no link, so the document adds nothing when Jaeger reads it.
func FromDomainDependency(e *model.EdgeRollup) Dependencies {
	d := Dependencies{Timestamp: e.WindowStart.Time().UTC(), Dependencies: []DependencyLink{}}
	if e.Calls > 0 {
		d.Dependencies = append(d.Dependencies, DependencyLink{Parent: e.Caller, Child: e.Callee, CallCount: uint64(e.Calls), Source: DependencySource})
	}
	return d
}
