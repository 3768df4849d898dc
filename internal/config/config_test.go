package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Idle    time.Duration
	Topic   string
	Brokers []string
	Flush   bool
}

func (s *sample) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.DurationVar(&s.Idle, prefix+"idle-timeout", s.Idle, "idle timeout")
	fs.StringVar(&s.Topic, prefix+"spans-topic", s.Topic, "topic")
	fs.Var(List{&s.Brokers}, prefix+"kafka-brokers", "brokers")
	fs.BoolVar(&s.Flush, prefix+"flush", s.Flush, "flush")
}

func env(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedence(t *testing.T) {
	def := sample{Idle: time.Second, Topic: "spans", Brokers: []string{"a:1"}}
	cases := []struct {
		name   string
		prefix string
		alias  bool
		args   []string
		env    map[string]string
		want   sample
	}{
		{"default", "", false, nil, nil, def},
		{"env beats default", "", false, nil, map[string]string{"TRACEPIPE_IDLE_TIMEOUT": "5s", "TRACEPIPE_KAFKA_BROKERS": " b:2, c:3 ,"},
			sample{Idle: 5 * time.Second, Topic: "spans", Brokers: []string{"b:2", "c:3"}}},
		{"flag beats env", "", false, []string{"--idle-timeout=7s"}, map[string]string{"TRACEPIPE_IDLE_TIMEOUT": "5s"},
			sample{Idle: 7 * time.Second, Topic: "spans", Brokers: []string{"a:1"}}},
		{"flag set to its default still beats env", "", false, []string{"--spans-topic=spans"}, map[string]string{"TRACEPIPE_SPANS_TOPIC": "other"}, def},
		{"empty env is a value", "", false, nil, map[string]string{"TRACEPIPE_SPANS_TOPIC": ""},
			sample{Idle: time.Second, Topic: "", Brokers: []string{"a:1"}}},
		{"prefixed env", "ingester-", false, nil, map[string]string{"TRACEPIPE_INGESTER_IDLE_TIMEOUT": "3s", "TRACEPIPE_IDLE_TIMEOUT": "9s"},
			sample{Idle: 3 * time.Second, Topic: "spans", Brokers: []string{"a:1"}}},
		{"alias flag sets target", "ingester-", true, []string{"--idle-timeout=4s"}, map[string]string{"TRACEPIPE_INGESTER_IDLE_TIMEOUT": "3s"},
			sample{Idle: 4 * time.Second, Topic: "spans", Brokers: []string{"a:1"}}},
		{"target flag beats alias env", "ingester-", true, []string{"--ingester-idle-timeout=2s"}, map[string]string{"TRACEPIPE_IDLE_TIMEOUT": "9s"},
			sample{Idle: 2 * time.Second, Topic: "spans", Brokers: []string{"a:1"}}},
		{"old env name of an alias still works", "ingester-", true, nil, map[string]string{"TRACEPIPE_IDLE_TIMEOUT": "9s"},
			sample{Idle: 9 * time.Second, Topic: "spans", Brokers: []string{"a:1"}}},
		{"bool alias without value", "ingester-", true, []string{"--flush"}, nil,
			sample{Idle: time.Second, Topic: "spans", Brokers: []string{"a:1"}, Flush: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := def
			s.Brokers = append([]string(nil), def.Brokers...)
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			s.RegisterFlags(fs, c.prefix)
			if c.alias {
				Alias(fs, "idle-timeout", c.prefix+"idle-timeout")
				Alias(fs, "flush", c.prefix+"flush")
			}
			if err := Parse(fs, c.args, env(c.env)); err != nil {
				t.Fatal(err)
			}
			if s.Idle != c.want.Idle || s.Topic != c.want.Topic || strings.Join(s.Brokers, ",") != strings.Join(c.want.Brokers, ",") || s.Flush != c.want.Flush {
				t.Errorf("got %+v, want %+v", s, c.want)
			}
		})
	}
}

func TestBadEnvNamesVariableAndJoins(t *testing.T) {
	s := sample{}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	s.RegisterFlags(fs, "")
	err := Parse(fs, nil, env(map[string]string{"TRACEPIPE_IDLE_TIMEOUT": "soon", "TRACEPIPE_FLUSH": "maybe"}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`TRACEPIPE_IDLE_TIMEOUT="soon"`, `TRACEPIPE_FLUSH="maybe"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestHelpListsEnvNames(t *testing.T) {
	s := sample{Topic: "spans"}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	s.RegisterFlags(fs, "aggregator-")
	Alias(fs, "idle-timeout", "aggregator-idle-timeout")
	Document(fs)
	Document(fs) // idempotent
	fs.PrintDefaults()
	help := out.String()
	for _, want := range []string{
		"(env TRACEPIPE_AGGREGATOR_IDLE_TIMEOUT)", "(env TRACEPIPE_AGGREGATOR_SPANS_TOPIC)", "(env TRACEPIPE_AGGREGATOR_KAFKA_BROKERS)",
		"alias of --aggregator-idle-timeout (env TRACEPIPE_IDLE_TIMEOUT)",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Count(help, "(env TRACEPIPE_AGGREGATOR_IDLE_TIMEOUT)") != 1 || strings.Contains(help, "panic") {
		t.Errorf("help:\n%s", help)
	}
}

func TestCompose(t *testing.T) {
	a := sample{Topic: "spans"}
	src := flag.NewFlagSet("src", flag.ContinueOnError)
	a.RegisterFlags(src, "ingester-")
	dst := flag.NewFlagSet("dst", flag.ContinueOnError)
	Compose(dst, src, "ingester-kafka-brokers")
	if dst.Lookup("ingester-kafka-brokers") != nil || dst.Lookup("ingester-spans-topic") == nil {
		t.Fatal("omitted flag registered or kept flag missing")
	}
	if err := Parse(dst, []string{"--ingester-spans-topic=x"}, env(nil)); err != nil {
		t.Fatal(err)
	}
	if a.Topic != "x" {
		t.Errorf("topic %q", a.Topic)
	}
	defer func() {
		if recover() == nil {
			t.Error("omitting an unknown flag did not panic")
		}
	}()
	Compose(flag.NewFlagSet("d", flag.ContinueOnError), src, "no-such-flag")
}

func TestStage(t *testing.T) {
	a := sample{Topic: "spans"}
	dst := flag.NewFlagSet("dst", flag.ContinueOnError)
	Stage(dst, "ingester-", a.RegisterFlags, "flush")
	var names []string
	dst.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if got := strings.Join(names, ","); got != "ingester-idle-timeout,ingester-spans-topic" {
		t.Errorf("flags %s", got)
	}
}

func TestEnvNameAndMarkdown(t *testing.T) {
	for in, want := range map[string]string{"idle-timeout": "TRACEPIPE_IDLE_TIMEOUT", "es.tls.ca": "TRACEPIPE_ES_TLS_CA", "x": "TRACEPIPE_X"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
	s := sample{Topic: "a|b"}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	s.RegisterFlags(fs, "")
	Document(fs)
	md := Markdown(fs)
	if !strings.Contains(md, "| `--spans-topic` | `TRACEPIPE_SPANS_TOPIC` | `a\\|b` | topic |") {
		t.Errorf("markdown:\n%s", md)
	}
}

func TestSyncDoc(t *testing.T) {
	path := t.TempDir() + "/doc.md"
	doc := "# x\n<!-- flags: a -->\nold\n<!-- end flags: a -->\ntail\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SyncDoc(path, "a", "new\n", false); err == nil || !strings.Contains(err.Error(), "-update") {
		t.Fatalf("stale block: %v", err)
	}
	if err := SyncDoc(path, "a", "new\n", true); err != nil {
		t.Fatal(err)
	}
	if err := SyncDoc(path, "a", "new\n", false); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "# x\n<!-- flags: a -->\nnew\n<!-- end flags: a -->\ntail\n" {
		t.Fatalf("%q", got)
	}
	if err := SyncDoc(path, "b", "x", true); err == nil {
		t.Fatal("missing block accepted")
	}
}

func TestRename(t *testing.T) {
	s := sample{}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	s.RegisterFlags(fs, "ingester-")
	err := Rename(errors.Join(errors.New("--idle-timeout must be positive"), errors.New("--spans-topic and --other differ; --idle-timeout-x")), fs, "ingester-")
	want := "--ingester-idle-timeout must be positive\n--ingester-spans-topic and --other differ; --idle-timeout-x"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if Rename(nil, fs, "ingester-") != nil {
		t.Error("nil renamed")
	}
}
