package rig_test

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
)

// executionsOf lists the executions of one state machine.
func (s *scenario) executionsOf(stateMachineARN string) []awsfake.Execution {
	var out []awsfake.Execution
	for _, e := range s.rig.AWS.Executions() {
		if e.StateMachineArn == stateMachineARN {
			out = append(out, e)
		}
	}
	return out
}

// An operator stops the execution while Databricks applies the PATCH it accepted: the execution
// never reaches ScheduleRetirementReminder, yet the previous key stays in use for 24 hours. The real
// rescue bootstrap, handed the ABORTED status change, starts the reminder the definition would
// have, under the same name, and the reminder then runs to its Previous Key Retirable event.
func TestARunAbortedAfterThePatchTookGetsItsRetirementReminderFromTheRescue(t *testing.T) {
	s := start(t, func(o *rig.Options) { o.Rescue = true })
	// The update never ends: the iteration stays in its CheckWorkspace loop (10 s budget, 20 s
	// grace) until the abort.
	s.rig.Fake.SetPatchBehaviour(rig.AnalyticsWorkspace, dbfake.PatchBehaviour{StuckProvisioning: true})
	arn := s.rotateAnalytics()
	s.waitForState(arn, "CheckWorkspace")
	_, err := s.rig.SFN.StopExecution(s.ctx, &sfn.StopExecutionInput{ExecutionArn: aws.String(arn), Cause: aws.String("operator: stopped mid-update")})
	require.NoError(t, err)
	exec := s.rig.AWS.WaitExecution(s.ctx, arn)
	require.Equal(t, awsfake.StatusAborted, exec.Status)
	require.Empty(t, s.executionsOf(s.rig.ReminderARN), "precondition: the aborted execution scheduled no reminder")
	require.NotEmpty(t, s.rig.AWS.Items(rig.LockTable), "precondition: the aborted execution left its lock")

	require.NoError(t, s.rig.Rescue(s.ctx, arn))
	require.NoError(t, s.rig.Rescue(s.ctx, arn), "a redelivered status change starts nothing twice")

	reminders := s.executionsOf(s.rig.ReminderARN)
	require.Len(t, reminders, 1)
	assert.Equal(t, rescue.ReminderName(exec.Name), reminders[0].Name)
	var in struct {
		Execution   string `json:"execution"`
		KeyARN      string `json:"key_arn"`
		KeyConfigID string `json:"key_config_id"`
		Workspaces  []struct {
			WorkspaceID         string `json:"workspace_id"`
			Outcome             string `json:"outcome"`
			Patched             bool   `json:"patched"`
			PreviousKeyConfigID string `json:"previous_key_config_id"`
		} `json:"workspaces"`
	}
	require.NoError(t, json.Unmarshal([]byte(reminders[0].Input), &in))
	assert.Equal(t, exec.Name, in.Execution)
	assert.Equal(t, s.rig.KeyARN(rig.AliasTargetKeyID), in.KeyARN)
	assert.NotEmpty(t, in.KeyConfigID)
	var named string
	for _, c := range s.rig.Fake.KeyConfigs() {
		if c.CustomerManagedKeyId == in.KeyConfigID {
			named = c.AwsKeyInfo.KeyArn
		}
	}
	assert.Equal(t, in.KeyARN, named, "the key configuration RegisterKeyConfig registered for the key")
	require.Len(t, in.Workspaces, 1)
	assert.Equal(t, "1234567890123456", in.Workspaces[0].WorkspaceID)
	assert.Equal(t, "RESCUED_AFTER_PATCH", in.Workspaces[0].Outcome)
	assert.True(t, in.Workspaces[0].Patched)
	assert.Equal(t, rig.OldKeyConfigID, in.Workspaces[0].PreviousKeyConfigID)

	// The workspace rotated in a child execution, stopped with the request: the child's own rescue
	// reports its compute and releases its lock (the request's rescue leaves both to it).
	children := s.rig.Children(arn)
	require.Len(t, children, 1)
	s.rig.AWS.WaitExecution(s.ctx, children[0].ExecutionArn)
	require.NoError(t, s.rig.Rescue(s.ctx, children[0].ExecutionArn))
	require.NoError(t, s.rig.Rescue(s.ctx, children[0].ExecutionArn))
	failed := s.events("Rotation Failed")
	require.Len(t, failed, 2, "the same event twice (one per delivery), deduplicated on event_id")
	assert.Equal(t, failed[0]["event_id"], failed[1]["event_id"])
	assert.Equal(t, rescue.RescueComputeDown, failed[0]["rescue"])
	assert.Empty(t, s.rig.AWS.Items(rig.LockTable), "the rescue released the lock once the reminder was started")

	s.rig.WaitForAll(s.ctx)
	retirable := s.events("Previous Key Retirable")
	require.Len(t, retirable, 1, "the reminder ran to its event")
	assert.Equal(t, exec.Name, retirable[0]["rotation_execution"])
}
