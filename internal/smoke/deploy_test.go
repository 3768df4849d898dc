package smoke

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/client_golang/prometheus"
)

// The deploy files checked here live two directories up.
const (
	rulesDir      = "../../deploy/prometheus"
	dashboardsDir = "../../deploy/grafana"
	alertsDoc     = "../../docs/alerts.md"
)

func globFiles(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	return files
}

// TestDeployRules runs promtool on every rule file of deploy/prometheus
// (check rules) and on every unit-test file beside them (test rules).
func TestDeployRules(t *testing.T) {
	for _, f := range globFiles(t, filepath.Join(rulesDir, "*-rules.yml")) {
		if out, err := promtool(t, rulesDir, "check", "rules", filepath.Base(f)); err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", f, err, out)
		}
	}
	for _, f := range globFiles(t, filepath.Join(rulesDir, "*.test.yml")) {
		if out, err := promtool(t, rulesDir, "test", "rules", filepath.Base(f)); err != nil || !strings.Contains(out, "SUCCESS") {
			t.Errorf("promtool test rules %s: %v\n%s", f, err, out)
		}
	}
}

// alertRule is what the checks below need of one alerting rule.
type alertRule struct {
	file, name, severity, runbook string
	hasFor                        bool
}

var (
	alertRE    = regexp.MustCompile(`^\s*- alert:\s*(\S+)\s*$`)
	severityRE = regexp.MustCompile(`^\s*severity:\s*(\S+)\s*$`)
	runbookRE  = regexp.MustCompile(`^\s*runbook_url:\s*"?([^"\s]+)"?\s*$`)
	forRE      = regexp.MustCompile(`^\s*for:\s*\S+\s*$`)
)

// alertRules reads the alerting rules of every deploy/prometheus rule file
// (one "- alert:" line starts a rule; the files are formatted so).
func alertRules(t *testing.T) []alertRule {
	t.Helper()
	var rules []alertRule
	for _, f := range globFiles(t, filepath.Join(rulesDir, "*-rules.yml")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		var cur *alertRule
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(strings.TrimSpace(line), "- record:") {
				cur = nil
				continue
			}
			if m := alertRE.FindStringSubmatch(line); m != nil {
				rules = append(rules, alertRule{file: filepath.Base(f), name: m[1]})
				cur = &rules[len(rules)-1]
				continue
			}
			if cur == nil {
				continue
			}
			if m := severityRE.FindStringSubmatch(line); m != nil {
				cur.severity = m[1]
			}
			if m := runbookRE.FindStringSubmatch(line); m != nil {
				cur.runbook = m[1]
			}
			if forRE.MatchString(line) {
				cur.hasFor = true
			}
		}
	}
	return rules
}

// anchor is the GitHub anchor of a Markdown heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestAlertsHaveRunbooksAndTests: every alert of tracepipe-rules.yml has a
// severity, a runbook_url naming its own section of docs/alerts.md, and
// promtool tests in which it fires and in which it does not. Every alert of
// every rule file has a severity.
func TestAlertsHaveRunbooksAndTests(t *testing.T) {
	doc, err := os.ReadFile(alertsDoc)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			sections[anchor(h)] = true
		}
	}
	firing, quiet := testedAlerts(t)
	rules := alertRules(t)
	if len(rules) < 20 {
		t.Fatalf("found %d alerting rules; the parser no longer understands the rule files", len(rules))
	}
	for _, r := range rules {
		switch r.severity {
		case "critical", "warning", "info":
		default:
			t.Errorf("%s %s: severity %q, want critical, warning or info", r.file, r.name, r.severity)
		}
		if r.file != "tracepipe-rules.yml" {
			continue // the aggregator's own file predates runbooks; see docs/aggregator.md
		}
		want := "docs/alerts.md#" + strings.ToLower(r.name)
		if r.runbook != want {
			t.Errorf("%s %s: runbook_url %q, want %q", r.file, r.name, r.runbook, want)
		}
		if !sections[strings.ToLower(r.name)] {
			t.Errorf("%s %s: docs/alerts.md has no section \"### %s\"", r.file, r.name, r.name)
		}
		if !firing[r.name] {
			t.Errorf("%s %s: no promtool test in which it fires", r.file, r.name)
		}
		if !quiet[r.name] {
			t.Errorf("%s %s: no promtool test in which it does not fire", r.file, r.name)
		}
	}
}

