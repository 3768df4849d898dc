// Package jaegertags holds the conventions by which Jaeger's tag-only span
// model carries what OTLP and tracepipe's model keep as fields: span kind,
// status and status message.
//
// Reading (Derive): the span.kind string tag gives Kind; otel.status_code
// "OK" or "ERROR" gives Status; an error tag that is true (bool true or the
// string "true") makes Status ERROR whatever otel.status_code says;
// otel.status_description gives StatusMessage. The tags stay in Tags.
//
// Writing (Append): the tags are written as they are, and a convention tag is
// added only when the tags alone would not give back the span's Kind, Status
// or StatusMessage and the key is missing. So a span read from Jaeger is
// written back with exactly its tags, and a span from OTLP gains the tags
// Jaeger's own OTLP translator writes (span.kind, error=true,
// otel.status_code, otel.status_description).
package jaegertags

import "github.com/tracepipe/tracepipe/model"

// Tag keys of the conventions.
const (
	KeySpanKind          = "span.kind"
	KeyError             = "error"
	KeyStatusCode        = "otel.status_code"
	KeyStatusDescription = "otel.status_description"
)

// Derived is what a span's tags say about its kind and status.
type Derived struct {
	Kind          model.SpanKind
	Status        model.StatusCode
	StatusMessage string
}

// Derive reads the conventions from tags. The first tag of each key counts.
func Derive(tags model.KeyValues) Derived {
	var d Derived
	var seenKind, seenErr, seenCode, seenDesc bool
	errTrue := false
	for i := range tags {
		kv := &tags[i]
		switch kv.Key {
		case KeySpanKind:
			if !seenKind {
				seenKind = true
				if kv.Type == model.StringType {
					d.Kind = model.ParseSpanKind(kv.Str)
				}
			}
		case KeyError:
			if !seenErr {
				seenErr = true
				errTrue = IsTrue(kv)
			}
		case KeyStatusCode:
			if !seenCode {
				seenCode = true
				if kv.Type == model.StringType {
					switch kv.Str {
					case "OK":
						d.Status = model.StatusOK
					case "ERROR":
						d.Status = model.StatusError
					}
				}
			}
		case KeyStatusDescription:
			if !seenDesc {
				seenDesc = true
				if kv.Type == model.StringType {
					d.StatusMessage = kv.Str
				}
			}
		}
	}
	if errTrue {
		d.Status = model.StatusError
	}
	return d
}

// IsTrue reports whether kv is a bool true or the string "true".
func IsTrue(kv *model.KeyValue) bool {
	return (kv.Type == model.BoolType && kv.Num != 0) || (kv.Type == model.StringType && kv.Str == "true")
}

// Apply sets s.Kind, s.Status and s.StatusMessage from s.Tags.
func Apply(s *model.Span) {
	d := Derive(s.Tags)
	s.Kind, s.Status, s.StatusMessage = d.Kind, d.Status, d.StatusMessage
}

// Extra returns the convention tags to write after s.Tags so that Derive
// over the result gives s's Kind, Status and StatusMessage (nil when none
// are needed, the usual case for spans read from Jaeger).
func Extra(s *model.Span) []model.KeyValue {
	if s.Kind == model.KindUnspecified && s.Status == model.StatusUnset && s.StatusMessage == "" {
		return nil
	}
	d := Derive(s.Tags)
	var extra []model.KeyValue
	has := func(k string) bool { _, ok := s.Tags.Find(k); return ok }
	if s.Kind != d.Kind && s.Kind != model.KindUnspecified && !has(KeySpanKind) {
		extra = append(extra, model.String(KeySpanKind, s.Kind.String()))
	}
	if s.Status != d.Status {
		switch s.Status {
		case model.StatusError:
			if !has(KeyError) {
				extra = append(extra, model.Bool(KeyError, true))
			} else if !has(KeyStatusCode) {
				extra = append(extra, model.String(KeyStatusCode, "ERROR"))
			}
		case model.StatusOK:
			if !has(KeyStatusCode) {
				extra = append(extra, model.String(KeyStatusCode, "OK"))
			}
		}
	}
	if s.StatusMessage != d.StatusMessage && s.StatusMessage != "" && !has(KeyStatusDescription) {
		extra = append(extra, model.String(KeyStatusDescription, s.StatusMessage))
	}
	return extra
}
