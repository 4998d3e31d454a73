package rotation_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// requestFields are the names a rejection may point at; "JSON" stands for a malformed document.
var requestFields = []string{"workspace_ids", "key_arn", "key_alias", "use_cases", "reuse_key_for_cluster_volumes", "dry_run", "trigger", "JSON"}

var digitsRE = regexp.MustCompile(`^[0-9]+$`)

// FuzzParseRequest feeds hostile execution inputs to ParseRequest. It must never panic; every
// rejection is a *taskerr.InvalidInput that names the field at fault; every accepted request is one
// the state machine can run (at least one digits-only workspace id, a key ARN, known use cases,
// sorted and unique) and survives its own round trip through JSON unchanged, as it does when the
// trigger writes it and Validate reads it back. The seed corpus is in testdata/fuzz/FuzzParseRequest.
//
// Not checked here: that the whole input is one JSON value. ParseRequest ignores trailing data
// (see TestParseRequestRejectsTrailingData); the fuzzer would find that at once and stop there.
func FuzzParseRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := rotation.ParseRequest(raw)
		if err != nil {
			var invalid *taskerr.InvalidInput
			if !errors.As(err, &invalid) {
				t.Fatalf("rejection is %T, not *taskerr.InvalidInput: %v", err, err)
			}
			// Every message starts with "input ..."; what follows must point somewhere.
			rest := strings.TrimPrefix(strings.TrimPrefix(invalid.Reason, "input is not valid: "), "input must be ")
			if !slices.ContainsFunc(requestFields, func(f string) bool { return strings.Contains(rest, f) }) {
				t.Fatalf("rejection names no field: %q", invalid.Reason)
			}
			if !isZero(req) {
				t.Fatalf("rejection with a non-zero request %+v", req)
			}
			return
		}
		checkAccepted(t, req)
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("encode accepted request: %v", err)
		}
		back, err := rotation.ParseRequest(again)
		if err != nil {
			t.Fatalf("an accepted request does not parse again: %v\n%s", err, again)
		}
		if !sameRequest(req, back) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, back)
		}
	})
}

func checkAccepted(t *testing.T, req rotation.Request) {
	t.Helper()
	if len(req.WorkspaceIDs) == 0 {
		t.Fatal("accepted without a workspace id")
	}
	seen := map[string]bool{}
	for _, id := range req.WorkspaceIDs {
		if !digitsRE.MatchString(id) {
			t.Fatalf("accepted workspace id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate workspace id %q", id)
		}
		seen[id] = true
	}
	if strings.TrimSpace(req.KeyARN) == "" || strings.TrimSpace(req.KeyARN) != req.KeyARN {
		t.Fatalf("accepted key_arn %q", req.KeyARN)
	}
	if len(req.UseCases) == 0 || !slices.IsSorted(req.UseCases) || len(slices.Compact(slices.Clone(req.UseCases))) != len(req.UseCases) {
		t.Fatalf("use cases %q are not sorted and unique", req.UseCases)
	}
	for _, uc := range req.UseCases {
		if uc != rotation.UseCaseManagedServices && uc != rotation.UseCaseStorage {
			t.Fatalf("accepted use case %q", uc)
		}
	}
	if req.ReuseKeyForClusterVolumes != nil && !slices.Contains(req.UseCases, rotation.UseCaseStorage) {
		t.Fatal("reuse_key_for_cluster_volumes accepted without STORAGE")
	}
	if req.KeyAlias != "" && !strings.HasPrefix(req.KeyAlias, "alias/") {
		t.Fatalf("accepted key_alias %q", req.KeyAlias)
	}
}

func isZero(r rotation.Request) bool {
	return r.WorkspaceIDs == nil && r.KeyARN == "" && r.KeyAlias == "" && r.UseCases == nil &&
		r.ReuseKeyForClusterVolumes == nil && !r.DryRun && r.Trigger == nil
}

func sameRequest(a, b rotation.Request) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
