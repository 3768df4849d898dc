package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version describes this build: the module version (a tag, a pseudo-version
// for a commit, or "(devel)" for a build from a working tree), the VCS
// revision and whether the tree was modified, and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "tracepipe (unknown version) " + runtime.Version()
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	out := fmt.Sprintf("tracepipe %s", v)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += fmt.Sprintf(" (commit %s%s)", rev, modified)
	}
	return out + " " + bi.GoVersion
}
