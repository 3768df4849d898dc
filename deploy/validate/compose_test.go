package validate

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

const composeFile = "deploy/compose/compose.yaml"

// loadCompose loads the compose file as `docker compose config` would, with an empty environment (every default
// of the file applies): compose-go validates it against the compose-spec JSON schema, interpolates, merges the
// YAML anchors and resolves relative paths against the file's directory.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(repo, composeFile))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{path}, cli.WithWorkingDirectory(filepath.Dir(path)), cli.WithEnv(nil),
		cli.WithInterpolation(true), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return p
}

func TestComposeLoads(t *testing.T) {
	p := loadCompose(t)
	if p.Name != "tracepipe" {
		t.Errorf("project name %q", p.Name)
	}
	want := []string{"aggregator", "collector", "elasticsearch", "grafana", "indexer", "ingester", "kafka-1", "kafka-2",
		"kafka-3", "prometheus", "query", "topics"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Errorf("services %v, want %v", sorted(got), want)
	}
	for name, n := range map[string]int{"ingester": 2, "aggregator": 2, "indexer": 1, "collector": 1} {
		if s := p.Services[name]; s.GetScale() != n {
			t.Errorf("%s: %d instances, want %d", name, s.GetScale(), n)
		}
	}
}

func TestComposeKafkaCluster(t *testing.T) {
	p := loadCompose(t)
	var voters []string
	ids := map[string]bool{}
	clusterIDs := map[string]bool{}
	for _, name := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		s := p.Services[name]
		env := func(k string) string {
			if v := s.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		id := env("KAFKA_NODE_ID")
		if id == "" || ids[id] {
			t.Errorf("%s: node ID %q missing or repeated", name, id)
		}
		ids[id] = true
		clusterIDs[env("CLUSTER_ID")] = true
		voters = append(voters, id+"@"+name+":9093")
		if env("KAFKA_ADVERTISED_LISTENERS") != "PLAINTEXT://"+name+":9092" {
			t.Errorf("%s: advertises %q, not its own name", name, env("KAFKA_ADVERTISED_LISTENERS"))
		}
		if env("KAFKA_PROCESS_ROLES") != "broker,controller" || env("KAFKA_MIN_INSYNC_REPLICAS") != "2" ||
			env("KAFKA_DEFAULT_REPLICATION_FACTOR") != "3" || env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR") != "3" {
			t.Errorf("%s: want combined broker+controller, replication 3 (offsets too), min ISR 2", name)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s: no healthcheck (the topics one-shot waits for it)", name)
		}
		if len(s.Volumes) != 1 || s.Volumes[0].Type != types.VolumeTypeVolume || s.Volumes[0].Target != env("KAFKA_LOG_DIRS") {
			t.Errorf("%s: its log dirs %q must be on a named volume", name, env("KAFKA_LOG_DIRS"))
		}
	}
	if len(clusterIDs) != 1 {
		t.Errorf("the brokers disagree on the cluster ID: %v", clusterIDs)
	}
	// Kafka's storage format wants a UUID in URL-safe base64 without padding (kafka-storage.sh random-uuid).
	for id := range clusterIDs {
		if b, err := base64.RawURLEncoding.Strict().DecodeString(id); err != nil || len(b) != 16 {
			t.Errorf("CLUSTER_ID %q is not a base64 UUID (%d bytes, %v)", id, len(b), err)
		}
	}
	for _, name := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		if got := *p.Services[name].Environment["KAFKA_CONTROLLER_QUORUM_VOTERS"]; got != strings.Join(voters, ",") {
			t.Errorf("%s: quorum %q, want %q", name, got, strings.Join(voters, ","))
		}
	}
	topics := p.Services["topics"]
	for _, b := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		if d, ok := topics.DependsOn[b]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("topics: must wait for %s to be healthy", b)
		}
	}
	if *topics.Environment["REPLICATION_FACTOR"] != "3" || *topics.Environment["MIN_INSYNC_REPLICAS"] != "2" {
		t.Errorf("topics: want replication factor 3 and min.insync.replicas 2")
	}
	if topics.Restart != "no" {
		t.Errorf("topics: a one-shot must not restart (restart %q)", topics.Restart)
	}
}

