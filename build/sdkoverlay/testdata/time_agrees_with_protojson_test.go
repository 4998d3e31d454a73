// Put beside the stub of common/types/time in the SDK copy by build/sdkoverlay's tests (with
// -overlay): compares the stub with what the original did, protojson on a timestamppb.Timestamp.

package time_test

import (
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	gotime "time"

	sdktime "github.com/databricks/databricks-sdk-go/common/types/time"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestTimeStubAgreesWithProtojson(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	instants := []gotime.Time{{}, gotime.Unix(0, 0), gotime.Unix(0, 1), gotime.Unix(-1, 999999999),
		gotime.Date(1, 1, 1, 0, 0, 0, 0, gotime.UTC), gotime.Date(9999, 12, 31, 23, 59, 59, 999999999, gotime.UTC),
		gotime.Date(10000, 1, 1, 0, 0, 0, 0, gotime.UTC), gotime.Date(0, 12, 31, 23, 59, 59, 0, gotime.UTC),
		gotime.Date(2024, 2, 29, 12, 30, 0, 120000000, gotime.FixedZone("x", 5*3600+1800)),
		gotime.Date(2024, 2, 29, 12, 30, 0, 123456000, gotime.UTC), gotime.Date(2024, 2, 29, 12, 30, 0, 123456789, gotime.UTC)}
	for range 2000 {
		instants = append(instants, gotime.Unix(rng.Int64N(253402300799+62135596800+100)-62135596800-50, rng.Int64N(1e9)))
		instants = append(instants, gotime.Unix(rng.Int64N(4e9), int64(rng.IntN(1000))*1e6))
	}
	for _, in := range instants {
		want, wantErr := protojson.Marshal(timestamppb.New(in))
		got, gotErr := sdktime.New(in).MarshalJSON()
		if (wantErr != nil) != (gotErr != nil) || string(got) != string(want) {
			t.Fatalf("MarshalJSON(%v) = %s, %v; protojson: %s, %v", in, got, gotErr, want, wantErr)
		}
		v := url.Values{}
		if err := sdktime.New(in).EncodeValues("k", &v); (err != nil) != (wantErr != nil) || (err == nil && v.Get("k") != strings.Trim(string(want), `"`)) {
			t.Fatalf("EncodeValues(%v) = %q, %v; protojson: %s", in, v.Get("k"), err, want)
		}
		if wantErr == nil {
			checkUnmarshal(t, want)
		}
		if !sdktime.New(in).AsTime().Equal(timestamppb.New(in).AsTime()) || sdktime.New(in).AsTime().Location() != gotime.UTC {
			t.Fatalf("AsTime(%v) = %v", in, sdktime.New(in).AsTime())
		}
	}
	// The zero Time (nil inside) marshals as the original's nil *timestamppb.Timestamp did.
	want, _ := protojson.Marshal((*timestamppb.Timestamp)(nil))
	got, err := sdktime.Time{}.MarshalJSON()
	if err != nil || string(got) != string(want) {
		t.Fatalf("zero Time: %s, %v; protojson: %s", got, err, want)
	}
	if !(&sdktime.Time{}).AsTime().Equal((*timestamppb.Timestamp)(nil).AsTime()) || !(*sdktime.Time)(nil).AsTime().IsZero() {
		t.Fatal("AsTime of the zero and nil Time")
	}

	inputs := []string{`"2024-01-02T03:04:05Z"`, `"2024-01-02T03:04:05.1Z"`, `"2024-01-02T03:04:05.123456789Z"`,
		`"2024-01-02T03:04:05.1234567891Z"`, `"2024-01-02T03:04:05+05:30"`, `"2024-01-02T03:04:05.5-08:00"`,
		`"2024-01-02T03:04:05"`, `"2024-01-02t03:04:05z"`, `"2024-01-02 03:04:05Z"`, `"0001-01-01T00:00:00Z"`,
		`"0000-12-31T23:59:59Z"`, `"9999-12-31T23:59:59.999999999Z"`, `"9999-12-31T23:59:59-01:00"`, `"2024-02-30T00:00:00Z"`,
		`"\u0032024-01-02T03:04:05Z"`, `""`, `null`, `0`, `1704164645`, `{}`, `"2024-01-02T03:04:05.Z"`, `"2024-01-02T03:04:05.000000000000Z"`}
	for _, in := range inputs {
		checkUnmarshal(t, []byte(in))
	}
	for range 3000 {
		b := []byte(`"2024-01-02T03:04:05.123+01:00"`)
		for range 1 + rng.IntN(3) {
			b[1+rng.IntN(len(b)-2)] = "0123456789.:+-TZz "[rng.IntN(18)]
		}
		checkUnmarshal(t, b)
	}
}

func checkUnmarshal(t *testing.T, b []byte) {
	t.Helper()
	var pb timestamppb.Timestamp
	wantErr := protojson.Unmarshal(b, &pb)
	var got sdktime.Time
	gotErr := got.UnmarshalJSON(b)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("UnmarshalJSON(%s): %v; protojson: %v", b, gotErr, wantErr)
	}
	if wantErr == nil && (!got.AsTime().Equal(pb.AsTime()) || got.AsTime().Location() != gotime.UTC) {
		t.Fatalf("UnmarshalJSON(%s) = %v; protojson: %v", b, got.AsTime(), pb.AsTime())
	}
	// Through encoding/json, as the SDK's models use it.
	var model struct {
		T *sdktime.Time `json:"t,omitempty"`
	}
	err := json.Unmarshal([]byte(`{"t":`+string(b)+`}`), &model)
	if string(b) != "null" && (wantErr != nil) != (err != nil) {
		t.Fatalf("json.Unmarshal of %s: %v; protojson: %v", b, err, wantErr)
	}
}
