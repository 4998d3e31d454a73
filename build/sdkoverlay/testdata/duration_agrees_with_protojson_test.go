// Put beside the stub of common/types/duration in the SDK copy by build/sdkoverlay's tests (with
// -overlay): compares the stub with what the original did, protojson on a durationpb.Duration.

package duration_test

import (
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	sdkduration "github.com/databricks/databricks-sdk-go/common/types/duration"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestDurationStubAgreesWithProtojson(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ds := []time.Duration{0, 1, -1, time.Millisecond, -1500 * time.Millisecond, time.Microsecond, 3300 * time.Millisecond,
		time.Hour, math.MaxInt64, math.MinInt64, math.MinInt64 + 1}
	for range 3000 {
		ds = append(ds, time.Duration(rng.Int64()), -time.Duration(rng.Int64N(1e12)), time.Duration(rng.Int64N(1e6))*time.Millisecond)
	}
	for _, d := range ds {
		want, wantErr := protojson.Marshal(durationpb.New(d))
		got, gotErr := sdkduration.New(d).MarshalJSON()
		if (wantErr != nil) != (gotErr != nil) || string(got) != string(want) {
			t.Fatalf("MarshalJSON(%v) = %s, %v; protojson: %s, %v", d, got, gotErr, want, wantErr)
		}
		v := url.Values{}
		if err := sdkduration.New(d).EncodeValues("k", &v); err != nil || v.Get("k") != strings.Trim(string(want), `"`) {
			t.Fatalf("EncodeValues(%v) = %q, %v; protojson: %s", d, v.Get("k"), err, want)
		}
		if sdkduration.New(d).AsDuration() != durationpb.New(d).AsDuration() {
			t.Fatalf("AsDuration(%v) = %v", d, sdkduration.New(d).AsDuration())
		}
		checkDuration(t, want)
	}
	want, _ := protojson.Marshal((*durationpb.Duration)(nil))
	if got, err := (sdkduration.Duration{}).MarshalJSON(); err != nil || string(got) != string(want) {
		t.Fatalf("zero Duration: %s, %v; protojson: %s", got, err, want)
	}
	if (&sdkduration.Duration{}).AsDuration() != 0 || (*sdkduration.Duration)(nil).AsDuration() != 0 {
		t.Fatal("AsDuration of the zero and nil Duration")
	}

	inputs := []string{`"1s"`, `"0.1s"`, `"1.s"`, `".1s"`, `"+1s"`, `"-1s"`, `"-.1s"`, `"1.000000001s"`, `"1.0000000001s"`,
		`"315576000000s"`, `"315576000001s"`, `"-315576000000.999999999s"`, `"9223372036854775807s"`, `"9223372036854775808s"`,
		`"s"`, `""`, `"1"`, `"00s"`, `"01s"`, `"-0s"`, `"1e3s"`, `"1.5S"`, `" 1s"`, `"\u0031s"`, `null`, `1`, `"-s"`, `"+.s"`, `"."`}
	for _, in := range inputs {
		checkDuration(t, []byte(in))
	}
	for range 5000 {
		n := 1 + rng.IntN(14)
		b := make([]byte, 0, n+2)
		b = append(b, '"')
		for range n {
			b = append(b, "0123456789.-+s"[rng.IntN(14)])
		}
		checkDuration(t, append(b, '"'))
	}
}

func checkDuration(t *testing.T, b []byte) {
	t.Helper()
	var pb durationpb.Duration
	wantErr := protojson.Unmarshal(b, &pb)
	var got sdkduration.Duration
	gotErr := got.UnmarshalJSON(b)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("UnmarshalJSON(%s): %v; protojson: %v", b, gotErr, wantErr)
	}
	if wantErr == nil && got.AsDuration() != pb.AsDuration() {
		t.Fatalf("UnmarshalJSON(%s) = %v; protojson: %v", b, got.AsDuration(), pb.AsDuration())
	}
	if wantErr == nil {
		// The original kept durationpb.New(pb.AsDuration()): compare what each marshals back to.
		again, _ := protojson.Marshal(durationpb.New(pb.AsDuration()))
		if mine, err := got.MarshalJSON(); err != nil || string(mine) != string(again) {
			t.Fatalf("%s marshals back to %s, %v; original: %s", b, mine, err, again)
		}
	}
}
