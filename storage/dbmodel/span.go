// Package dbmodel is tracepipe's stored document model, shared by both
// backends, with FromDomain/ToDomain conversions pinned by golden fixture
// pairs (testdata/*.domain.json <-> testdata/*.stored.json; regenerate with
// `go test ./storage/dbmodel -update`).
//
//   - Span and Service are exactly the documents of Jaeger v1's Elasticsearch
//     storage (plugin/storage/es/spanstore/dbmodel), so an unmodified Jaeger
//     Query reads what tracepipe writes. The embedded store keeps the same
//     Span documents, as a trace's span list.
//   - Trace is the summary of one trace version plus its stored analysis.
//   - Rollup is one aggregator rollup.
//
// Jaeger keeps times in microseconds, so spans round-trip with microsecond
// precision; tracepipe's own documents keep nanoseconds (fields named
// ...Nanos) and add an epoch-millisecond date for range queries and Grafana.
package dbmodel

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Jaeger reference types, as stored.
const (
	ChildOf     = "CHILD_OF"
	FollowsFrom = "FOLLOWS_FROM"
)

// Span is Jaeger's stored span (jaeger-span-* indices).
type Span struct {
	TraceID         string      `json:"traceID"`
	SpanID          string      `json:"spanID"`
	ParentSpanID    string      `json:"parentSpanID,omitempty"` // deprecated by Jaeger; read, never written
	Flags           uint32      `json:"flags,omitempty"`
	OperationName   string      `json:"operationName"`
	References      []Reference `json:"references"`
	StartTime       int64       `json:"startTime"`       // µs since the epoch
	StartTimeMillis int64       `json:"startTimeMillis"` // ms since the epoch, for date range queries
	Duration        int64       `json:"duration"`        // µs
	Tags            []KeyValue  `json:"tags"`
	Tag             TagFields   `json:"tag,omitempty"`
	Logs            []Log       `json:"logs"`
	Process         Process     `json:"process"`
}

// Reference is a stored span reference.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// Process is a stored span's process.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
	Tag         TagFields  `json:"tag,omitempty"`
}

// Log is a stored span log.
type Log struct {
	Timestamp int64      `json:"timestamp"` // µs
	Fields    []KeyValue `json:"fields"`
}

// KeyValue is a stored tag: the value as text (Jaeger's AsString; binary as
// hex) and its type name ("string", "bool", "int64", "float64", "binary").
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type,omitempty"`
	Value any    `json:"value"`
}

// Service is Jaeger's stored service/operation pair (jaeger-service-*
// indices), the source of Jaeger UI's service and operation lists.
type Service struct {
	ServiceName   string `json:"serviceName"`
	OperationName string `json:"operationName"`
}

// ID is Jaeger's document ID for the pair: FNV-1a 64 of service then
// operation, in hex.
func (s Service) ID() string {
	h := fnv.New64a()
	h.Write([]byte(s.ServiceName))
	h.Write([]byte(s.OperationName))
	return strconv.FormatUint(h.Sum64(), 16)
}

// SpanOptions are Jaeger's tag layout options. The zero value is Jaeger's
// default: every tag in the nested "tags" list.
type SpanOptions struct {
	// AllTagsAsFields stores every non-binary tag in the "tag" object instead
	// (Jaeger's --es.tags-as-fields.all).
	AllTagsAsFields bool
	// WellKnownTagsAsFields stores the keys of WellKnownFieldKeys in the
	// "tag" object (tracepipe's default for Elasticsearch).
	WellKnownTagsAsFields bool
	// TagKeysAsFields stores these keys in the "tag" object.
	TagKeysAsFields []string
	// DotReplacement replaces "." in keys of the "tag" object (Jaeger's
	// --es.tags-as-fields.dot-replacement; default "@").
	DotReplacement string
}

