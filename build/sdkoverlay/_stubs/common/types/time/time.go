// Stub of github.com/databricks/databricks-sdk-go@v0.182.0/common/types/time/time.go, substituted
// for it in the shipped build (see build/sdkoverlay and the Makefile). The original wraps
// timestamppb.Timestamp and (un)marshals it with protojson, which links the protobuf runtime into
// every binary that links an SDK service package; protojson's initialisers make the descriptor
// formatting reachable, which calls reflect.Value.MethodByName, and that makes the Go linker keep
// every exported method of every type in the binary (each SDK, S3 and KMS API method, unused or
// not). This file keeps the same API and the same JSON and query encoding, written with the
// standard library: protojson's rules for google.protobuf.Timestamp (encoding/protojson
// well_known_types.go, protobuf v1.36.10), ported line for line. build/sdkoverlay's tests run the
// SDK's own tests of this package against it, and compare it with protojson on many values.

package time

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// timestamp holds what timestamppb.Timestamp held; a nil *timestamp reads as zeros, as a nil
// *timestamppb.Timestamp did.
type timestamp struct {
	seconds int64
	nanos   int32
}

func (x *timestamp) get() (int64, int32) {
	if x == nil {
		return 0, 0
	}
	return x.seconds, x.nanos
}

// Time is a wrapper for a protobuf-style Timestamp to provide custom marshaling
// for JSON and URL query strings.
//
// It exposes the .AsTime() method to easily convert to time.Time.
type Time struct {
	internal *timestamp
}

// New creates a custom Time from a standard time.Time.
func New(t time.Time) *Time {
	return &Time{internal: &timestamp{seconds: t.Unix(), nanos: int32(t.Nanosecond())}}
}

// AsTime returns the underlying time.Time value.
func (x *Time) AsTime() time.Time {
	if x == nil {
		return time.Time{}
	}
	secs, nanos := x.internal.get()
	return time.Unix(secs, int64(nanos)).UTC()
}

const (
	maxTimestampSeconds = 253402300799
	minTimestampSeconds = -62135596800
	secondsInNanos      = 999999999
)

// format is protojson's marshalTimestamp: RFC 3339, Z-normalised, 0, 3, 6 or 9 fractional digits.
func (t Time) format() (string, error) {
	secs, nanos := t.internal.get()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds {
		return "", fmt.Errorf("proto: google.protobuf.Timestamp: seconds out of range %v", secs)
	}
	if nanos < 0 || nanos > secondsInNanos {
		return "", fmt.Errorf("proto: google.protobuf.Timestamp: nanos out of range %v", nanos)
	}
	x := time.Unix(secs, int64(nanos)).UTC().Format("2006-01-02T15:04:05.000000000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, ".000")
	return x + "Z", nil
}

// MarshalJSON implements the [json.Marshaler] interface
// by marshalling the time as a protobuf Timestamp.
func (t Time) MarshalJSON() ([]byte, error) {
	s, err := t.format()
	if err != nil {
		return nil, err
	}
	return []byte(`"` + s + `"`), nil
}

// UnmarshalJSON implements the [json.Unmarshaler] interface
// by unmarshalling the time from a protobuf Timestamp (protojson's unmarshalTimestamp).
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("proto: syntax error: unexpected token %s", b)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("proto: syntax error: %w", err)
	}
	parsed, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("proto: invalid google.protobuf.Timestamp value %s", b)
	}
	secs := parsed.Unix()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds {
		return fmt.Errorf("proto: google.protobuf.Timestamp value out of range: %s", b)
	}
	i := strings.LastIndexByte(s, '.')  // start of subsecond field
	j := strings.LastIndexAny(s, "Z-+") // start of timezone field
	if i >= 0 && j >= i && j-i > len(".999999999") {
		return fmt.Errorf("proto: invalid google.protobuf.Timestamp value %s", b)
	}
	*t = Time{internal: &timestamp{seconds: secs, nanos: int32(parsed.Nanosecond())}}
	return nil
}

// EncodeValues implements the [query.Encoder] interface by encoding the
// time as a protobuf Timestamp.
func (t Time) EncodeValues(key string, v *url.Values) error {
	s, err := t.format()
	if err != nil {
		return err
	}
	v.Set(key, s)
	return nil
}
