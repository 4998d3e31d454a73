package rescue_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

var (
	analytics = target(wsAnalytics, "analytics")
	ml        = target(wsML, "ml")
	bi        = target(wsBI, "bi")
)

// abortedWhileStopping is the fault the rescue exists for: analytics has stopped its compute and
// waits for it, ml has rotated, bi is taking its inventory, when an operator stops the execution.
// The two Map iterations run at once, so their events interleave.
func abortedWhileStopping(t *testing.T, r *rig) (rotation.Inventory, awsfake.Execution) {
	t.Helper()
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(input, analytics, ml, bi)
	inv := inventoryOf(wsAnalytics, 4)
	a := rotating(0, analytics).inventory(inv).stopped()
	m := rotating(1, ml).inventory(inventoryOf(wsML, 2)).stopped().rotated()
	b := rotating(2, bi)
	b.taskStarted("TakeInventory", b.run)
	history = append(history, interleaved(a, m)...)
	history = append(history, b.steps...)
	exec := r.execute(input, play{history: history, untilStopped: true}, "", "")
	require.Equal(t, awsfake.StatusAborted, exec.Status)
	return inv, exec
}

func TestAnAbortedRotationReportsTheStoppedWorkspaceWithItsInventoryAndReleasesItsLocks(t *testing.T) {
	r := newRig(t)
	inv, _ := abortedWhileStopping(t, r)
	require.Len(t, r.lockedWorkspaces(), 4, "precondition: the execution's three locks and another execution's")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	got := byWorkspace(r.published())
	require.Len(t, r.published(), 2, "analytics (compute stopped) and bi (nothing stopped); ml rotated and reported itself")
	require.NotContains(t, got, wsML)

	d := got[wsAnalytics]
	assert.Equal(t, rotation.OutcomeFailed, d.Outcome)
	assert.Equal(t, rescue.RescueComputeDown, d.Rescue)
	assert.Equal(t, "analytics", d.WorkspaceName)
	assert.Equal(t, executionName, d.Execution)
	assert.Equal(t, executionARN, d.ExecutionARN)
	assert.Equal(t, rescue.StatusAborted, d.ExecutionStatus)
	assert.Equal(t, rescue.PhaseAborted, d.Phase)
	require.NotNil(t, d.Error)
	assert.Equal(t, "ExecutionAborted", d.Error.Type, "stopped without an error: the status names it")
	assert.True(t, d.ComputeStopped)
	assert.True(t, d.StillDownUnknown)
	assert.Empty(t, d.StillDown)
	require.NotNil(t, d.Inventory)
	assert.Equal(t, inv.Clusters, d.Inventory.Clusters, "the whole inventory, inline")
	assert.Equal(t, inv.Pools, d.Inventory.Pools)
	assert.Equal(t, inv.Warehouses, d.Inventory.Warehouses)
	assert.Equal(t, inv.Pipelines, d.Inventory.Pipelines)
	assert.Equal(t, &rotation.Counts{Clusters: 4, Pools: 1, Warehouses: 1, Pipelines: 1}, d.Stopped)
	assert.Equal(t, "WaitForStop", d.LastState)
	assert.Equal(t, newKeyARN, d.KeyARN)
	assert.Equal(t, oldConfigID, d.PreviousKeyConfigID)
	assert.Regexp(t, `^rescue-[0-9a-f]{32}$`, d.EventID)
	assert.Contains(t, d.Message, "was stopped (ABORTED)")
	assert.Contains(t, d.Message, "after its compute had been stopped")
	assert.Contains(t, d.Message, "Treat everything in inventory as possibly stopped")
	assert.Contains(t, d.Message, "No PATCH had been sent")
	assert.Contains(t, d.Message, "lock is released")

	b := got[wsBI]
	assert.Equal(t, rescue.RescueNothingStopped, b.Rescue)
	assert.False(t, b.ComputeStopped)
	assert.False(t, b.StillDownUnknown)
	assert.Equal(t, rescue.PhaseAborted, b.Phase)
	assert.Equal(t, "TakeInventory", b.LastState)
	assert.Nil(t, b.Stopped)
	assert.Nil(t, b.Inventory)
	assert.Contains(t, b.Message, "before any compute of this workspace was stopped")
	assert.NotEqual(t, d.EventID, b.EventID)

	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces(), "the execution's locks are gone, another execution's lock stays")

	recs := r.logs.Records(t)
	require.NotEmpty(t, recs)
	last := recs[len(recs)-1]
	assert.Equal(t, "ERROR", last["level"])
	assert.Equal(t, []any{wsAnalytics}, last["compute_possibly_down"])
	assert.ElementsMatch(t, []any{wsAnalytics, wsML, wsBI}, last["locks_released"])
}

