package report_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

func run() *rotation.WorkspaceRun {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return &rotation.WorkspaceRun{
		Workspace:   rotation.WorkspaceTarget{WorkspaceID: "11", WorkspaceName: "prod", PreviousManagedKeyID: "old-cfg", PreviousManagedKeyARN: "arn:old"},
		KeyConfigID: "new-cfg", KeyARN: "arn:new", UseCases: []string{"MANAGED_SERVICES"},
		Inventory: &rotation.Inventory{Clusters: []rotation.ClusterRef{{ID: "c1"}, {ID: "c2"}}, Pools: []rotation.PoolSettings{{ID: "p1"}}},
		Stop:      &rotation.StopResult{StoppedAt: at},
	}
}

func detail(t *testing.T, r rotation.Report) report.Detail {
	t.Helper()
	d, ok := r.Detail.(report.Detail)
	require.True(t, ok, "%T", r.Detail)
	return d
}

func TestAFailureAfterTheStopCarriesTheWholeInventoryAndSaysWhatIsStillDown(t *testing.T) {
	r := run()
	r.Error = &rotation.StepError{Error: "WorkspaceReverted", Cause: `{"errorMessage":"workspace 11 reverted","errorType":"WorkspaceReverted"}`}
	r.Patch = &rotation.PatchResult{}
	r.Restart = &rotation.RestartResult{Started: rotation.Counts{Clusters: 1}}
	r.RestartStatus = &rotation.ComputeStatus{Done: true, StillDown: []rotation.ResourceRef{{Kind: "cluster", ID: "c2", Reason: "did not start"}}, StillDownCount: 1}

	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindFailed, Run: r})
	require.NoError(t, err)
	assert.Equal(t, rotation.DetailRotationFailed, out.DetailType)
	d := detail(t, out)
	assert.Equal(t, "FAILED", d.Outcome)
	assert.Equal(t, &report.ErrorDetail{Type: "WorkspaceReverted", Message: "workspace 11 reverted"}, d.Error, "the Lambda error JSON is unwrapped")
	assert.Equal(t, r.Inventory, d.Inventory)
	assert.Equal(t, "verify-workspace", d.Phase)
	require.Len(t, d.StillDown, 1)
	assert.Contains(t, d.Message, "still down")
	require.NotNil(t, out.Summary)
	assert.True(t, out.Summary.Patched, "the summary says the PATCH was sent, so the key guard keeps the previous key for 24 h")
}

func TestAFailureWhoseRestartWasNeverConfirmedSaysSo(t *testing.T) {
	r := run()
	r.Error = &rotation.StepError{Error: "DatabricksUnavailable", Cause: "503"}
	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindFailed, Run: r})
	require.NoError(t, err)
	d := detail(t, out)
	assert.True(t, d.StillDownUnknown)
	assert.Equal(t, "wait-for-stop", d.Phase)
	assert.False(t, out.Summary.Patched)
}

func TestAFailureBeforeAnyStopSaysTheWorkspaceIsUnchanged(t *testing.T) {
	r := run()
	r.Inventory, r.Stop = nil, nil
	r.Error = &rotation.StepError{Error: "DatabricksRequestFailed", Cause: "403"}
	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindFailed, Run: r})
	require.NoError(t, err)
	d := detail(t, out)
	assert.False(t, d.ComputeStopped)
	assert.Contains(t, d.Message, "unchanged")
}

func TestASuccessReportsOldAndNewConfigurationsAndDowntime(t *testing.T) {
	r := run()
	r.Restart = &rotation.RestartResult{Started: rotation.Counts{Clusters: 1}, NotRestartable: []rotation.ResourceRef{{Kind: "cluster", ID: "c2"}}, NotRestartableCount: 1}
	r.RestartStatus = &rotation.ComputeStatus{Done: true, DowntimeSeconds: 312.5}
	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindSucceeded, Run: r})
	require.NoError(t, err)
	assert.Equal(t, rotation.DetailRotationSucceeded, out.DetailType)
	d := detail(t, out)
	assert.Equal(t, "old-cfg", d.PreviousKeyConfigID)
	assert.Equal(t, "new-cfg", d.NewKeyConfigID)
	assert.Equal(t, 312.5, d.DowntimeSeconds)
	assert.Equal(t, &rotation.Counts{Clusters: 2, Pools: 1}, d.Stopped)
	assert.Equal(t, &rotation.Counts{Clusters: 1}, d.Restarted)
	assert.Len(t, d.NotRestarted, 1)
}

func TestAPlanSaysWhetherAKeyConfigurationWouldBeCreated(t *testing.T) {
	r := run()
	r.Stop = nil
	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindPlan, Run: r})
	require.NoError(t, err)
	d := detail(t, out)
	assert.True(t, d.WouldCreateKeyConfig)
	assert.False(t, d.ComputeStopped)
	assert.Equal(t, r.Inventory, d.Inventory)
}

