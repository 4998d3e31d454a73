package rotation_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

const testKeyARN = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

func TestParseRequestAcceptsAndNormalises(t *testing.T) {
	yes := true
	for _, tc := range []struct {
		name string
		raw  string
		want rotation.Request
	}{
		{
			name: "workspace ids as strings and as numbers",
			raw:  `{"workspace_ids": ["1234567890123456", 2345678901234567], "key_arn": "` + testKeyARN + `"}`,
			want: rotation.Request{WorkspaceIDs: []string{"1234567890123456", "2345678901234567"}, KeyARN: testKeyARN, UseCases: []string{"MANAGED_SERVICES"}},
		},
		{
			name: "duplicate ids are dropped, first occurrence kept",
			raw:  `{"workspace_ids": ["2345678901234567", 1234567890123456, "1234567890123456", " 2345678901234567 "], "key_arn": "` + testKeyARN + `"}`,
			want: rotation.Request{WorkspaceIDs: []string{"2345678901234567", "1234567890123456"}, KeyARN: testKeyARN, UseCases: []string{"MANAGED_SERVICES"}},
		},
		{
			name: "use cases default to MANAGED_SERVICES when absent",
			raw:  `{"workspace_ids": ["1"], "key_arn": "` + testKeyARN + `"}`,
			want: rotation.Request{WorkspaceIDs: []string{"1"}, KeyARN: testKeyARN, UseCases: []string{"MANAGED_SERVICES"}},
		},
		{
			name: "use cases default to MANAGED_SERVICES when empty or null",
			raw:  `{"workspace_ids": ["1"], "key_arn": "` + testKeyARN + `", "use_cases": null}`,
			want: rotation.Request{WorkspaceIDs: []string{"1"}, KeyARN: testKeyARN, UseCases: []string{"MANAGED_SERVICES"}},
		},
		{
			name: "use cases are upper-cased, deduplicated and sorted",
			raw:  `{"workspace_ids": ["1"], "key_arn": "` + testKeyARN + `", "use_cases": [" storage ", "managed_services", "STORAGE"]}`,
			want: rotation.Request{WorkspaceIDs: []string{"1"}, KeyARN: testKeyARN, UseCases: []string{"MANAGED_SERVICES", "STORAGE"}},
		},
		{
			name: "reuse with STORAGE, alias, dry run and trigger are kept",
			raw: `{"workspace_ids": ["1"], "key_arn": " ` + testKeyARN + ` ", "key_alias": "alias/databricks/ws-cmk", "use_cases": ["STORAGE"],
				"reuse_key_for_cluster_volumes": true, "dry_run": true,
				"trigger": {"event_id": "e1", "event_name": "CreateKey", "actor": "arn:aws:iam::111122223333:user/Alice", "event_time": "2021-03-23T18:58:30Z"}}`,
			want: rotation.Request{WorkspaceIDs: []string{"1"}, KeyARN: testKeyARN, KeyAlias: "alias/databricks/ws-cmk", UseCases: []string{"STORAGE"},
				ReuseKeyForClusterVolumes: &yes, DryRun: true,
				Trigger: &rotation.Trigger{EventID: "e1", EventName: "CreateKey", Actor: "arn:aws:iam::111122223333:user/Alice", EventTime: "2021-03-23T18:58:30Z"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rotation.ParseRequest([]byte(tc.raw))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseRequestRejectsNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want []string
	}{
		{"an unknown field", `{"workspace_id": ["1"], "key_arn": "k"}`, []string{`unknown field "workspace_id"`, "allowed: workspace_ids"}},
		{"reuse without STORAGE", `{"workspace_ids": ["1"], "key_arn": "k", "reuse_key_for_cluster_volumes": false}`, []string{"reuse_key_for_cluster_volumes", "STORAGE"}},
		{"reuse with the default use case", `{"workspace_ids": ["1"], "key_arn": "k", "use_cases": ["MANAGED_SERVICES"], "reuse_key_for_cluster_volumes": true}`, []string{"reuse_key_for_cluster_volumes"}},
		{"no workspace ids", `{"workspace_ids": [], "key_arn": "k"}`, []string{"workspace_ids: at least one"}},
		{"an id that is not digits", `{"workspace_ids": ["12a"], "key_arn": "k"}`, []string{"workspace_ids[0]", `"12a"`}},
		{"an id with a leading zero", `{"workspace_ids": ["1", "0123"], "key_arn": "k"}`, []string{"workspace_ids[1]"}},
		{"a negative id", `{"workspace_ids": [-5], "key_arn": "k"}`, []string{"workspace_ids[0]"}},
		{"a fractional id", `{"workspace_ids": [1.5], "key_arn": "k"}`, []string{"workspace_ids[0]"}},
		{"no key_arn", `{"workspace_ids": ["1"]}`, []string{"key_arn: required"}},
		{"an emergency claimed by an automatic trigger", `{"workspace_ids": ["1"], "key_arn": "k", "emergency": true, "trigger": {"event_id": "e", "event_name": "CreateKey"}}`, []string{"emergency: only a start by hand"}},
		{"an emergency that is not a boolean", `{"workspace_ids": ["1"], "key_arn": "k", "emergency": "yes"}`, []string{"field emergency"}},
		{"a blank key_arn", `{"workspace_ids": ["1"], "key_arn": "  "}`, []string{"key_arn: required"}},
		{"an unknown use case", `{"workspace_ids": ["1"], "key_arn": "k", "use_cases": ["EBS"]}`, []string{"use_cases[0]", `"EBS"`}},
		{"an alias without alias/", `{"workspace_ids": ["1"], "key_arn": "k", "key_alias": "databricks/ws"}`, []string{"key_alias", "alias/"}},
		{"a field of the wrong type", `{"workspace_ids": ["1"], "key_arn": "k", "dry_run": "yes"}`, []string{"field dry_run", "bool"}},
		{"ids given as a string", `{"workspace_ids": "1", "key_arn": "k"}`, []string{"field workspace_ids"}},
		{"a truncated document", `{"workspace_ids": ["1"], "key_arn": "k"`, []string{"malformed JSON"}},
		{"a syntax error", `{"workspace_ids": ["1"],, "key_arn": "k"}`, []string{"malformed JSON at byte"}},
		{"an array", `[{"workspace_ids": ["1"]}]`, []string{"input must be a JSON object"}},
		{"nothing", ``, []string{"input must be a JSON object"}},
		{"every problem at once", `{"workspace_ids": ["x"], "use_cases": ["EBS"], "key_alias": "k"}`, []string{"workspace_ids[0]", "key_arn", "use_cases[0]", "key_alias"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rotation.ParseRequest([]byte(tc.raw))
			var invalid *taskerr.InvalidInput
			require.True(t, errors.As(err, &invalid), "want *taskerr.InvalidInput, got %T: %v", err, err)
			for _, w := range tc.want {
				assert.Contains(t, invalid.Reason, w)
			}
			assert.Equal(t, rotation.Request{}, got)
		})
	}
}

// TestParseRequestRejectsTrailingData pins a gap FuzzParseRequest found: a decoder reads the first
// JSON value and ignores what follows, so a document with trailing data was accepted.
func TestParseRequestRejectsTrailingData(t *testing.T) {
	for _, raw := range []string{
		`{"workspace_ids": ["1"], "key_arn": "k"} trailing`,
		`{"workspace_ids": ["1"], "key_arn": "k"}{"workspace_ids": [`,
	} {
		_, err := rotation.ParseRequest([]byte(raw))
		var invalid *taskerr.InvalidInput
		assert.True(t, errors.As(err, &invalid), "accepted %q", raw)
	}
}

func TestParseRequestMatchesFieldNamesExactlyAndReadsEscapedIDs(t *testing.T) {
	_, err := rotation.ParseRequest([]byte(`{"WORKSPACE_IDS": ["1"], "key_arn": "k"}`))
	var invalid *taskerr.InvalidInput
	require.True(t, errors.As(err, &invalid))
	assert.Contains(t, invalid.Reason, `unknown field "WORKSPACE_IDS"`)

	got, err := rotation.ParseRequest([]byte(`{"workspace_ids": ["\u0031\u0032"], "key_arn": "k"}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"12"}, got.WorkspaceIDs)

	_, err = rotation.ParseRequest([]byte(`{"workspace_ids": ["1"], "key_arn": "k", "trigger": {"event_id": "e", "surprise": 1}}`))
	require.True(t, errors.As(err, &invalid))
	assert.Contains(t, invalid.Reason, `field trigger: unknown field "surprise"`)
}

func TestParseRequestRefusesMoreWorkspacesThanTheCapNamingTheCountAndTheCap(t *testing.T) {
	ids := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprint(1000000000000000+i))
		}
		return out
	}
	input := func(n int) []byte {
		raw, err := json.Marshal(map[string]any{"workspace_ids": ids(n), "key_arn": "arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"})
		require.NoError(t, err)
		return raw
	}
	req, err := rotation.ParseRequest(input(rotation.MaxWorkspacesPerRequest))
	require.NoError(t, err, "the cap itself is accepted")
	assert.Len(t, req.WorkspaceIDs, rotation.MaxWorkspacesPerRequest)

	_, err = rotation.ParseRequest(input(rotation.MaxWorkspacesPerRequest + 1))
	var invalid *taskerr.InvalidInput
	require.ErrorAs(t, err, &invalid)
	assert.Contains(t, err.Error(), fmt.Sprintf("workspace_ids: %d workspaces, but one request rotates at most %d", rotation.MaxWorkspacesPerRequest+1, rotation.MaxWorkspacesPerRequest))

	// Duplicates are one workspace: the cap counts distinct workspaces.
	dup, err := json.Marshal(map[string]any{"workspace_ids": append(ids(rotation.MaxWorkspacesPerRequest), ids(5)...), "key_arn": "arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"})
	require.NoError(t, err)
	_, err = rotation.ParseRequest(dup)
	assert.NoError(t, err)
}