func TestTheOperatorsErrorAndCauseOfAStopAreTheEventsError(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(input, analytics, ml, bi)
	history = append(history, rotating(0, analytics).inventory(inventoryOf(wsAnalytics, 1)).stopped().steps...)
	r.execute(input, play{history: history, untilStopped: true}, "OperatorStop", "INC-4711: Databricks maintenance window")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	d := byWorkspace(r.published())[wsAnalytics]
	require.NotNil(t, d.Error)
	assert.Equal(t, report.ErrorDetail{Type: "OperatorStop", Message: "INC-4711: Databricks maintenance window"}, *d.Error)
	assert.Len(t, r.published(), 3, "analytics stopped; ml and bi had not started")
}

func TestARedeliveredStatusChangePublishesTheSameEventIDsAndReleasesNothingMore(t *testing.T) {
	r := newRig(t)
	abortedWhileStopping(t, r)
	ev := fixture(t, "rotation-execution-aborted.json")

	require.NoError(t, r.h.Handle(context.Background(), ev))
	require.NoError(t, r.h.Handle(context.Background(), ev))

	got := r.published()
	require.Len(t, got, 4, "each delivery publishes; consumers deduplicate on event_id")
	first, second := byWorkspace(got[:2]), byWorkspace(got[2:])
	for ws, d := range first {
		assert.Equal(t, d.EventID, second[ws].EventID, "workspace %s", ws)
		assert.Equal(t, d, second[ws], "workspace %s: the same event", ws)
	}
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
	recs := r.logs.Records(t)
	assert.Empty(t, recs[len(recs)-1]["locks_released"], "the second release found nothing of its own")
}