// WellKnownFieldKeys are tag keys of the OpenTracing, Jaeger and
// OpenTelemetry conventions whose tags SpanOptions.WellKnownTagsAsFields
// stores as fields of the span document rather than as nested documents:
// process tags that jaeger-client-go and the OTel SDKs put on every span
// (hostname, ip, jaeger.version, host.name, service.instance.id, ...) and
// common span tags (span.kind, error, http.*, db.*, rpc.*, peer.service,
// ...). Each nested tag is a Lucene document of its own, so most spans'
// cost to the search engine falls to a third; the keys are a fixed list,
// so the mapping stays bounded whatever services send. Jaeger Query finds
// both layouts (it searches the nested tags and the tag.* fields).
var WellKnownFieldKeys = []string{
	// Process (resource) tags.
	"hostname", "ip", "jaeger.version", "client-uuid",
	"host.name", "host.id", "host.arch", "host.type", "os.type", "os.description",
	"process.pid", "process.executable.name", "process.runtime.name", "process.runtime.version", "process.runtime.description",
	"service.instance.id", "service.namespace", "service.version",
	"telemetry.sdk.name", "telemetry.sdk.language", "telemetry.sdk.version", "telemetry.auto.version", "telemetry.distro.name", "telemetry.distro.version",
	"deployment.environment", "deployment.environment.name",
	"k8s.cluster.name", "k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.node.name", "k8s.deployment.name", "k8s.container.name",
	"container.id", "container.name", "container.image.name",
	"cloud.provider", "cloud.platform", "cloud.region", "cloud.availability_zone", "cloud.account.id",
	// Span tags.
	"span.kind", "error", "component", "peer.service", "internal.span.format", "sampler.type",
	"otel.status_code", "otel.scope.name", "otel.scope.version", "otel.library.name", "otel.library.version",
	"http.method", "http.request.method", "http.status_code", "http.response.status_code", "http.route", "http.scheme", "http.url", "http.target",
	"url.full", "url.path", "url.scheme",
	"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code",
	"db.system", "db.name", "db.operation", "db.statement", "db.namespace", "db.operation.name", "db.query.text",
	"messaging.system", "messaging.operation", "messaging.destination", "messaging.destination.name",
	"net.peer.name", "net.peer.port", "server.address", "server.port", "network.protocol.name",
}

var wellKnownFieldKeys = func() map[string]bool {
	m := make(map[string]bool, len(WellKnownFieldKeys))
	for _, k := range WellKnownFieldKeys {
		m[k] = true
	}
	return m
}()

func (o SpanOptions) dot() string {
	if o.DotReplacement == "" {
		return "@"
	}
	return o.DotReplacement
}

// asField says whether a tag with key k goes to the "tag" object. A key
// that cannot be a field name (empty) or whose field name would read back as
// another key (it holds the dot replacement) stays nested.
func (o SpanOptions) asField(k string) bool {
	if !o.AllTagsAsFields && !(o.WellKnownTagsAsFields && wellKnownFieldKeys[k]) && !slices.Contains(o.TagKeysAsFields, k) {
		return false
	}
	return k != "" && !strings.Contains(k, o.dot())
}

// Tag keys that carry model.Span's Kind and Status in Jaeger's schema.
const (
	tagSpanKind          = "span.kind"
	tagError             = "error"
	tagOtelStatusCode    = "otel.status_code"
	tagOtelStatusMessage = "otel.status_description"
)

// SpanID renders a span doc's ID: traceID-spanID in hex.
func SpanDocID(t model.TraceID, s model.SpanID) string {
	var b [50]byte
	out := t.AppendHex(b[:0])
	out = append(out, '-')
	out = append(out, s.String()...)
	return string(out)
}

