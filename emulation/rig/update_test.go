package rig_test

// The workspace update as Databricks plays it: an update takes minutes and the workspace shows
// PROVISIONING meanwhile (scaled down here: seconds, against 100-300 ms for a cluster to stop), and
// Databricks forbids starting compute while it updates. Each scenario holds the fake's recorded
// requests against the times the workspace showed PROVISIONING: no compute start may fall inside.

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
)

// Calls that bring compute up: a cluster, warehouse or pipeline start, and the pool edit that
// restores min_idle_instances (which launches instances).
var computeStart = regexp.MustCompile(`^/api/2\.\d/(clusters/start|sql/warehouses/[^/]+/start|pipelines/[^/]+/updates|instance-pools/edit)$`)

// Realistic relative latency, scaled down: a resource stops in 300 ms, an update takes 4 s, all
// of it PROVISIONING (a Databricks-managed VPC).
const updateTakes = 4 * time.Second

func startUpdating(t *testing.T, env map[string]string) *scenario {
	s := start(t, func(o *rig.Options) {
		o.Fake.TransitionDelay = 300 * time.Millisecond
		o.Fake.WorkspaceUpdateDelay = updateTakes
		o.FunctionEnv = env
	})
	return s
}

// provisioningSpans is every accepted PATCH of the analytics workspace that showed PROVISIONING.
func (s *scenario) provisioningSpans() []dbfake.WorkspaceUpdateSpan {
	var out []dbfake.WorkspaceUpdateSpan
	for _, u := range s.rig.Fake.WorkspaceUpdates() {
		if u.WorkspaceID == rig.AnalyticsWorkspace && (u.Stuck || !u.ProvisioningUntil.IsZero()) {
			out = append(out, u)
		}
	}
	return out
}