func TestATimedOutRotationPutsASmallStoredInventoryInTheEventAndALargeOneByReference(t *testing.T) {
	r := newRig(t)
	r.h.InlineLimit = 4 << 10
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	store := &invstore.Store{S3: r.s3, Bucket: bucket, InlineLimit: 256}
	small, large := inventoryOf(wsAnalytics, 3), inventoryOf(wsML, 200)
	smallRef, err := store.Save(context.Background(), executionName, small)
	require.NoError(t, err)
	largeRef, err := store.Save(context.Background(), executionName, large)
	require.NoError(t, err)
	require.NotEmpty(t, smallRef.Ref, "precondition: both inventories are stored by reference")
	require.NotEmpty(t, largeRef.Ref)

	history, _ := rotationStart(input, analytics, ml, bi)
	a := rotating(0, analytics).inventory(smallRef).stopped().allStopped().patched()
	m := rotating(1, ml).inventory(largeRef).stopped()
	history = append(history, interleaved(a, m)...)
	// bi never started: MaxConcurrency 2 held it back until the end.
	exec := r.execute(input, play{history: history, fail: &awsfake.ExecError{Status: awsfake.StatusTimedOut,
		Error: "States.Timeout", Cause: "The execution exceeded its TimeoutSeconds of 14400."}}, "", "")
	require.Equal(t, awsfake.StatusTimedOut, exec.Status)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-timed-out.json")))

	got := byWorkspace(r.published())
	require.Len(t, got, 3)
	d := got[wsAnalytics]
	assert.Equal(t, rescue.PhaseTimedOut, d.Phase)
	assert.Equal(t, report.ErrorDetail{Type: "States.Timeout", Message: "The execution exceeded its TimeoutSeconds of 14400."}, *d.Error)
	require.NotNil(t, d.Inventory)
	assert.Equal(t, small.Clusters, d.Inventory.Clusters, "a small stored inventory is read and put in the event whole")
	assert.Equal(t, smallRef.Ref, d.Inventory.Ref, "with its reference")
	assert.Equal(t, &rotation.Counts{Clusters: 3, Pools: 1, Warehouses: 1, Pipelines: 1}, d.Stopped)
	assert.Equal(t, "WaitForWorkspaceAgain", d.LastState)
	assert.Contains(t, d.Message, "The PATCH to the new key configuration had been sent")

	m2 := got[wsML]
	require.NotNil(t, m2.Inventory)
	assert.Equal(t, largeRef.Ref, m2.Inventory.Ref)
	assert.Empty(t, m2.Inventory.Clusters, "a large inventory stays in S3")
	assert.Equal(t, rotation.Counts{Clusters: 200, Pools: 1, Warehouses: 1, Pipelines: 1}, m2.Inventory.Counts)
	assert.Equal(t, &m2.Inventory.Counts, m2.Stopped)
	assert.True(t, m2.StillDownUnknown)
	assert.Contains(t, m2.Message, "inventory.ref")

	assert.Equal(t, rescue.RescueNothingStopped, got[wsBI].Rescue)
	assert.Contains(t, got[wsBI].Message, "its iteration had not started")
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestAStoredInventoryThatCannotBeReadIsReportedByItsReference(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	gone := rotation.Inventory{WorkspaceID: wsAnalytics, TakenAt: t0, Counts: rotation.Counts{Clusters: 5000},
		Ref: "s3://" + bucket + "/inventories/" + executionName + "/" + wsAnalytics + ".json"}
	history, _ := rotationStart(input, analytics)
	history = append(history, rotating(0, analytics).inventory(gone).stopped().steps...)
	r.execute(input, play{history: history, untilStopped: true}, "", "")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	d := byWorkspace(r.published())[wsAnalytics]
	require.NotNil(t, d.Inventory)
	assert.Equal(t, gone, *d.Inventory)
	assert.Equal(t, &rotation.Counts{Clusters: 5000}, d.Stopped)
	assert.True(t, strings.Contains(r.logs.String(), "stored inventory not read"))
}

func TestAnInventoryTakenJustBeforeTheEndIsNotReportedAsStopped(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	history, _ := rotationStart(input, analytics)
	history = append(history, rotating(0, analytics).inventory(inventoryOf(wsAnalytics, 3)).steps...)
	r.execute(input, play{history: history, untilStopped: true}, "", "")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	d := byWorkspace(r.published())[wsAnalytics]
	assert.Equal(t, rescue.RescueNothingStopped, d.Rescue)
	assert.False(t, d.ComputeStopped)
	assert.Nil(t, d.Stopped)
	assert.Nil(t, d.Inventory)
	assert.Equal(t, "TakeInventory", d.LastState)
}

func TestAStopComputeStillRunningWhenARuntimeErrorEndedTheExecutionCountsAsAStop(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(input, analytics, ml, bi)
	a := rotating(0, analytics).inventory(inventoryOf(wsAnalytics, 2)).stopping()
	m := rotating(1, ml).unchanged()
	c := rotating(2, bi).unchanged()
	history = append(history, interleaved(a, m, c)...)
	cause := "An error occurred while executing the state 'StopCompute' (entered at the event id #31). The JSONPath '$.inventory' could not be found."
	r.execute(input, play{history: history, fail: &awsfake.ExecError{Error: "States.Runtime", Cause: cause}}, "", "")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-failed-runtime-error.json")))

	got := r.published()
	require.Len(t, got, 1, "the unchanged workspaces ended and need nothing")
	d := got[0]
	assert.Equal(t, wsAnalytics, d.WorkspaceID)
	assert.Equal(t, rescue.RescueComputeDown, d.Rescue)
	assert.Equal(t, rescue.PhaseRuntimeError, d.Phase)
	assert.Equal(t, report.ErrorDetail{Type: "States.Runtime", Message: cause}, *d.Error)
	assert.True(t, d.ComputeStopped, "StopCompute may have stopped some compute before the execution ended")
	assert.True(t, d.StillDownUnknown)
	assert.Equal(t, "StopCompute", d.LastState)
	assert.Contains(t, d.Message, "failed with States.Runtime while StopCompute was stopping the workspace's compute")
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestAFailureTheIterationCouldNotPublishIsPublishedByTheRescue(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(input, analytics, ml, bi)
	a := rotating(0, analytics).inventory(inventoryOf(wsAnalytics, 2)).stopped().failedAfterPatch(false)
	m := rotating(1, ml).inventory(inventoryOf(wsML, 1)).stopped().rotated()
	c := rotating(2, bi).inventory(inventoryOf(wsBI, 1)).stopped().failedAfterPatch(true)
	history = append(history, a.steps...)
	history = append(history, m.steps...)
	history = append(history, c.steps...)
	// Then the Map ends, the locks are released and the execution fails as designed.
	r.execute(input, play{history: history, fail: &awsfake.ExecError{Error: "RotationFailed",
		Cause: "One or more workspaces failed to rotate."}}, "", "")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-failed-runtime-error.json")))

	got := r.published()
	require.Len(t, got, 1, "bi published its own failure, ml its success")
	d := got[0]
	assert.Equal(t, wsAnalytics, d.WorkspaceID)
	assert.Equal(t, rescue.RescueUnreportedFailure, d.Rescue)
	assert.Equal(t, "patch-workspace", d.Phase, "the report the iteration would have published")
	assert.Equal(t, "DatabricksUnavailable", d.Error.Type)
	assert.Equal(t, "PATCH workspaces/"+wsAnalytics+": 500 Internal Server Error", d.Error.Message)
	assert.False(t, d.StillDownUnknown)
	assert.Empty(t, d.StillDown, "compensation brought everything back")
	assert.Equal(t, "FailedUnreported", d.LastState)
	assert.Contains(t, d.Message, "could not publish this event itself")
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestADryRunThatWasStoppedPublishesNothingAndReleasesItsLocks(t *testing.T) {
	r := newRig(t)
	input := with(json.RawMessage(fixtureInput(t)), "dry_run", true)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(mustJSON(input), analytics, ml, bi)
	p := newIter("PlanWorkspaces", 0, analytics, true)
	p.choice("PlanAlreadyOnKey?", p.run)
	p.taskStarted("PlanInventory", p.run)
	history = append(history, p.steps...)
	r.execute(mustJSON(input), play{history: history, untilStopped: true}, "", "")

	ev := editDetail(t, fixture(t, "rotation-execution-aborted.json"), func(d map[string]any) { d["input"] = mustJSON(input) })
	require.NoError(t, r.h.Handle(context.Background(), ev))

	assert.Empty(t, r.published(), "a dry run stops nothing")
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestARejectedRequestIsNotReportedAgain(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	var history steps
	var state map[string]any
	require.NoError(t, json.Unmarshal([]byte(input), &state))
	locked := with(state, "lock", map[string]any{"owner": executionName, "workspace_ids": []string{wsAnalytics, wsML, wsBI}})
	history.task("LockWorkspaces", map[string]any{"execution": executionName}, locked["lock"], locked)
	stepErr := rotation.StepError{Error: "KeyPolicyRejected", Cause: "the key policy does not let Databricks use the key"}
	rejected := with(locked, "error", stepErr)
	history.failedTask("Validate", locked, stepErr, rejected)
	reported := with(rejected, "report", map[string]any{"detail_type": rotation.DetailRotationRejected})
	history.task("BuildRejectionReport", rejected, reported["report"], reported)
	history.putEvents("PublishRejection", reported, false)
	r.execute(input, play{history: history, fail: &awsfake.ExecError{Error: stepErr.Error, Cause: stepErr.Cause}}, "", "")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-failed-runtime-error.json")))

	assert.Empty(t, r.published(), "Rotation Rejected already said nothing was changed")
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestAnExecutionStoppedBeforeTheMapReportsEveryWorkspaceUnchanged(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	var history steps
	history.taskStarted("LockWorkspaces", map[string]any{"execution": executionName})
	r.execute(input, play{history: history, untilStopped: true}, "", "")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	got := byWorkspace(r.published())
	require.Len(t, got, 3)
	for _, ws := range []string{wsAnalytics, wsML, wsBI} {
		assert.Equal(t, rescue.RescueNothingStopped, got[ws].Rescue, ws)
		assert.Equal(t, newKeyARN, got[ws].KeyARN, "from the request: %s", ws)
	}
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces(), "the locks come from the execution input")
}

func TestEventsTheRescueDoesNotActOnAreAcknowledgedWithoutACall(t *testing.T) {
	aborted := func(t *testing.T) events.CloudWatchEvent { return fixture(t, "rotation-execution-aborted.json") }
	cases := []struct {
		name      string
		event     func(t *testing.T) events.CloudWatchEvent
		malformed bool
		reason    string
	}{
		{"a rotation that succeeded", func(t *testing.T) events.CloudWatchEvent { return fixture(t, "rotation-execution-succeeded.json") }, false, "needs no rescue"},
		{"a rotation still running", func(t *testing.T) events.CloudWatchEvent {
			return editDetail(t, aborted(t), func(d map[string]any) { d["status"] = "RUNNING" })
		}, false, "needs no rescue"},
		{"another state machine's failed execution", func(t *testing.T) events.CloudWatchEvent {
			return editDetail(t, aborted(t), func(d map[string]any) {
				d["stateMachineArn"] = reminderARN
				d["executionArn"] = strings.Replace(reminderARN, ":stateMachine:", ":execution:", 1) + ":retire-1"
			})
		}, false, "not of the rotation state machine"},
		{"another source", func(t *testing.T) events.CloudWatchEvent {
			ev := aborted(t)
			ev.Source = "databricks-cmk-rotator"
			return ev
		}, true, "source"},
		{"another detail-type", func(t *testing.T) events.CloudWatchEvent {
			ev := aborted(t)
			ev.DetailType = "Step Functions State Machine Status Change"
			return ev
		}, true, "detail-type"},
		{"a detail that is not an object", func(t *testing.T) events.CloudWatchEvent {
			ev := aborted(t)
			ev.Detail = json.RawMessage(`"ABORTED"`)
			return ev
		}, true, "malformed"},
		{"no executionArn", func(t *testing.T) events.CloudWatchEvent {
			return editDetail(t, aborted(t), func(d map[string]any) { delete(d, "executionArn") })
		}, true, "names no executionArn"},
		{"an executionArn of another state machine", func(t *testing.T) events.CloudWatchEvent {
			return editDetail(t, aborted(t), func(d map[string]any) {
				d["executionArn"] = strings.Replace(executionARN, "RotationStateMachine", "Other", 1)
			})
		}, true, "is not an execution of"},
		{"a name that is not the execution's", func(t *testing.T) events.CloudWatchEvent {
			return editDetail(t, aborted(t), func(d map[string]any) { d["name"] = otherExecution })
		}, true, "does not match executionArn"},
		{"an unknown status", func(t *testing.T) events.CloudWatchEvent {
			return editDetail(t, aborted(t), func(d map[string]any) { d["status"] = "EXPLODED" })
		}, true, "not a Step Functions execution status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			require.NoError(t, r.h.Handle(context.Background(), c.event(t)))
			assert.Empty(t, r.published())
			assert.False(t, r.calledSFN("DescribeExecution") || r.calledSFN("GetExecutionHistory"), "no call for an event the rescue does not act on")
			recs := r.logs.Records(t)
			require.Len(t, recs, 1)
			assert.Equal(t, "event ignored", recs[0]["msg"])
			assert.Contains(t, recs[0]["reason"], c.reason)
			level := "INFO"
			if c.malformed {
				level = "WARN"
			}
			assert.Equal(t, level, recs[0]["level"])
		})
	}
}

func TestAStatusChangeOfAnExecutionStepFunctionsDoesNotKnowIsAcknowledged(t *testing.T) {
	r := newRig(t)
	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))
	assert.Empty(t, r.published())
	assert.False(t, r.calledSFN("GetExecutionHistory"))
	assert.Contains(t, r.logs.String(), "the execution does not exist")
	assert.Len(t, r.lockedWorkspaces(), 1)
}

// redriven answers DescribeExecution as for an execution that an operator redrove since.
type redriven struct{}

func (redriven) DescribeExecution(context.Context, *sfn.DescribeExecutionInput, ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	return &sfn.DescribeExecutionOutput{Status: sfntypes.ExecutionStatusRunning}, nil
}

func TestARedrivenExecutionIsLeftToReportForItself(t *testing.T) {
	r := newRig(t)
	abortedWhileStopping(t, r)
	r.h.Executions = redriven{}

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	assert.Empty(t, r.published())
	assert.False(t, r.calledSFN("GetExecutionHistory"))
	assert.Len(t, r.lockedWorkspaces(), 4, "a running execution keeps its locks")
}

// The hand-written fakes below fail one call as AWS does when throttled or unavailable.

var throttled = &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}

