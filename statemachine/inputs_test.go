package statemachine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// The console inputs docs/deploy.md tells operators to paste must be requests the Validate task
// accepts, for keys and workspaces that the events/kms/ fixtures know.
func TestEveryConsoleInputExampleIsARequestTheRotationAccepts(t *testing.T) {
	files, err := filepath.Glob("../events/inputs/*.json")
	require.NoError(t, err)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for _, want := range []string{"rotate-managed-services.json", "add-storage-key.json", "dry-run.json", "several-workspaces.json"} {
		assert.Contains(t, names, want, "docs/deploy.md refers to events/inputs/%s", want)
	}

	fixtures, err := filepath.Glob("../events/kms/*.json")
	require.NoError(t, err)
	var known string
	for _, f := range fixtures {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		known += string(b)
	}
	keyID := regexp.MustCompile(`key/([0-9a-f-]{36})$`)

	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			require.NoError(t, err)
			req, err := rotation.ParseRequest(raw)
			require.NoError(t, err, "the Validate task would reject this input")
			m := keyID.FindStringSubmatch(req.KeyARN)
			if assert.NotNil(t, m, "key_arn %s is not a key ARN", req.KeyARN) {
				assert.Contains(t, known, m[1], "key %s appears in no events/kms fixture", m[1])
			}
			for _, ws := range req.WorkspaceIDs {
				assert.Contains(t, known, ws, "workspace %s appears in no events/kms fixture", ws)
			}
			assert.True(t, json.Valid(raw))
		})
	}
}