// FromDomainSpan converts a span to Jaeger's document. Kind and Status are
// written as Jaeger's tags (span.kind; error=true, otel.status_code,
// otel.status_description) only where those tags are missing, so a span
// decoded from Jaeger round-trips unchanged. Span.Warnings are not part of
// Jaeger's schema and are not stored (the analysis keeps the trace's warnings).
func FromDomainSpan(s *model.Span, o SpanOptions) Span {
	tags := s.Tags
	extra := derivedTags(s)
	if len(extra) > 0 {
		tags = append(append(model.KeyValues(nil), s.Tags...), extra...)
	}
	d := Span{
		TraceID:         s.TraceID.String(),
		SpanID:          s.SpanID.String(),
		Flags:           s.Flags,
		OperationName:   s.Operation,
		References:      make([]Reference, 0, len(s.References)),
		StartTime:       s.Start.Micros(),
		StartTimeMillis: floorDiv(s.Start.Micros(), 1000),
		Duration:        max(int64(s.Duration/time.Microsecond), 0), // negative: stored as 0, as the analysis counts it (bad-duration warning)
		Logs:            make([]Log, len(s.Logs)),
		Process:         Process{ServiceName: s.Process.ServiceName},
	}
	d.Tags, d.Tag = fromKeyValues(tags, o)
	d.Process.Tags, d.Process.Tag = fromKeyValues(s.Process.Tags, o)
	for _, r := range s.References {
		t := ChildOf
		if r.Type == model.FollowsFrom {
			t = FollowsFrom
		}
		d.References = append(d.References, Reference{RefType: t, TraceID: r.TraceID.String(), SpanID: r.SpanID.String()})
	}
	for i, l := range s.Logs {
		fields := make([]KeyValue, 0, len(l.Fields))
		for _, kv := range l.Fields {
			fields = append(fields, fromKeyValue(kv))
		}
		d.Logs[i] = Log{Timestamp: l.Timestamp.Micros(), Fields: fields}
	}
	return d
}

func derivedTags(s *model.Span) model.KeyValues {
	var extra model.KeyValues
	has := func(k string) bool { _, ok := s.Tags.Find(k); return ok }
	if s.Kind != model.KindUnspecified && !has(tagSpanKind) {
		extra = append(extra, model.String(tagSpanKind, s.Kind.String()))
	}
	switch s.Status {
	case model.StatusError:
		if !has(tagError) {
			extra = append(extra, model.Bool(tagError, true))
		}
	case model.StatusOK:
		if !has(tagOtelStatusCode) {
			extra = append(extra, model.String(tagOtelStatusCode, "OK"))
		}
	}
	if s.StatusMessage != "" && !has(tagOtelStatusMessage) {
		extra = append(extra, model.String(tagOtelStatusMessage, s.StatusMessage))
	}
	return extra
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// fromKeyValues splits kvs into the nested list and the "tag" object. A key
// repeated in kvs keeps its first value as the field and the others nested,
// and a float that JSON cannot hold (NaN, ±Inf) stays nested as text, so
// nothing is lost. Floats are written with a decimal point (1.0, not 1) so
// that they read back as floats, here and in Jaeger Query.
func fromKeyValues(kvs model.KeyValues, o SpanOptions) ([]KeyValue, TagFields) {
	out := make([]KeyValue, 0, len(kvs))
	var fields TagFields
	for i := range kvs {
		kv := &kvs[i]
		if k, ok := o.fieldName(kv); ok {
			if _, dup := fields[k]; !dup {
				if fields == nil {
					fields = TagFields{}
				}
				fields[k] = fieldValue(kv)
				continue
			}
		}
		out = append(out, fromKeyValue(*kv))
	}
	return out, fields
}

// fieldName is the "tag" object key under which kv is stored as a field
// (dots replaced), ok=false when kv stays nested: its key is not chosen as a
// field, its value is binary, or it is a float JSON cannot hold (NaN, ±Inf).
// A key repeated in one span keeps its first value as the field and the
// others nested; callers check that.
func (o SpanOptions) fieldName(kv *model.KeyValue) (string, bool) {
	if kv.Type == model.BinaryType || !o.asField(kv.Key) {
		return "", false
	}
	if f := kv.Float64Value(); kv.Type == model.Float64Type && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return "", false
	}
	return strings.ReplaceAll(kv.Key, ".", o.dot()), true
}

// fieldValue is the JSON value of a tag stored as a field (one fieldName
// accepts).
func fieldValue(kv *model.KeyValue) any {
	switch kv.Type {
	case model.BoolType:
		return kv.BoolValue()
	case model.Int64Type:
		return kv.Int64Value()
	case model.Float64Type:
		return floatNumber(kv.Float64Value())
	default:
		return kv.Str
	}
}