type failingDescribe struct{}

func (failingDescribe) DescribeExecution(context.Context, *sfn.DescribeExecutionInput, ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	return nil, throttled
}

type failingHistory struct{}

func (failingHistory) GetExecutionHistory(context.Context, *sfn.GetExecutionHistoryInput, ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "ServiceUnavailable", Message: "Service Unavailable"}
}

// failingDeletes is the lock table when DynamoDB is unavailable for deletes.
type failingDeletes struct{ *dynamodb.Client }

func (failingDeletes) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "InternalServerError", Message: "Internal server error"}
}

func TestTransientAWSFailuresAreReturnedSoThatTheInvocationIsRetried(t *testing.T) {
	cases := []struct {
		name      string
		breakIt   func(r *rig)
		code      string
		published int
	}{
		{"DescribeExecution throttled", func(r *rig) { r.h.Executions = failingDescribe{} }, "ThrottlingException", 0},
		{"GetExecutionHistory unavailable", func(r *rig) { r.h.History = failingHistory{} }, "ServiceUnavailable", 0},
		{"DeleteItem failing", func(r *rig) { r.locks.DB = failingDeletes{r.db} }, "InternalServerError", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			abortedWhileStopping(t, r)
			c.breakIt(r)

			err := r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json"))

			var apiErr smithy.APIError
			require.True(t, errors.As(err, &apiErr), "got %v", err)
			assert.Equal(t, c.code, apiErr.ErrorCode())
			assert.Len(t, r.published(), c.published)
			assert.Len(t, r.lockedWorkspaces(), 4)
		})
	}
}

