package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

func task(t *testing.T, now string) policy.Task {
	at, err := time.Parse(time.RFC3339, now)
	require.NoError(t, err)
	return policy.Task{Policy: mustParse(t, base), Now: func() time.Time { return at }}
}

func TestTheTaskComputesTheWindowWaitAndEmergenciesSkipIt(t *testing.T) {
	in := policy.TaskInput{Request: []byte(`{"workspace_ids": ["1111111111111111"], "key_arn": "arn:aws:kms:us-west-2:111122223333:key/k"}`)}
	out, err := task(t, "2026-12-02T12:00:00Z").Handle(context.Background(), in)
	require.NoError(t, err)
	assert.Equal(t, "2026-12-06T01:00:00Z", out.WaitUntil)
	assert.Equal(t, "2026-12-06T04:00:00Z", out.WindowCloses)
	assert.True(t, out.ApprovalRequired)
	assert.Equal(t, 4500, out.BudgetSeconds)
	assert.Contains(t, out.Message, "waiting for maintenance window")

	in.Request = []byte(`{"workspace_ids": ["1111111111111111"], "key_arn": "arn:aws:kms:us-west-2:111122223333:key/k", "emergency": true}`)
	out, err = task(t, "2026-12-02T12:00:00Z").Handle(context.Background(), in)
	require.NoError(t, err)
	assert.Empty(t, out.WaitUntil)
	assert.False(t, out.ApprovalRequired)
	assert.True(t, out.Emergency)
}

func TestTheTaskRefusesWithPolicyRejected(t *testing.T) {
	in := policy.TaskInput{Request: []byte(`{"workspace_ids": ["1111111111111111"], "key_arn": "arn:aws:kms:us-west-2:111122223333:key/k", "use_cases": ["STORAGE"]}`)}
	_, err := task(t, "2026-12-02T12:00:00Z").Handle(context.Background(), in)
	var refused *taskerr.PolicyRejected
	require.ErrorAs(t, err, &refused)
	assert.Contains(t, err.Error(), `rule "prod"`)

	_, err = task(t, "2026-12-02T12:00:00Z").Handle(context.Background(), policy.TaskInput{Request: []byte(`{"key_arn": "x"}`)})
	var invalid *taskerr.InvalidInput
	assert.ErrorAs(t, err, &invalid)
}

func TestARotationThatRanMeanwhileSupersedesTheWaitingOne(t *testing.T) {
	plan := func(key string) rotation.Plan {
		return rotation.Plan{Workspaces: []rotation.WorkspaceTarget{{WorkspaceID: "1111111111111111", PreviousManagedKeyID: key}}}
	}
	assert.NoError(t, policy.Superseded(policy.Baseline(plan("a")), plan("a")))
	err := policy.Superseded(policy.Baseline(plan("a")), plan("b"))
	var sup *taskerr.RotationSuperseded
	require.True(t, errors.As(err, &sup))
	assert.Contains(t, err.Error(), `from key configuration "a" to "b"`)

	// The baseline as the state machine hands it over: the KeepBaselineKeys state's parallel lists.
	var in policy.TaskInput
	require.NoError(t, json.Unmarshal([]byte(`{"compare": {"baseline": {"workspace_ids": ["1111111111111111"],
		"previous_managed_services_key_ids": ["a"], "previous_storage_key_ids": [""]},
		"plan": {"workspaces": [{"workspace_id": "1111111111111111", "previous_managed_services_key_id": "b", "previous_storage_key_id": ""}]}}}`), &in))
	_, err = task(t, "2026-12-02T12:00:00Z").Handle(context.Background(), in)
	require.True(t, errors.As(err, &sup), "got %v", err)

	in.Compare.Baseline.PreviousStorageKeyIDs = nil
	_, err = task(t, "2026-12-02T12:00:00Z").Handle(context.Background(), in)
	var invalid *taskerr.InvalidInput
	require.ErrorAs(t, err, &invalid, "lists of different lengths compare nothing: refused")
}
