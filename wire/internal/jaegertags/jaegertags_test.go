package jaegertags

import (
	"reflect"
	"testing"

	"github.com/tracepipe/tracepipe/model"
)

func TestDerive(t *testing.T) {
	cases := []struct {
		name string
		tags model.KeyValues
		want Derived
	}{
		{"none", nil, Derived{}},
		{"span.kind", model.KeyValues{model.String("span.kind", "client")}, Derived{Kind: model.KindClient}},
		{"unknown kind", model.KeyValues{model.String("span.kind", "weird")}, Derived{}},
		{"first kind counts", model.KeyValues{model.String("span.kind", "server"), model.String("span.kind", "client")}, Derived{Kind: model.KindServer}},
		{"error bool", model.KeyValues{model.Bool("error", true)}, Derived{Status: model.StatusError}},
		{"error string", model.KeyValues{model.String("error", "true")}, Derived{Status: model.StatusError}},
		{"error false", model.KeyValues{model.Bool("error", false)}, Derived{}},
		{"error other string", model.KeyValues{model.String("error", "yes")}, Derived{}},
		{"otel ok", model.KeyValues{model.String("otel.status_code", "OK")}, Derived{Status: model.StatusOK}},
		{"error tag beats ok", model.KeyValues{model.String("otel.status_code", "OK"), model.Bool("error", true)}, Derived{Status: model.StatusError}},
		{"otel error with message", model.KeyValues{model.String("otel.status_code", "ERROR"), model.String("otel.status_description", "x")},
			Derived{Status: model.StatusError, StatusMessage: "x"}},
	}
	for _, c := range cases {
		if got := Derive(c.tags); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestExtra(t *testing.T) {
	cases := []struct {
		name string
		span model.Span
		want []model.KeyValue
	}{
		{"nothing to carry", model.Span{}, nil},
		{"tags already say it", model.Span{Kind: model.KindServer, Status: model.StatusError,
			Tags: model.KeyValues{model.String("span.kind", "server"), model.Bool("error", true)}}, nil},
		{"kind", model.Span{Kind: model.KindProducer}, []model.KeyValue{model.String("span.kind", "producer")}},
		{"error", model.Span{Status: model.StatusError, StatusMessage: "boom"},
			[]model.KeyValue{model.Bool("error", true), model.String("otel.status_description", "boom")}},
		{"error with a false error tag", model.Span{Status: model.StatusError, Tags: model.KeyValues{model.Bool("error", false)}},
			[]model.KeyValue{model.String("otel.status_code", "ERROR")}},
		{"ok", model.Span{Status: model.StatusOK}, []model.KeyValue{model.String("otel.status_code", "OK")}},
		{"otel error code is enough", model.Span{Status: model.StatusError, Tags: model.KeyValues{model.String("otel.status_code", "ERROR")}}, nil},
		{"conflicting span.kind left alone", model.Span{Kind: model.KindClient, Tags: model.KeyValues{model.String("span.kind", "x")}}, nil},
	}
	for _, c := range cases {
		got := Extra(&c.span)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
		// Where nothing conflicts, the tags plus Extra give back the fields.
		if c.name == "conflicting span.kind left alone" {
			continue
		}
		d := Derive(append(append(model.KeyValues(nil), c.span.Tags...), got...))
		if d.Kind != c.span.Kind || d.Status != c.span.Status || d.StatusMessage != c.span.StatusMessage {
			t.Errorf("%s: derived %+v from the written tags", c.name, d)
		}
	}
}
