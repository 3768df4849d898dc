package tracegen

import (
	"fmt"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

// EncoderFor returns the encoder of one message in enc, built on wire.Encode.
func EncoderFor(enc wire.Encoding) (Encoder, error) {
	if enc == wire.Auto {
		return nil, fmt.Errorf("auto is not an encoding to write: choose one of %v", wire.Encodings())
	}
	if _, err := wire.Encode(enc, nil); err != nil {
		return nil, err
	}
	return func(spans []*model.Span) ([]byte, error) {
		msgs, err := wire.Encode(enc, spans)
		if err != nil {
			return nil, err
		}
		if len(msgs) != 1 {
			return nil, fmt.Errorf("%s: %d spans gave %d messages, want 1", enc, len(spans), len(msgs))
		}
		return msgs[0], nil
	}, nil
}
