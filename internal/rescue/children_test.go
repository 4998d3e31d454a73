package rescue_test

// Issue 11: every workspace of a request rotates in its own child execution
// (statemachine/workspace-rotation.asl.json). A child that ends badly is rescued for its one
// workspace; the request's execution leaves such a workspace to its child.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

const (
	childSMARN = "arn:aws:states:us-west-2:111122223333:stateMachine:databricks-cmk-rotator-WorkspaceRotationStateMachine-1A2B3C4D5E6F"
	childName  = wsAnalytics + "-0123456789abcdef0123456789abcdef"
	childARN   = "arn:aws:states:us-west-2:111122223333:execution:databricks-cmk-rotator-WorkspaceRotationStateMachine-1A2B3C4D5E6F:" + childName
)

// withoutMapEvents turns an iteration's steps into a child execution's own history: the child's
// states are its top level.
func withoutMapEvents(s steps) []awsfake.HistoryEvent {
	var out []awsfake.HistoryEvent
	for _, ev := range s {
		if !strings.HasPrefix(ev.Type, "MapIteration") {
			out = append(out, ev)
		}
	}
	return out
}

func TestAChildExecutionAbortedAfterItsStopIsReportedAndOnlyItsWorkspaceIsUnlocked(t *testing.T) {
	r := newRig(t)
	r.h.Config.WorkspaceRotationStateMachineARN = childSMARN
	r.aws.RegisterStateMachine(childSMARN, awsfake.RunnerFunc(r.run))
	// The request's execution holds the three locks; the child acts for it.
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	inv := inventoryOf(wsAnalytics, 3)
	it := rotating(0, analytics).inventory(inv).stopped()
	p := play{history: withoutMapEvents(it.steps), untilStopped: true, recorded: make(chan struct{})}
	r.mu.Lock()
	r.plays[childName] = p
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := r.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(childSMARN), Name: aws.String(childName),
		Input: aws.String(mustJSON(it.run))})
	require.NoError(t, err)
	<-p.recorded
	_, err = r.sfn.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: aws.String(childARN)})
	require.NoError(t, err)
	require.Equal(t, awsfake.StatusAborted, r.aws.WaitExecution(ctx, childARN).Status)

	ev := editDetail(t, fixture(t, "rotation-execution-aborted.json"), func(d map[string]any) {
		d["stateMachineArn"], d["executionArn"], d["name"], d["input"] = childSMARN, childARN, childName, mustJSON(it.run)
	})
	require.NoError(t, r.h.Handle(ctx, ev))

	got := r.published()
	require.Len(t, got, 1, "the child's one workspace")
	d := got[0]
	assert.Equal(t, wsAnalytics, d.WorkspaceID)
	assert.Equal(t, rescue.RescueComputeDown, d.Rescue)
	assert.Equal(t, rotation.OutcomeFailed, d.Outcome)
	assert.Equal(t, childARN, d.ExecutionARN)
	assert.True(t, d.ComputeStopped)
	require.NotNil(t, d.Inventory)
	assert.Equal(t, inv.Clusters, d.Inventory.Clusters)
	assert.Equal(t, map[string]string{wsML: executionName, wsBI: executionName, wsOther: otherExecution}, r.lockedWorkspaces(),
		"the child's workspace lock (owned by the request's execution) is released, and only it")
}

func TestARequestStoppedWhileAChildRanLeavesThatWorkspaceToTheChild(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(input, analytics, ml, bi)
	// analytics: handed to its child, which had not ended; ml: its child ended ROTATED; bi: never started.
	a := newIter("RotateWorkspaces", 0, analytics, false)
	a.taskStarted("RotateWorkspace", a.run)
	m := newIter("RotateWorkspaces", 1, ml, false)
	m.taskStarted("RotateWorkspace", m.run)
	m.ended("RotateWorkspace", rotation.OutcomeRotated, nil)
	history = append(history, interleaved(a, m)...)
	exec := r.execute(input, play{history: history, untilStopped: true}, "", "")
	require.Equal(t, awsfake.StatusAborted, exec.Status)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	got := byWorkspace(r.published())
	assert.NotContains(t, got, wsAnalytics, "its child reports for itself (or its own rescue does)")
	assert.NotContains(t, got, wsML, "its child ended and reported")
	require.Contains(t, got, wsBI)
	assert.Equal(t, rescue.RescueNothingStopped, got[wsBI].Rescue)
	assert.Equal(t, map[string]string{wsAnalytics: executionName, wsOther: otherExecution}, r.lockedWorkspaces(),
		"the lock of the workspace whose child had not ended is left to the child's rescue")
}
