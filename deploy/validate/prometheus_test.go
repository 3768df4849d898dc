package validate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestComposePrometheusConfig: promtool (the one deploy/local/services.sh installs) accepts the compose file's
// prometheus.yml, with its rule glob pointed at deploy/prometheus as the container mounts it, and loads the rules.
func TestComposePrometheusConfig(t *testing.T) {
	promtool := os.Getenv("TRACEPIPE_PROMTOOL")
	if promtool == "" {
		promtool, _ = exec.LookPath("promtool")
	}
	if promtool == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (TRACEPIPE_PROMTOOL unset, none on PATH); make check installs it")
		}
		t.Skip("promtool not found: `bash deploy/local/services.sh up prometheus` installs it")
	}
	b, err := os.ReadFile(filepath.Join(repo, "deploy/compose/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs(filepath.Join(repo, "deploy/prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), "/etc/prometheus/rules/", rules+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") || !strings.Contains(string(out), "rules found") {
		t.Errorf("promtool check config loaded no rules:\n%s", out)
	}
}