// computeStarts lists the compute start calls the analytics workspace received.
func (s *scenario) computeStarts() []dbfake.Request {
	var out []dbfake.Request
	for _, r := range s.rig.Fake.Requests() {
		if r.Method != "POST" || r.WorkspaceID != rig.AnalyticsWorkspace || !computeStart.MatchString(r.Path) {
			continue
		}
		if strings.HasSuffix(r.Path, "/edit") {
			// Draining a pool (min_idle_instances 0) is part of the stop; only a restore launches.
			var edit struct {
				MinIdle int `json:"min_idle_instances"`
			}
			if json.Unmarshal([]byte(r.Body), &edit) == nil && edit.MinIdle == 0 {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// assertNoStartWhileProvisioning is the rule of these scenarios, from the fake's own timeline.
func (s *scenario) assertNoStartWhileProvisioning() {
	s.t.Helper()
	spans := s.provisioningSpans()
	require.NotEmpty(s.t, spans, "the scenario must make the workspace show PROVISIONING")
	for _, r := range s.computeStarts() {
		for _, u := range spans {
			assert.False(s.t, u.Provisioning(r.Time), "%s %s at %s while the workspace was PROVISIONING (update accepted at %s, until %s)",
				r.Method, r.Path, r.Time.Format(time.StampMilli), u.Accepted.Format(time.StampMilli), u.ProvisioningUntil.Format(time.StampMilli))
		}
	}
}

func (s *scenario) patchRequests() []dbfake.Request {
	var out []dbfake.Request
	for _, r := range s.rig.Fake.Requests() {
		if r.Method == "PATCH" && r.WorkspaceID == rig.AnalyticsWorkspace {
			out = append(out, r)
		}
	}
	return out
}

// Defect 3: Databricks accepts the PATCH, the answer is lost (a 504 from the front door), Step
// Functions retries, and the retry meets the workspace PROVISIONING. Before, that refusal read as
// "compute still running" and, retries spent, Compensate started compute into the update.
func TestUpdate_ALostPatchAnswerRetriedIntoProvisioningWaitsForTheUpdate(t *testing.T) {
	s := startUpdating(t, nil)
	s.rig.Fake.SetPatchBehaviour(rig.AnalyticsWorkspace, dbfake.PatchBehaviour{ProvisioningFor: updateTakes})
	s.rig.Fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: workspacePath, Status: 504, LoseResponse: true, Times: 1})
	s.rotateAnalytics()
	exec := s.onlyRotation()
	d := s.assertRotated(exec)
	assert.Equal(t, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId, d["ended_on_key_config_id"], "the event says which key the workspace ended on")
	assert.Equal(t, d["new_key_config_id"], d["ended_on_key_config_id"])
	assert.Equal(t, []string{"DatabricksUnavailable"}, s.failuresOf(exec.ExecutionArn, "PatchWorkspace"), "the lost answer, then no refusal")
	assert.NotContains(t, s.statesVisited(exec.ExecutionArn), "Compensate")
	patches := s.patchRequests()
	require.Len(t, patches, 1, "the retry read the workspace and sent nothing into the update in flight")
	assert.True(t, patches[0].Injected)
	s.assertNoStartWhileProvisioning()
	assert.NotEmpty(t, s.computeStarts(), "compute came back after the update")
	s.assertNothingLeftDownSilently()
}

// Defect 4, new key: the update outlasts its budget (2 s against 4 s of PROVISIONING). Before,
// WorkspaceUpdateTimedOut went straight to Compensate, which started compute into the update.
func TestUpdate_AnUpdateOutlastingItsBudgetIsWaitedForAndOnTheNewKeyTheRotationContinues(t *testing.T) {
	s := startUpdating(t, map[string]string{"WORKSPACE_UPDATE_BUDGET": "2s"})
	s.rig.Fake.SetPatchBehaviour(rig.AnalyticsWorkspace, dbfake.PatchBehaviour{ProvisioningFor: updateTakes})
	s.rotateAnalytics()
	exec := s.onlyRotation()
	d := s.assertRotated(exec)
	visited := s.statesVisited(exec.ExecutionArn)
	assert.Contains(t, visited, "WaitForUpdateToEnd", "the budget ran out while PROVISIONING")
	assert.NotContains(t, visited, "Compensate")
	assert.Equal(t, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId, d["ended_on_key_config_id"])
	assert.Equal(t, d["new_key_config_id"], d["ended_on_key_config_id"])
	s.assertNoStartWhileProvisioning()
	s.assertNothingLeftDownSilently()
}

// Defect 4, old key: the update outlasts its budget, then ends RUNNING on the previous key.
// Compensation waits for the workspace to leave PROVISIONING, then restores compute, and the
// failure event says the workspace is on its previous key configuration.
func TestUpdate_AnUpdateOutlastingItsBudgetThatEndsOnTheOldKeyIsWaitedForThenCompensated(t *testing.T) {
	s := startUpdating(t, map[string]string{"WORKSPACE_UPDATE_BUDGET": "2s"})
	s.rig.Fake.SetPatchBehaviour(rig.AnalyticsWorkspace, dbfake.PatchBehaviour{ProvisioningFor: updateTakes, Rollback: true})
	s.rotateAnalytics()
	exec := s.onlyRotation()
	d := s.assertFailedAndRestored(exec, "WorkspaceReverted", "verify-workspace")
	visited := s.statesVisited(exec.ExecutionArn)
	assert.Contains(t, visited, "WaitForUpdateToEnd")
	assert.Contains(t, visited, "Compensate")
	assert.Equal(t, rig.OldKeyConfigID, d["ended_on_key_config_id"])
	assert.Contains(t, d["message"], "RUNNING on its previous key configuration")
	assert.Contains(t, d["error"].(map[string]any)["message"], "on its previous key configuration "+rig.OldKeyConfigID)
	s.assertNoStartWhileProvisioning()
	s.assertNothingLeftDownSilently()
}

// Row 5. A workspace that never leaves PROVISIONING: past the budget and the grace, the rotation
// fails without starting compute into the update, and the event names everything as stopped.
func TestFault_AWorkspaceStuckProvisioningFailsWithComputeLeftStoppedAndNamed(t *testing.T) {
	s := start(t, func(o *rig.Options) {
		o.FunctionEnv = map[string]string{"WORKSPACE_UPDATE_BUDGET": "2s", "WORKSPACE_PROVISIONING_GRACE": "2s"}
	})
	s.rig.Fake.SetPatchBehaviour(rig.AnalyticsWorkspace, dbfake.PatchBehaviour{StuckProvisioning: true})
	s.rotateAnalytics()
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status)
	visited := s.statesVisited(exec.ExecutionArn)
	assert.Contains(t, visited, "WaitForUpdateToEnd")
	assert.NotContains(t, visited, "Compensate", "compute is never started into an update")
	assert.Empty(t, s.computeStarts())

	failed := s.events("Rotation Failed")
	require.Len(t, failed, 1)
	d := failed[0]
	assert.Equal(t, "WorkspaceUpdateTimedOut", d["error"].(map[string]any)["type"])
	assert.Contains(t, d["error"].(map[string]any)["message"], "PROVISIONING")
	assert.Equal(t, true, d["still_down_unknown"])
	assert.Contains(t, d["message"], "left stopped rather than started into the update")
	s.assertWholeInventory(d["inventory"])
	s.assertNothingLeftDownSilently()
}

// Row 4, persistent: a refusal because compute runs goes back to StopCompute and the stop check,
// until the stop budget that began at the first stop runs out.
func TestFault_APatchRefusedPersistentlyGoesBackToStopThenFailsWithComputeRestored(t *testing.T) {
	s := start(t, func(o *rig.Options) { o.FunctionEnv = map[string]string{"STOP_BUDGET": "3s"} })
	s.rig.Fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: workspacePath, Status: 400, ErrorCode: "INVALID_STATE", Message: computeRunningMessage})
	s.rotateAnalytics()
	exec := s.onlyRotation()
	d := s.assertFailedAndRestored(exec, "ComputeStopTimedOut", "patch-workspace")
	assert.Contains(t, d["error"].(map[string]any)["message"], computeRunningMessage)
	failures := s.failuresOf(exec.ExecutionArn, "PatchWorkspace")
	require.GreaterOrEqual(t, len(failures), 2)
	assert.Equal(t, "ComputeStopTimedOut", failures[len(failures)-1])
	assert.Equal(t, slices.Repeat([]string{"ComputeStillRunning"}, len(failures)-1), failures[:len(failures)-1])
	stops := 0
	for _, ev := range s.timeline(exec.ExecutionArn) {
		if ev.Type == "StateEntered" && ev.State == "StopCompute" {
			stops++
		}
	}
	assert.Equal(t, len(failures), stops, "every refusal went back to stop compute again")
	s.assertNothingLeftDownSilently()
}