// floatNumber is a finite f as a JSON number that reads back as a float
// (with a decimal point or an exponent).
func floatNumber(f float64) json.Number {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return json.Number(s)
}

// TagFields is the "tag" object of a span or process: tags stored as fields
// (Jaeger's tags-as-fields). Numbers are decoded as json.Number, so that
// integers keep every digit and floats stay floats.
type TagFields map[string]any

// UnmarshalJSON decodes the object with numbers as json.Number.
func (f *TagFields) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return err
	}
	*f = m
	return nil
}

func fromKeyValue(kv model.KeyValue) KeyValue {
	return KeyValue{Key: kv.Key, Type: kv.Type.String(), Value: kv.AsString()}
}

// ToDomainSpan converts a stored span back. It accepts what Jaeger writes
// and what it used to write: a parentSpanID without references becomes a
// CHILD_OF reference; "tag" object fields become tags (after the nested ones,
// sorted by key). Kind comes from the span.kind tag, Status from the error /
// otel.status_code tags. Errors name the bad field.
func ToDomainSpan(d *Span, o SpanOptions) (*model.Span, error) {
	tid, err := model.ParseTraceID(d.TraceID)
	if err != nil {
		return nil, fmt.Errorf("span traceID: %w", err)
	}
	sid, err := model.ParseSpanID(d.SpanID)
	if err != nil {
		return nil, fmt.Errorf("span spanID: %w", err)
	}
	if d.Duration > math.MaxInt64/1000 {
		return nil, fmt.Errorf("span %s: duration %d out of range", d.SpanID, d.Duration)
	}
	if d.Duration < 0 {
		d.Duration = 0 // stored by older versions; counted as 0 like the analysis does
	}
	s := &model.Span{
		TraceID:   tid,
		SpanID:    sid,
		Operation: d.OperationName,
		Flags:     d.Flags,
		Start:     model.FromMicros(d.StartTime),
		Duration:  time.Duration(d.Duration) * time.Microsecond,
		Process:   model.Process{ServiceName: d.Process.ServiceName},
	}
	for _, r := range d.References {
		rt, err := model.ParseTraceID(r.TraceID)
		if err != nil {
			return nil, fmt.Errorf("span %s reference traceID: %w", d.SpanID, err)
		}
		rs, err := model.ParseSpanID(r.SpanID)
		if err != nil {
			return nil, fmt.Errorf("span %s reference spanID: %w", d.SpanID, err)
		}
		typ := model.ChildOf
		switch r.RefType {
		case ChildOf, "":
		case FollowsFrom:
			typ = model.FollowsFrom
		default:
			return nil, fmt.Errorf("span %s: unknown reference type %q", d.SpanID, r.RefType)
		}
		s.References = append(s.References, model.Reference{Type: typ, TraceID: rt, SpanID: rs})
	}
	if len(s.References) == 0 && d.ParentSpanID != "" {
		ps, err := model.ParseSpanID(d.ParentSpanID)
		if err != nil {
			return nil, fmt.Errorf("span %s parentSpanID: %w", d.SpanID, err)
		}
		if ps != 0 {
			s.References = []model.Reference{{Type: model.ChildOf, TraceID: tid, SpanID: ps}}
		}
	}
	if s.Tags, err = toKeyValues(d.Tags, d.Tag, o); err != nil {
		return nil, fmt.Errorf("span %s tags: %w", d.SpanID, err)
	}
	if s.Process.Tags, err = toKeyValues(d.Process.Tags, d.Process.Tag, o); err != nil {
		return nil, fmt.Errorf("span %s process tags: %w", d.SpanID, err)
	}
	if len(d.Logs) > 0 {
		s.Logs = make([]model.Log, len(d.Logs))
		for i, l := range d.Logs {
			s.Logs[i].Timestamp = model.FromMicros(l.Timestamp)
			for _, f := range l.Fields {
				kv, err := toKeyValue(f)
				if err != nil {
					return nil, fmt.Errorf("span %s log fields: %w", d.SpanID, err)
				}
				s.Logs[i].Fields = append(s.Logs[i].Fields, kv)
			}
		}
	}
	if kv, ok := s.Tags.Find(tagSpanKind); ok {
		s.Kind = model.ParseSpanKind(kv.AsString())
	}
	if kv, ok := s.Tags.Find(tagOtelStatusCode); ok {
		switch kv.AsString() {
		case "OK":
			s.Status = model.StatusOK
		case "ERROR":
			s.Status = model.StatusError
		}
	}
	if kv, ok := s.Tags.Find(tagError); ok && (kv.BoolValue() || (kv.Type == model.StringType && kv.Str == "true")) {
		s.Status = model.StatusError
	}
	if kv, ok := s.Tags.Find(tagOtelStatusMessage); ok {
		s.StatusMessage = kv.AsString()
	}
	return s, nil
}

