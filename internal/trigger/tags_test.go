package trigger_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
)

func TestParseTags(t *testing.T) {
	tests := []struct {
		name    string
		tags    map[string]string
		want    trigger.KeyTags
		problem string // non-empty: want a TagError containing it
		tag     string // the tag the error names
	}{
		{
			name: "no tags: not opted in, managed services by default",
			tags: map[string]string{},
			want: trigger.KeyTags{UseCases: managed},
		},
		{
			name: "one workspace",
			tags: map[string]string{"databricks:workspace": "1234567890123456"},
			want: trigger.KeyTags{WorkspaceIDs: []string{"1234567890123456"}, UseCases: managed},
		},
		{
			name: "workspaces separated by spaces, plus, slash and commas are sorted and deduplicated",
			tags: map[string]string{"databricks:workspace": " 30+2/1000, 2  30 "},
			want: trigger.KeyTags{WorkspaceIDs: []string{"2", "30", "1000"}, UseCases: managed},
		},
		{
			name: "both use cases in any case and spelling, reuse and dry run",
			tags: map[string]string{
				"databricks:workspace": "7", "databricks:use-cases": "storage Managed-Services",
				"databricks:reuse-key-for-cluster-volumes": "False", "databricks:dry-run": "TRUE",
			},
			want: trigger.KeyTags{WorkspaceIDs: []string{"7"}, UseCases: both, ReuseKeyForClusterVolumes: ptr(false), DryRun: true},
		},
		{
			name: "STORAGE alone",
			tags: map[string]string{"databricks:workspace": "7", "databricks:use-cases": "STORAGE"},
			want: trigger.KeyTags{WorkspaceIDs: []string{"7"}, UseCases: []string{"STORAGE"}},
		},
		{
			name: "tags outside the prefix and unknown keys under it are ignored",
			tags: map[string]string{"databricks:workspace": "7", "databricks:owner": "x", "Databricks:dry-run": "maybe", "workspace": "oops"},
			want: trigger.KeyTags{WorkspaceIDs: []string{"7"}, UseCases: managed},
		},
		{name: "a workspace id with a leading zero", tags: map[string]string{"databricks:workspace": "0123"}, tag: "databricks:workspace", problem: `"0123" is not a Databricks workspace id`},
		{name: "a workspace id too long for an int64", tags: map[string]string{"databricks:workspace": "12345678901234567890"}, tag: "databricks:workspace", problem: "is not a Databricks workspace id"},
		{name: "a workspace tag of separators only", tags: map[string]string{"databricks:workspace": " + / "}, tag: "databricks:workspace", problem: "it names no workspace id"},
		{name: "an empty use-cases tag", tags: map[string]string{"databricks:workspace": "1", "databricks:use-cases": ""}, tag: "databricks:use-cases", problem: "it names no use case"},
		{name: "reuse that is not a boolean", tags: map[string]string{"databricks:workspace": "1", "databricks:use-cases": "STORAGE", "databricks:reuse-key-for-cluster-volumes": "1"}, tag: "databricks:reuse-key-for-cluster-volumes", problem: "want true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := trigger.ParseTags("databricks:", tt.tags)
			if tt.problem == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				return
			}
			var tagErr *trigger.TagError
			require.ErrorAs(t, err, &tagErr)
			assert.Equal(t, tt.tag, tagErr.Tag)
			assert.Equal(t, tt.tags[tt.tag], tagErr.Value)
			assert.Contains(t, err.Error(), tt.problem)
		})
	}
}
