package validate

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// documentedFlags reads the flag tables of docs/configuration.md, which TestConfigurationDoc in each cmd package
// generates from the binaries' own flag sets (and fails on when they differ): binary (table name) -> flag names.
func documentedFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "docs/configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	start := regexp.MustCompile(`^<!-- flags: (\S+) -->$`)
	row := regexp.MustCompile("^\\| `--([a-z0-9.-]+)` \\|")
	out := map[string]map[string]bool{}
	var cur map[string]bool
	for _, line := range strings.Split(string(b), "\n") {
		if m := start.FindStringSubmatch(line); m != nil {
			cur = map[string]bool{}
			out[m[1]] = cur
			continue
		}
		if strings.HasPrefix(line, "<!-- end flags:") {
			cur = nil
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil && cur != nil {
			cur[m[1]] = true
		}
	}
	if len(out) == 0 {
		t.Fatal("docs/configuration.md: no flag tables (<!-- flags: NAME --> ... <!-- end flags: NAME -->)")
	}
	return out
}

// checkArgs reports every --flag of args that binary does not have.
func checkArgs(t *testing.T, where, binary string, args []string, docs map[string]map[string]bool) {
	t.Helper()
	table := binary
	if binary == "tracepipe" {
		if len(args) < 2 || args[0] != "query" || args[1] != "serve" {
			t.Errorf("%s: tracepipe %v: only `tracepipe query serve` is expected here", where, args)
			return
		}
		table, args = "tracepipe-query", args[2:]
	}
	flags, ok := docs[table]
	if !ok {
		t.Errorf("%s: docs/configuration.md has no flag table of %s", where, table)
		return
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		// query serve's own flags (the tables list the backend flags every query command shares).
		if table == "tracepipe-query" && (name == "listen" || name == "jaeger-ui-url") {
			continue
		}
		if !flags[name] {
			t.Errorf("%s: %s has no flag --%s (docs/configuration.md)", where, binary, name)
		}
	}
}

// TestDeployFlagsExist: every flag the compose file and the Kubernetes manifests pass is a flag of that binary.
func TestDeployFlagsExist(t *testing.T) {
	docs := documentedFlags(t)
	p := loadCompose(t)
	for name, s := range p.Services {
		if s.Build == nil || s.Build.Args["CMD"] == nil {
			continue
		}
		checkArgs(t, "compose service "+name, *s.Build.Args["CMD"], s.Command, docs)
	}
	for _, dir := range kustomizations {
		o := build(t, dir)
		for _, d := range o.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				img := c.Image[strings.LastIndex(c.Image, "/")+1:]
				binary, _, _ := strings.Cut(img, ":")
				checkArgs(t, dir+" Deployment "+d.Name, binary, c.Args, docs)
			}
		}
	}
}