// testedAlerts reads the alert_rule_test entries of every promtool test
// file: the alerts expected to fire at some evaluation time, and those
// expected not to (exp_alerts: []).
func testedAlerts(t *testing.T) (firing, quiet map[string]bool) {
	t.Helper()
	firing, quiet = map[string]bool{}, map[string]bool{}
	name := regexp.MustCompile(`alertname:\s*(\w+)`)
	for _, f := range globFiles(t, filepath.Join(rulesDir, "*.test.yml")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i, line := range lines {
			m := name.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			// The expectation is on the same line (flow style) or the next.
			rest := line
			if i+1 < len(lines) {
				rest += "\n" + lines[i+1]
			}
			switch {
			case strings.Contains(rest, "exp_alerts: []"):
				quiet[m[1]] = true
			case strings.Contains(rest, "exp_alerts:"):
				firing[m[1]] = true
			}
		}
	}
	return firing, quiet
}

// TestDashboardsDecodeStrictly decodes every dashboard of deploy/grafana
// with the Grafana Foundation SDK's strict decoder (the Go types generated
// from Grafana's dashboard schema, with every core panel plugin's options
// and every core datasource's query registered): a missing required field,
// a field of the wrong type, or an unknown field fails. No Grafana server
// runs here (Grafana itself is AGPL and not packaged for this machine);
// what the schema cannot see, the next tests check.
func TestDashboardsDecodeStrictly(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	for _, f := range globFiles(t, filepath.Join(dashboardsDir, "*.json")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeDashboard(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// Not vacuous: an unknown field in a query and a missing required
	// option are reported.
	b, err := os.ReadFile(filepath.Join(dashboardsDir, "tracepipe-overview.json"))
	if err != nil {
		t.Fatal(err)
	}
	for what, breakIt := range map[string]func(map[string]any){
		"unknown target field": func(d map[string]any) {
			target(d)["expresion"] = "up"
		},
		"legend without showLegend": func(d map[string]any) {
			for _, p := range d["panels"].([]any) {
				if p := p.(map[string]any); p["type"] == "timeseries" {
					delete(p["options"].(map[string]any)["legend"].(map[string]any), "showLegend")
					return
				}
			}
		},
	} {
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		breakIt(d)
		broken, _ := json.Marshal(d)
		if err := decodeDashboard(broken); err == nil {
			t.Errorf("a dashboard with %s decodes without error", what)
		}
	}
}

// target returns the first query of the first panel that has one.
func target(d map[string]any) map[string]any {
	for _, p := range d["panels"].([]any) {
		if ts, ok := p.(map[string]any)["targets"].([]any); ok && len(ts) > 0 {
			return ts[0].(map[string]any)
		}
	}
	panic("no panel with a target")
}

func decodeDashboard(b []byte) error {
	// The classic dashboard JSON (schema v1) is what Grafana's file
	// provisioning and deploy/compose load; the SDK's v2 is another format.
	//lint:ignore SA1019 the files are v1 dashboards
	var d dashboard.Dashboard
	err := d.UnmarshalJSONStrict(b)
	// The SDK returns an empty cog.BuildErrors, not nil, when all is well.
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		err = nil
	}
	if err != nil {
		return err
	}
	return d.Validate()
}

// grafanaPanel is the part of a dashboard panel the checks need.
type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Query      string `json:"query"`
		TimeField  string `json:"timeField"`
		Datasource *struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Metrics []struct {
			Type  string `json:"type"`
			Field string `json:"field"`
		} `json:"metrics"`
		BucketAggs []struct {
			Type  string `json:"type"`
			Field string `json:"field"`
		} `json:"bucketAggs"`
	} `json:"targets"`
}

type grafanaDashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
			AllValue   string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

func readDashboards(t *testing.T) map[string]grafanaDashboard {
	t.Helper()
	out := map[string]grafanaDashboard{}
	for _, f := range globFiles(t, filepath.Join(dashboardsDir, "*.json")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d grafanaDashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// grafanaVars replaces the Grafana variables the dashboards use in PromQL
// with what Grafana would send, for a query to Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h",
	`"$service"`, `".*"`, `"$operation"`, `".*"`, `"$stage"`, `".*"`, `"$instance"`, `".*"`)

// dashboardExprs returns every PromQL expression of every dashboard panel
// and template variable, variables substituted, keyed by where it is.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for file, d := range readDashboards(t) {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					exprs[fmt.Sprintf("%s panel %d %q target %s", file, p.ID, p.Title, tg.RefID)] = grafanaVars.Replace(tg.Expr)
				}
			}
		}
		for _, v := range d.Templating.List {
			if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
				exprs[fmt.Sprintf("%s variable %s", file, v.Name)] = grafanaVars.Replace(m[1])
			}
		}
	}
	return exprs
}