func TestARefusedEventKeepsTheLocksUntilARetryPublishesIt(t *testing.T) {
	r := newRig(t)
	abortedWhileStopping(t, r)
	ev := fixture(t, "rotation-execution-aborted.json")
	r.aws.FailPutEvents(1)

	err := r.h.Handle(context.Background(), ev)

	var entry *rescue.EntryError
	require.ErrorAs(t, err, &entry)
	assert.Equal(t, "InternalFailure", entry.Code)
	assert.Len(t, r.lockedWorkspaces(), 4, "no lock is freed before the event saying what is down is out")

	require.NoError(t, r.h.Handle(context.Background(), ev), "the retry")
	assert.Len(t, r.published(), 2)
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

// A rotation in approval mode takes each workspace through two Maps: the read-only plan, whose
// iteration ends PLANNED, and then the rotation. An abort after the rotation's stop must still read
// as compute down, not as the plan's finished iteration.
func TestAnAbortAfterAnApprovedPlanStillReportsTheStoppedWorkspace(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics)
	history, _ := rotationStart(input, analytics)
	plan := newIter("InventoryForApproval", 0, analytics, true)
	plan.then("ApprovalInventory", "inventory", inventoryOf(wsAnalytics, 4))
	plan.ended("ApprovalPlanned", rotation.OutcomePlanned, nil)
	history = append(history, plan.steps...)
	a := rotating(0, analytics).inventory(inventoryOf(wsAnalytics, 4)).stopped()
	history = append(history, a.steps...)
	exec := r.execute(input, play{history: history, untilStopped: true}, "", "")
	require.Equal(t, awsfake.StatusAborted, exec.Status)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	got := byWorkspace(r.published())
	require.Contains(t, got, wsAnalytics, "the rotation's iteration was under way, whatever the plan's ended with")
	assert.Equal(t, rescue.RescueComputeDown, got[wsAnalytics].Rescue)
	assert.True(t, got[wsAnalytics].StillDownUnknown)
}