func toKeyValues(kvs []KeyValue, fields TagFields, o SpanOptions) (model.KeyValues, error) {
	if len(kvs) == 0 && len(fields) == 0 {
		return nil, nil
	}
	out := make(model.KeyValues, 0, len(kvs)+len(fields))
	for _, kv := range kvs {
		m, err := toKeyValue(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := strings.ReplaceAll(k, o.dot(), ".")
		switch v := fields[k].(type) {
		case string:
			out = append(out, model.String(key, v))
		case bool:
			out = append(out, model.Bool(key, v))
		case int64:
			out = append(out, model.Int64(key, v))
		case json.Number: // as decoded: an integer unless written with a point or exponent
			if !strings.ContainsAny(string(v), ".eE") {
				if n, err := v.Int64(); err == nil {
					out = append(out, model.Int64(key, n))
					continue
				}
			}
			f, err := v.Float64()
			if err != nil {
				return nil, fmt.Errorf("tag field %q: %w", k, err)
			}
			out = append(out, model.Float64(key, f))
		case float64: // set in code, not decoded: as Jaeger reads it
			if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
				out = append(out, model.Int64(key, int64(v)))
			} else {
				out = append(out, model.Float64(key, v))
			}
		default:
			return nil, fmt.Errorf("tag field %q has unsupported value %T", k, v)
		}
	}
	return out, nil
}

func toKeyValue(kv KeyValue) (model.KeyValue, error) {
	var text string
	switch v := kv.Value.(type) {
	case string:
		text = v
	case bool:
		text = strconv.FormatBool(v)
	case float64:
		if kv.Type == "int64" && v == math.Trunc(v) {
			text = strconv.FormatInt(int64(v), 10)
		} else {
			text = strconv.FormatFloat(v, 'g', -1, 64)
		}
	case int64:
		text = strconv.FormatInt(v, 10)
	case nil:
	default:
		return model.KeyValue{}, fmt.Errorf("tag %q has unsupported value %T", kv.Key, v)
	}
	switch kv.Type {
	case "", "string":
		return model.String(kv.Key, text), nil
	case "bool":
		b, err := strconv.ParseBool(text)
		if err != nil {
			return model.KeyValue{}, fmt.Errorf("tag %q: bad bool %q", kv.Key, text)
		}
		return model.Bool(kv.Key, b), nil
	case "int64":
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return model.KeyValue{}, fmt.Errorf("tag %q: bad int64 %q", kv.Key, text)
		}
		return model.Int64(kv.Key, n), nil
	case "float64":
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return model.KeyValue{}, fmt.Errorf("tag %q: bad float64 %q", kv.Key, text)
		}
		return model.Float64(kv.Key, f), nil
	case "binary":
		b, err := hex.DecodeString(text)
		if err != nil {
			return model.KeyValue{}, fmt.Errorf("tag %q: bad binary hex", kv.Key)
		}
		return model.Binary(kv.Key, b), nil
	}
	return model.KeyValue{}, fmt.Errorf("tag %q: unknown type %q", kv.Key, kv.Type)
}
