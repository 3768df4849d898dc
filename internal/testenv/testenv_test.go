package testenv

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a testing.TB whose Skip and Fatal record the message and end
// the calling goroutine, as the real ones do.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped = sprint(args)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) {
	r.failed = sprint(args)
	runtime.Goexit()
}

func sprint(args []any) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteString(a.(string))
	}
	return b.String()
}

// run calls fn with a recorder in its own goroutine and returns the recorder
// once fn returned or ended the goroutine.
func run(t *testing.T, fn func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

func TestMissingServiceSkipsLocallyAndFailsInCI(t *testing.T) {
	accessors := []struct {
		name string
		env  string
		call func(testing.TB)
	}{
		{"Kafka", EnvKafka, func(tb testing.TB) { Kafka(tb) }},
		{"KafkaBrokers", EnvKafka, func(tb testing.TB) { KafkaBrokers(tb) }},
		{"Elasticsearch", EnvElasticsearch, func(tb testing.TB) { Elasticsearch(tb) }},
		{"Prometheus", EnvPrometheus, func(tb testing.TB) { Prometheus(tb) }},
	}
	for _, a := range accessors {
		t.Run(a.name, func(t *testing.T) {
			t.Setenv(a.env, "")
			t.Setenv("CI", "")
			r := run(t, a.call)
			if r.failed != "" || !strings.Contains(r.skipped, "make services-up") || !strings.Contains(r.skipped, a.env) {
				t.Fatalf("locally: skipped %q, failed %q; want a skip naming %s and make services-up", r.skipped, r.failed, a.env)
			}
			t.Setenv("CI", "true")
			r = run(t, a.call)
			if r.skipped != "" || !strings.Contains(r.failed, "CI=true") {
				t.Fatalf("in CI: skipped %q, failed %q; want a failure", r.skipped, r.failed)
			}
		})
	}
}

func TestAccessorsReadTheEnvironment(t *testing.T) {
	t.Setenv(EnvKafka, " 127.0.0.1:1, 127.0.0.1:2 ,")
	t.Setenv(EnvElasticsearch, "127.0.0.1:9200/")
	t.Setenv(EnvPrometheus, "http://127.0.0.1:9090")
	t.Setenv(EnvPrometheusTargets, "/tmp/x")
	t.Setenv(EnvPromtool, "/opt/promtool")
	if got := strings.Join(KafkaBrokers(t), "|"); got != "127.0.0.1:1|127.0.0.1:2" {
		t.Errorf("KafkaBrokers = %q", got)
	}
	if got := Elasticsearch(t); got != "http://127.0.0.1:9200" {
		t.Errorf("Elasticsearch = %q", got)
	}
	if got := Prometheus(t); got != (PrometheusServer{URL: "http://127.0.0.1:9090", TargetsDir: "/tmp/x"}) {
		t.Errorf("Prometheus = %+v", got)
	}
	if got := Promtool(t); got != "/opt/promtool" {
		t.Errorf("Promtool = %q", got)
	}
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*[a-z0-9]$`)

func TestName(t *testing.T) {
	cases := []struct {
		name, prefix, wantStart string
	}{
		{"plain", "spans", "spans-testname-plain-"},
		{"prefix cleaned", "Jaeger_Spans!", "jaeger-spans-testname-prefix-cleaned-"},
		{"empty prefix", "", "tp-testname-empty-prefix-"},
		{"Very/Long " + strings.Repeat("x", 300), "idx", "idx-testname-very-long-xxx"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := Name(t, c.prefix), Name(t, c.prefix)
			if a == b {
				t.Fatalf("two names alike: %s", a)
			}
			if !strings.HasPrefix(a, c.wantStart) || !validName.MatchString(a) || len(a) > 100 {
				t.Fatalf("Name = %q (len %d), want a valid name of at most 100 bytes starting %q", a, len(a), c.wantStart)
			}
		})
	}
}

func TestAddTargetAndQuery(t *testing.T) {
	dir := t.TempDir()
	p := PrometheusServer{TargetsDir: dir}
	var file string
	t.Run("add", func(t *testing.T) {
		name := p.AddTarget(t, "127.0.0.1:1234", map[string]string{"component": "x"})
		file = filepath.Join(dir, name+".json")
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var got []struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Targets[0] != "127.0.0.1:1234" || got[0].Labels["component"] != "x" || got[0].Labels["testenv_target"] != name {
			t.Fatalf("file_sd content %s", b)
		}
	})
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("target file not removed after the test: %v", err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("query") {
		case "up":
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"j"},"value":[1700000000.5,"1"]}]}}`))
		default:
			w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
		}
	}))
	defer srv.Close()
	p.URL = srv.URL
	got, err := p.Query(context.Background(), "up")
	if err != nil || len(got) != 1 || got[0].Value != 1 || got[0].Metric["job"] != "j" || got[0].Time.UnixMilli() != 1700000000500 {
		t.Fatalf("Query(up) = %+v, %v", got, err)
	}
	if _, err := p.Query(context.Background(), "bad("); err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Fatalf("Query(bad) error %v", err)
	}
}

func TestProcCPUAndPeakRSS(t *testing.T) {
	pid := os.Getpid()
	end := time.Now().Add(30 * time.Millisecond)
	for time.Now().Before(end) { // some CPU to see
	}
	cpu, err := ProcCPU(pid)
	if err != nil || cpu <= 0 {
		t.Errorf("ProcCPU = %v, %v", cpu, err)
	}
	rss, err := ProcPeakRSS(pid)
	if err != nil || rss < 1<<20 {
		t.Errorf("ProcPeakRSS = %d, %v", rss, err)
	}
	if _, err := ProcCPU(-1); err == nil {
		t.Error("ProcCPU of no process: no error")
	}
}

func TestSelfUsage(t *testing.T) {
	before := SelfUsage()
	end := time.Now().Add(30 * time.Millisecond)
	for time.Now().Before(end) { // some CPU to see
	}
	_ = make([]byte, 8<<20)[1<<20] // some pages to touch
	used := SelfUsage().Sub(before)
	if used.CPU() <= 0 || used.CPU() != used.User+used.Sys || used.User < 0 || used.Sys < 0 || used.MinorFaults < 0 {
		t.Errorf("SelfUsage over a busy loop: %+v", used)
	}
}
