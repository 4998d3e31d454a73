package rig_test

// Scenarios of issue 8 (real time, real users), on realistic fake time slow enough that the
// rotator's checks meet compute in transition: one Databricks minute lasts 500ms, so a cluster takes
// 0.5-5 s to terminate and 1.5-3.5 s to start.

import (
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
)

func slowTime(o *rig.Options) {
	if o.Fake.Realistic == nil {
		o.Fake = dbfake.Options{Realistic: &dbfake.RealisticTime{Seed: 8}}
	}
	o.Fake.Realistic.Minute = 500 * time.Millisecond
	o.Fake.Realistic.UserRestarts = false
}

// restartBehindRotator starts a cluster of the analytics workspace again, as its user would.
func (s *scenario) restartBehindRotator(id string) {
	c := s.rig.Fake.Cluster(rig.AnalyticsWorkspace, id)
	require.NotEmpty(s.t, c.ClusterId, id)
	s.rig.Fake.StartClusterBehindRotator(rig.AnalyticsWorkspace, c)
}

// Defect 1: StopCompute is refused on the warehouse after it terminated the clusters; Compensate
// begins while they are still TERMINATING, waits for them to settle, starts them, and the failure
// event says everything is back.
func TestFault_CompensationRightAfterAPartialStopBringsBackWhatWasStillTerminating(t *testing.T) {
	s := start(t, slowTime)
	s.rig.Fake.InjectFault(dbfake.Fault{Method: "POST", Path: `^/api/2\.0/sql/warehouses/[^/]+/stop$`, Status: 403,
		ErrorCode: "PERMISSION_DENIED", Message: "User does not have permission to stop this warehouse"})
	arn := s.rotateAnalytics()
	s.waitForState(arn, "Compensate")
	assert.Equal(t, compute.StateTerminating, s.rig.Fake.Cluster(rig.AnalyticsWorkspace, "0101-etl-interactive").State,
		"precondition: compensation begins while the clusters terminate")
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status)
	assert.Equal(t, "RotationFailed", exec.Error, exec.Cause)
	assert.Equal(t, rig.OldKeyConfigID, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId)
	s.assertAnalyticsComputeRestored()
	failed := s.events("Rotation Failed")
	require.Len(t, failed, 1)
	d := failed[0]
	assert.Equal(t, "stop-compute", d["phase"])
	s.assertWholeInventory(d["inventory"])
	assert.Empty(t, d["still_down"], "nothing is reported down that came back")
	assert.Contains(t, d["message"], "everything that was stopped is running again")
	assert.Equal(t, restartedCounts, countsOf(d["restarted"]), "what the checks started once settled is counted as restarted")
	s.assertNothingLeftDownSilently()
}

// Defect 2: a user restarts an inventoried cluster during the stop wait, and a scheduled job starts
// a cluster. Both are stopped again before the PATCH; the event names them; the inventoried one runs
// at the end, the job cluster does not.
func TestFault_ComputeStartedAgainDuringTheStopWaitIsStoppedAgainAndReported(t *testing.T) {
	s := start(t, slowTime)
	arn := s.rotateAnalytics()
	s.waitForState(arn, "CheckStopped")
	s.restartBehindRotator("0101-etl-interactive")
	s.rig.Fake.StartClusterBehindRotator(rig.AnalyticsWorkspace, compute.ClusterDetails{ClusterId: "0199-scheduled-run",
		ClusterName: "job-4711-run-1", ClusterSource: compute.ClusterSourceJob})
	exec := s.onlyRotation()
	d := s.assertRotated(exec)
	assert.Empty(t, s.failuresOf(arn, "PatchWorkspace"), "the PATCH went out only once nothing ran")
	assert.Contains(t, ids(d["stopped_again"]), "0101-etl-interactive")
	assert.Contains(t, ids(d["late_stopped"]), "0199-scheduled-run")
	assert.Equal(t, compute.StateTerminated, s.rig.Fake.Cluster(rig.AnalyticsWorkspace, "0199-scheduled-run").State,
		"it did not run when the rotation began")
	s.assertNothingLeftDownSilently()
}

// Defect 2, storage quiet window: compute started during the window is stopped again, and the
// window lasts as long as configured.
func TestFault_ComputeStartedDuringTheQuietWindowIsStoppedAgain(t *testing.T) {
	s := start(t, slowTime)
	arn := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID),
		"use_cases": []string{"MANAGED_SERVICES", "STORAGE"}})
	s.waitForState(arn, "QuietWindow")
	entered := time.Now()
	s.restartBehindRotator("0103-api-automation")
	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	var restartAt time.Time
	for _, ev := range s.timeline(arn) {
		if ev.Type == "StateEntered" && ev.State == "RestartCompute" {
			restartAt = ev.Time
		}
	}
	assert.GreaterOrEqual(t, restartAt.Sub(entered), 1500*time.Millisecond, "the 2 s window is kept (less the moment the test needed to react)")
	s.assertAnalyticsComputeRestored()
	succeeded := s.events("Rotation Succeeded")
	require.Len(t, succeeded, 1)
	assert.Contains(t, ids(succeeded[0]["stopped_again"]), "0103-api-automation")
	s.assertNothingLeftDownSilently()
}
