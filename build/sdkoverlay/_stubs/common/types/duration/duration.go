// Stub of github.com/databricks/databricks-sdk-go@v0.182.0/common/types/duration/duration.go,
// substituted for it in the shipped build (see build/sdkoverlay and the Makefile). The original
// wraps durationpb.Duration and (un)marshals it with protojson; see the stub of
// common/types/time/time.go for why the shipped functions must not link protobuf. Same API, same
// JSON and query encoding: protojson's rules for google.protobuf.Duration and durationpb's
// conversions (protobuf v1.36.10), ported line for line.

package duration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// pbDuration holds what durationpb.Duration held; a nil *pbDuration reads as zeros.
type pbDuration struct {
	seconds int64
	nanos   int32
}

func (x *pbDuration) get() (int64, int32) {
	if x == nil {
		return 0, 0
	}
	return x.seconds, x.nanos
}

// Duration is a wrapper for a protobuf-style Duration to provide custom marshaling
// for JSON and URL query strings.
//
// It exposes the .AsDuration() method to easily convert to time.Duration.
type Duration struct {
	internal *pbDuration
}

// New creates a custom Duration from a standard time.Duration (durationpb.New).
func New(d time.Duration) *Duration {
	nanos := d.Nanoseconds()
	secs := nanos / 1e9
	nanos -= secs * 1e9
	return &Duration{internal: &pbDuration{seconds: secs, nanos: int32(nanos)}}
}

// AsDuration returns the underlying time.Duration value (durationpb's AsDuration: the closest
// value on overflow).
func (x *Duration) AsDuration() time.Duration {
	if x == nil {
		return 0
	}
	return asDuration(x.internal.get())
}

func asDuration(secs int64, nanos int32) time.Duration {
	d := time.Duration(secs) * time.Second
	overflow := d/time.Second != time.Duration(secs)
	d += time.Duration(nanos) * time.Nanosecond
	overflow = overflow || (secs < 0 && nanos < 0 && d > 0)
	overflow = overflow || (secs > 0 && nanos > 0 && d < 0)
	if overflow {
		switch {
		case secs < 0:
			return time.Duration(math.MinInt64)
		case secs > 0:
			return time.Duration(math.MaxInt64)
		}
	}
	return d
}

const (
	secondsInNanos       = 999999999
	maxSecondsInDuration = 315576000000
)

// format is protojson's marshalDuration: 0, 3, 6 or 9 fractional digits and the suffix "s".
func (d Duration) format() (string, error) {
	secs, nanos := d.internal.get()
	if secs < -maxSecondsInDuration || secs > maxSecondsInDuration {
		return "", fmt.Errorf("proto: google.protobuf.Duration: seconds out of range %v", secs)
	}
	if nanos < -secondsInNanos || nanos > secondsInNanos {
		return "", fmt.Errorf("proto: google.protobuf.Duration: nanos out of range %v", nanos)
	}
	if (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		return "", fmt.Errorf("proto: google.protobuf.Duration: signs of seconds and nanos do not match")
	}
	var sign string
	if secs < 0 || nanos < 0 {
		sign, secs, nanos = "-", -1*secs, -1*nanos
	}
	x := fmt.Sprintf("%s%d.%09d", sign, secs, nanos)
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, ".000")
	return x + "s", nil
}

// MarshalJSON implements the [json.Marshaler] interface
// by marshalling the duration as a protobuf Duration.
func (d Duration) MarshalJSON() ([]byte, error) {
	s, err := d.format()
	if err != nil {
		return nil, err
	}
	return []byte(`"` + s + `"`), nil
}

// EncodeValues implements the [query.Encoder] interface by encoding the
// duration as a string, like "3.3s".
func (d Duration) EncodeValues(key string, v *url.Values) error {
	s, err := d.format()
	if err != nil {
		return err
	}
	v.Set(key, s)
	return nil
}

// UnmarshalJSON implements the [json.Unmarshaler] interface. It can parse a
// duration from the protobuf Duration (protojson's unmarshalDuration).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("proto: syntax error: unexpected token %s", b)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("proto: syntax error: %w", err)
	}
	secs, nanos, ok := parseDuration(s)
	if !ok {
		return fmt.Errorf("proto: invalid google.protobuf.Duration value %s", b)
	}
	if secs < -maxSecondsInDuration || secs > maxSecondsInDuration {
		return fmt.Errorf("proto: google.protobuf.Duration value out of range: %s", b)
	}
	*d = *New(asDuration(secs, nanos))
	return nil
}

// parseDuration is protojson's: a decimal number with a suffix 's', an optional sign, at least
// an integer or a fractional part, at most 9 fractional digits. E.g. 1s, 0.1s, 1.s, .1s, +1s, -.1s.
func parseDuration(input string) (int64, int32, bool) {
	b := []byte(input)
	size := len(b)
	if size < 2 {
		return 0, 0, false
	}
	if b[size-1] != 's' {
		return 0, 0, false
	}
	b = b[:size-1]

	var neg bool
	switch b[0] {
	case '-':
		neg = true
		b = b[1:]
	case '+':
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, 0, false
	}

	var intp []byte
	switch {
	case b[0] == '0':
		b = b[1:]
	case '1' <= b[0] && b[0] <= '9':
		intp = b[0:]
		b = b[1:]
		n := 1
		for len(b) > 0 && '0' <= b[0] && b[0] <= '9' {
			n++
			b = b[1:]
		}
		intp = intp[:n]
	case b[0] == '.':
	default:
		return 0, 0, false
	}

	hasFrac := false
	var frac [9]byte
	if len(b) > 0 {
		if b[0] != '.' {
			return 0, 0, false
		}
		b = b[1:]
		n := 0
		for len(b) > 0 && n < 9 && '0' <= b[0] && b[0] <= '9' {
			frac[n] = b[0]
			n++
			b = b[1:]
		}
		if len(b) > 0 {
			return 0, 0, false
		}
		for i := n; i < 9; i++ {
			frac[i] = '0'
		}
		hasFrac = true
	}

	var secs int64
	if len(intp) > 0 {
		var err error
		secs, err = strconv.ParseInt(string(intp), 10, 64)
		if err != nil {
			return 0, 0, false
		}
	}

	var nanos int64
	if hasFrac {
		nanob := bytes.TrimLeft(frac[:], "0")
		if len(nanob) > 0 {
			var err error
			nanos, err = strconv.ParseInt(string(nanob), 10, 32)
			if err != nil {
				return 0, 0, false
			}
		}
	}

	if neg {
		if secs > 0 {
			secs = -secs
		}
		if nanos > 0 {
			nanos = -nanos
		}
	}
	return secs, int32(nanos), true
}
