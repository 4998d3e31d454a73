package rig_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
)

// databricksChanges counts the calls that change something in Databricks (anything but a GET).
func (s *scenario) databricksChanges() []string {
	var out []string
	for _, r := range s.rig.Fake.Requests() {
		if strings.HasPrefix(r.Path, "/api/") && r.Method != "GET" {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

// settled waits until Databricks has seen no change for a second: a Lambda invocation goes on
// after the execution that called it is stopped, as in AWS.
func (s *scenario) settled() []string {
	s.t.Helper()
	last, since := len(s.databricksChanges()), time.Now()
	for time.Since(since) < time.Second {
		select {
		case <-s.ctx.Done():
			s.t.Fatal("Databricks never settled")
		case <-time.After(50 * time.Millisecond):
		}
		if n := len(s.databricksChanges()); n != last {
			last, since = n, time.Now()
		}
	}
	return s.databricksChanges()
}

// An execution is stopped while StopCompute stops the workspace; the rescue reports it and
// releases its lock; another rotation takes the workspace; then an operator redrives the first
// execution. The redriven StopCompute (the real bootstrap, invoked by the real Map iteration
// definition with the input the history recorded) finds the lock another's and refuses with
// WorkspaceBusy naming the holder: nothing is stopped, patched or started again, and the iteration
// ends in LockLost rather than in Compensate, which would start compute into the other rotation.
//
// awsfake.RedriveExecution and sandbox.EngineRunner.Redrive emulate the redrive (the local engine
// has none): the unfinished iteration runs again from the state it was in; the states after the
// Map are not run.
func TestARedrivenExecutionWhoseLockWasTakenRefusesWithoutTouchingTheWorkspace(t *testing.T) {
	s := start(t, func(o *rig.Options) { o.Rescue = true })
	// The first delete takes a second: the stop is under way when the operator stops the execution.
	s.rig.Fake.InjectFault(dbfake.Fault{Method: "POST", Path: `^/api/2\.[01]/clusters/delete$`, Delay: time.Second, Times: 1})
	request := s.rotateAnalytics()
	s.waitForState(request, "StopCompute")
	// The workspace rotates in its own child execution: that is the one stopped, rescued and redriven.
	children := s.rig.Children(request)
	require.Len(t, children, 1)
	arn := children[0].ExecutionArn
	time.Sleep(300 * time.Millisecond)
	_, err := s.rig.SFN.StopExecution(s.ctx, &sfn.StopExecutionInput{ExecutionArn: aws.String(arn)})
	require.NoError(t, err)
	exec := s.rig.AWS.WaitExecution(s.ctx, arn)
	require.Equal(t, awsfake.StatusAborted, exec.Status)
	before := s.settled()
	require.NotEmpty(t, before, "precondition: the aborted execution's StopCompute stopped compute")

	require.NoError(t, s.rig.Rescue(s.ctx, arn))
	s.rig.AWS.WaitExecution(s.ctx, request)
	require.Empty(t, s.rig.AWS.Items(rig.LockTable), "precondition: the rescue released the lock")
	var rescued []map[string]any
	for _, e := range s.events("Rotation Failed") {
		if e["rescue"] == "compute-possibly-down" {
			rescued = append(rescued, e)
		}
	}
	require.Len(t, rescued, 1, "the rescue reported the stopped compute")

	// Another rotation takes the workspace, as LockWorkspaces would for it.
	locks := &wslock.Locks{Table: rig.LockTable, Lease: wslock.DefaultLease, Clock: func() time.Time { return time.Now().UTC() },
		DB: dynamodb.New(dynamodb.Options{Region: s.rig.Region, BaseEndpoint: aws.String(s.rig.AWS.URL()),
			Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})}
	other, _ := json.Marshal(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	_, err = locks.Acquire(s.ctx, wslock.AcquireInput{Execution: "rotate-the-other-one", Request: other})
	require.NoError(t, err)

	redriveAt := len(s.rig.Timeline(arn))
	_, err = s.rig.SFN.RedriveExecution(s.ctx, &sfn.RedriveExecutionInput{ExecutionArn: aws.String(arn)})
	require.NoError(t, err)
	exec = s.rig.AWS.WaitExecution(s.ctx, arn)
	require.NotEqual(t, awsfake.StatusRunning, exec.Status)
	desc, err := s.rig.SFN.DescribeExecution(s.ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	require.NoError(t, err)
	assert.EqualValues(t, 1, aws.ToInt32(desc.RedriveCount))

	redriven := s.rig.Timeline(arn)[redriveAt:]
	var states, failures []string
	for _, ev := range redriven {
		switch ev.Type {
		case "StateEntered":
			states = append(states, ev.State)
		case "StateFailed":
			failures = append(failures, ev.State+": "+ev.Error+": "+ev.Cause)
		}
	}
	require.NotEmpty(t, states, "the redrive ran the iteration again")
	assert.Equal(t, "StopCompute", states[0], "from the state the execution was stopped in")
	require.Len(t, failures, 1)
	assert.Contains(t, failures[0], "StopCompute: WorkspaceBusy")
	assert.Contains(t, failures[0], "rotate-the-other-one", "the refusal names who holds the lock now")
	assert.Contains(t, states, "LockLost")
	assert.NotContains(t, states, "Compensate", "compute is not started into another rotation")
	assert.NotContains(t, states, "PatchWorkspace")
	assert.Equal(t, before, s.settled(), "nothing stopped, patched or started by the redrive")
	items := s.rig.AWS.Items(rig.LockTable)
	require.Len(t, items, 1)
	assert.Equal(t, "rotate-the-other-one", items[0]["owner"], "the other rotation keeps its lock")
}