// TestDashboardPromQLParses parses every PromQL expression of the dashboards
// with promtool: they become recording rules of a scratch rule file, which
// `promtool check rules` parses with Prometheus's own parser.
func TestDashboardPromQLParses(t *testing.T) {
	exprs := dashboardExprs(t)
	if len(exprs) < 40 {
		t.Fatalf("only %d PromQL expressions found in the dashboards", len(exprs))
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range exprs {
			if !yield(k) {
				return
			}
		}
	})
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboards\n    rules:\n")
	for i, k := range keys {
		e, _ := json.Marshal(exprs[k]) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      # %s\n      - record: dashboard_expr_%d\n        expr: %s\n", strings.ReplaceAll(k, "\n", " "), i, e)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboards.yml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := promtool(t, dir, "check", "rules", "dashboards.yml")
	if err != nil {
		t.Fatalf("promtool check rules on the dashboards' expressions: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(exprs)); !strings.Contains(out, want) {
		t.Fatalf("promtool: %s\nwant %q", out, want)
	}
}

// TestDashboardVariables: every dashboard picks its datasources with
// variables, has service/operation (aggregator) or stage/instance
// (overview) variables, uses them in its queries, and sets no custom All
// value (Grafana then formats All per datasource: a regex for Prometheus,
// a Lucene OR for Elasticsearch).
func TestDashboardVariables(t *testing.T) {
	want := map[string][]string{
		"tracepipe-aggregator.json": {"prometheus", "rollups", "service", "operation"},
		"tracepipe-overview.json":   {"prometheus", "stage", "instance"},
	}
	for file, d := range readDashboards(t) {
		names := map[string]bool{}
		for _, v := range d.Templating.List {
			names[v.Name] = true
			if v.AllValue != "" {
				t.Errorf("%s variable %s: custom allValue %q", file, v.Name, v.AllValue)
			}
		}
		for _, n := range want[file] {
			if !names[n] {
				t.Errorf("%s: no variable %s", file, n)
			}
		}
		for _, p := range d.Panels {
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || !strings.HasPrefix(p.Datasource.UID, "${") {
				t.Errorf("%s panel %d %q: datasource not chosen by a variable", file, p.ID, p.Title)
			}
			for _, tg := range p.Targets {
				q := tg.Expr + tg.Query
				if file == "tracepipe-overview.json" && !strings.Contains(q, "$instance") {
					t.Errorf("%s panel %d %q: query ignores $instance: %s", file, p.ID, p.Title, q)
				}
				if p.Datasource.Type == "elasticsearch" && (!strings.Contains(q, "$service") || !strings.Contains(q, "$operation")) {
					t.Errorf("%s panel %d %q: rollup query ignores $service or $operation: %s", file, p.ID, p.Title, q)
				}
			}
		}
	}
}

// nameRecorder is a prometheus.Registerer that records the name of every
// metric described to it (vectors included, which a Gather would omit
// until they have a child).
type nameRecorder struct{ names map[string]bool }

func (r *nameRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *nameRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *nameRecorder) Unregister(prometheus.Collector) bool { return true }

// TestDeployMetricNames: every tracepipe_* metric the rules, their tests
// and the dashboards name is one a stage exports (histogram series
// suffixes aside), so a renamed metric cannot silently empty a panel or
// disarm an alert.
func TestDeployMetricNames(t *testing.T) {
	known := exportedMetricNames(t)
	for _, n := range []string{"tracepipe_kafka_consumer_lag", "tracepipe_collector_requests_total", "tracepipe_producer_buffered_bytes",
		"tracepipe_ingester_dead_letters_total", "tracepipe_indexer_write_errors_total", "tracepipe_store_dead_letters_total",
		"tracepipe_es_retries_total", "tracepipe_aggregator_calls_total", "tracepipe_query_rejected_total"} {
		if !known[n] {
			t.Fatalf("the inventory of exported metrics lacks %s (of %d names): it no longer builds every stage", n, len(known))
		}
	}
	used := regexp.MustCompile(`\btracepipe_[a-z0-9_]+`)
	suffix := regexp.MustCompile(`_(bucket|sum|count)$`)
	files := append(globFiles(t, filepath.Join(rulesDir, "*.yml")), globFiles(t, filepath.Join(dashboardsDir, "*.json"))...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		unknown := map[string]bool{}
		for _, n := range used.FindAllString(string(b), -1) {
			if !known[n] && !known[suffix.ReplaceAllString(n, "")] {
				unknown[n] = true
			}
		}
		if len(unknown) > 0 {
			names := make([]string, 0, len(unknown))
			for n := range unknown {
				names = append(names, n)
			}
			sort.Strings(names)
			t.Errorf("%s names metrics no stage exports: %s", f, strings.Join(names, ", "))
		}
	}
}

// withTimeout is a context for closing what the metric inventory built.
func withTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}
