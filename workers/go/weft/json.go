package weft

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// rawJSON is the JSON text of a google.protobuf.Value; "null" when unset.
func rawJSON(v *structpb.Value) json.RawMessage {
	if v == nil || v.GetKind() == nil {
		return json.RawMessage("null")
	}
	b, err := protojson.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return json.RawMessage(b)
}

// toValue converts a handler's result to a google.protobuf.Value with encoding/json semantics.
func toValue(v any) (*structpb.Value, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := &structpb.Value{}
	if err := protojson.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("converting %s: %w", b, err)
	}
	return out, nil
}