func TestARejectionQuotesTheRequestAndTheReason(t *testing.T) {
	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindRejected, Request: []byte(`{"workspace_ids":["1"]}`),
		Error: &rotation.StepError{Error: "KeyPolicyRejected", Cause: `{"errorMessage":"no kms:Decrypt for Databricks","errorType":"KeyPolicyRejected"}`}})
	require.NoError(t, err)
	assert.Equal(t, rotation.DetailRotationRejected, out.DetailType)
	d := detail(t, out)
	assert.Contains(t, d.Message, "no kms:Decrypt for Databricks")
	assert.JSONEq(t, `{"workspace_ids":["1"]}`, string(d.Request))
}

func TestAnUnknownKindIsInvalidInput(t *testing.T) {
	_, err := report.Task{}.Handle(context.Background(), report.Input{Kind: "party"})
	require.Error(t, err)
}

func TestASuccessNamesWhatWasStoppedAgainAndCountsWhatTheChecksStartedLater(t *testing.T) {
	r := run()
	r.StopStatus = &rotation.ComputeStatus{Done: true,
		StoppedAgain: []rotation.ResourceRef{{Kind: "cluster", ID: "c1"}},
		LateStopped:  []rotation.ResourceRef{{Kind: "cluster", ID: "job-run-1"}}}
	r.QuietStatus = &rotation.ComputeStatus{Done: true,
		StoppedAgain: []rotation.ResourceRef{{Kind: "cluster", ID: "c1"}, {Kind: "warehouse", ID: "w1"}},
		LateStopped:  []rotation.ResourceRef{{Kind: "cluster", ID: "job-run-2"}}}
	r.Restart = &rotation.RestartResult{Started: rotation.Counts{Clusters: 1, Pools: 1}, Settling: 1}
	r.RestartStatus = &rotation.ComputeStatus{Done: true, StartedLater: &rotation.Counts{Clusters: 1}}

	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindSucceeded, Run: r})
	require.NoError(t, err)
	d := detail(t, out)
	assert.Equal(t, []rotation.ResourceRef{{Kind: "cluster", ID: "c1"}, {Kind: "warehouse", ID: "w1"}}, d.StoppedAgain,
		"before the PATCH and in the quiet window, each named once")
	assert.Equal(t, []rotation.ResourceRef{{Kind: "cluster", ID: "job-run-1"}, {Kind: "cluster", ID: "job-run-2"}}, d.LateStopped)
	assert.Equal(t, &rotation.Counts{Clusters: 2, Pools: 1}, d.Restarted, "a cluster started once it had settled is restarted too")
	assert.Equal(t, 1, d.Settling)
}

func TestAnUpdateStillProvisioningSaysComputeWasLeftStoppedOnPurpose(t *testing.T) {
	r := run()
	r.Patch = &rotation.PatchResult{}
	r.Error = &rotation.StepError{Error: "WorkspaceUpdateTimedOut", Cause: `{"errorMessage":"workspace 11 is still PROVISIONING","errorType":"WorkspaceUpdateTimedOut"}`}
	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindFailed, Run: r})
	require.NoError(t, err)
	d := detail(t, out)
	assert.True(t, d.StillDownUnknown, "everything in inventory is named")
	assert.Equal(t, r.Inventory, d.Inventory)
	assert.Contains(t, d.Message, "left stopped rather than started into the update")
	assert.Empty(t, d.EndedOnKeyConfigID, "unknown until the update ends")
}

func TestTheEventsSayWhichKeyTheWorkspaceEndedOn(t *testing.T) {
	reverted := run()
	reverted.Patch = &rotation.PatchResult{}
	reverted.Error = &rotation.StepError{Error: "WorkspaceReverted", Cause: "reverted"}
	reverted.Restart = &rotation.RestartResult{}
	reverted.RestartStatus = &rotation.ComputeStatus{Done: true}
	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindFailed, Run: reverted})
	require.NoError(t, err)
	d := detail(t, out)
	assert.Equal(t, "old-cfg", d.EndedOnKeyConfigID)
	assert.Contains(t, d.Message, "RUNNING on its previous key configuration")

	rotated := run()
	rotated.Patch = &rotation.PatchResult{}
	rotated.WorkspaceStat = &rotation.WorkspaceStat{Done: true}
	out, err = report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindSucceeded, Run: rotated})
	require.NoError(t, err)
	assert.Equal(t, "new-cfg", detail(t, out).EndedOnKeyConfigID)
}

func TestAPatchThatFailedAfterPossiblyReachingDatabricksDoesNotClaimTheOldKey(t *testing.T) {
	for _, tc := range []struct {
		errorType string
		mayHave   bool
	}{{"DatabricksUnavailable", true}, {"Sandbox.Timedout", true}, {"ComputeStopTimedOut", false}} {
		r := run()
		r.StopStatus = &rotation.ComputeStatus{Done: true}
		r.Error = &rotation.StepError{Error: tc.errorType, Cause: "x"}
		out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindFailed, Run: r})
		require.NoError(t, err)
		d := detail(t, out)
		assert.Equal(t, "patch-workspace", d.Phase)
		assert.Equal(t, tc.mayHave, strings.Contains(d.Message, "may be on the new key configuration"), "%s: %s", tc.errorType, d.Message)
	}
}