// TestComposeStages: every tracepipe stage waits for the topics, listens where Prometheus scrapes it, and is built
// from the one Dockerfile for a binary that exists; every mounted file exists.
func TestComposeStages(t *testing.T) {
	p := loadCompose(t)
	prom := readPrometheusConfig(t)
	binaries := cmdDirs(t)
	imaged := map[string]bool{}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: bind mount source %s: %v", name, v.Source, err)
			}
		}
		if s.Build == nil {
			continue
		}
		if filepath.ToSlash(s.Build.Dockerfile) != "deploy/docker/Dockerfile" {
			t.Errorf("%s: built from %s, not deploy/docker/Dockerfile", name, s.Build.Dockerfile)
		}
		cmd := s.Build.Args["CMD"]
		if cmd == nil || !slices.Contains(binaries, *cmd) {
			t.Errorf("%s: build argument CMD=%v is not a directory of cmd/ (have %v)", name, cmd, binaries)
		} else {
			imaged[*cmd] = true
		}
		if name == "query" {
			continue
		}
		if d, ok := s.DependsOn["topics"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: must wait for the topics one-shot to complete", name)
		}
		// Prometheus scrapes the port of --metrics-addr, under a job of the service's name.
		_, port, _ := strings.Cut(flagValue(s.Command, "metrics-addr"), ":")
		if port == "" || !slices.Contains(prom[name], port) {
			t.Errorf("%s: listens for /metrics on port %q, Prometheus scrapes it at %v", name, port, prom[name])
		}
		if b := flagValue(s.Command, "kafka-brokers"); b != "kafka-1:9092,kafka-2:9092,kafka-3:9092" {
			t.Errorf("%s: --kafka-brokers=%q, want all three brokers", name, b)
		}
	}
	if q := p.Services["query"]; !slices.Contains(prom["query"], "16689") || flagValue(q.Command, "listen") != "0.0.0.0:16689" {
		t.Errorf("query: listens on %q, Prometheus scrapes it at %v", flagValue(q.Command, "listen"), prom["query"])
	}
	for _, b := range binaries {
		if !imaged[b] {
			t.Errorf("cmd/%s has no image in %s", b, composeFile)
		}
	}
	if agg := p.Services["aggregator"]; flagValue(agg.Command, "index-traces") != "false" {
		t.Errorf("aggregator: with an indexer of its own, --index-traces=false (else traces are indexed twice over)")
	}
}

// readPrometheusConfig returns, per scrape job (without the "tracepipe-" prefix), the ports it scrapes; and checks
// that its rule glob, as mounted, matches rule files and no promtool test file.
func readPrometheusConfig(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "deploy/compose/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `json:"names"`
				Type  string   `json:"type"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		job := strings.TrimPrefix(sc.JobName, "tracepipe-")
		for _, s := range sc.StaticConfigs {
			for _, tg := range s.Targets {
				host, port, _ := strings.Cut(tg, ":")
				if host == job {
					out[job] = append(out[job], port)
				}
			}
		}
		for _, d := range sc.DNSSDConfigs {
			if slices.Contains(d.Names, job) {
				out[job] = append(out[job], strconv.Itoa(d.Port))
			}
		}
	}
	if len(cfg.RuleFiles) != 1 || !strings.HasPrefix(cfg.RuleFiles[0], "/etc/prometheus/rules/") {
		t.Fatalf("rule_files %v: want one glob under /etc/prometheus/rules (deploy/prometheus mounted)", cfg.RuleFiles)
	}
	ms, _ := filepath.Glob(filepath.Join(repo, "deploy/prometheus", strings.TrimPrefix(cfg.RuleFiles[0], "/etc/prometheus/rules/")))
	if len(ms) == 0 {
		t.Errorf("rule_files %s matches no file of deploy/prometheus", cfg.RuleFiles[0])
	}
	for _, m := range ms {
		if strings.HasSuffix(m, ".test.yml") {
			t.Errorf("rule_files %s loads the promtool test %s", cfg.RuleFiles[0], m)
		}
	}
	return out
}

// cmdDirs lists the binaries: the directories of cmd/ with a main package.
func cmdDirs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(repo, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if ms, _ := filepath.Glob(filepath.Join(repo, "cmd", e.Name(), "*.go")); e.IsDir() && len(ms) > 0 {
			out = append(out, e.Name())
		}
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
