package awsfake_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
)

// redrivingRunner is a gatedRunner that can redrive: it records what history it was handed.
type redrivingRunner struct {
	*gatedRunner
	handed []awsfake.HistoryEvent
}

func (r *redrivingRunner) Redrive(ctx context.Context, exec awsfake.Execution, history []awsfake.HistoryEvent) (string, *awsfake.ExecError) {
	r.handed = history
	awsfake.RecordHistory(ctx, awsfake.HistoryEvent{Type: "TaskStateEntered", StateName: "Work", Input: exec.Input})
	return `{"redriven":true}`, nil
}

func TestRedriveExecutionRunsAClosedExecutionAgainWithItsHistory(t *testing.T) {
	f := newFixture(t)
	runner := &redrivingRunner{gatedRunner: newGatedRunner()}
	f.srv.RegisterStateMachine(smARN, runner)
	ctx := context.Background()

	out, err := f.start(t, "redrive-me", `{"n":1}`)
	require.NoError(t, err)
	_, err = f.sfn.RedriveExecution(ctx, &sfn.RedriveExecutionInput{ExecutionArn: out.ExecutionArn})
	var notRedrivable *sfntypes.ExecutionNotRedrivable
	require.ErrorAs(t, err, &notRedrivable, "a running execution cannot be redriven")

	_, err = f.sfn.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: out.ExecutionArn})
	require.NoError(t, err)
	waitClosed(t, f.srv, aws.ToString(out.ExecutionArn))

	red, err := f.sfn.RedriveExecution(ctx, &sfn.RedriveExecutionInput{ExecutionArn: out.ExecutionArn})
	require.NoError(t, err)
	require.NotNil(t, red.RedriveDate)
	exec := waitClosed(t, f.srv, aws.ToString(out.ExecutionArn))
	assert.Equal(t, awsfake.StatusSucceeded, exec.Status, "the redrive's run closes the execution, not the aborted run winding down")
	assert.JSONEq(t, `{"redriven":true}`, exec.Output)
	assert.Equal(t, 1, exec.RedriveCount)
	require.NotEmpty(t, runner.handed)
	assert.Equal(t, "ExecutionAborted", runner.handed[len(runner.handed)-1].Type, "the runner sees the history up to the end")

	desc, err := f.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: out.ExecutionArn})
	require.NoError(t, err)
	assert.EqualValues(t, 1, aws.ToInt32(desc.RedriveCount))
	assert.NotNil(t, desc.RedriveDate)

	_, err = f.sfn.RedriveExecution(ctx, &sfn.RedriveExecutionInput{ExecutionArn: out.ExecutionArn})
	require.ErrorAs(t, err, &notRedrivable, "a SUCCEEDED execution cannot be redriven")
	var types []string
	for _, ev := range f.srv.History(aws.ToString(out.ExecutionArn)) {
		types = append(types, ev.Type)
	}
	assert.Contains(t, types, "ExecutionRedriven")
}

func TestRedriveExecutionNeedsARunnerThatCanRedrive(t *testing.T) {
	f := newFixture(t)
	runner := newGatedRunner()
	f.srv.RegisterStateMachine(smARN, runner)
	ctx := context.Background()
	out, err := f.start(t, "cannot", "{}")
	require.NoError(t, err)
	_, err = f.sfn.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: out.ExecutionArn})
	require.NoError(t, err)
	waitClosed(t, f.srv, aws.ToString(out.ExecutionArn))

	_, err = f.sfn.RedriveExecution(ctx, &sfn.RedriveExecutionInput{ExecutionArn: out.ExecutionArn})
	var notRedrivable *sfntypes.ExecutionNotRedrivable
	require.ErrorAs(t, err, &notRedrivable)
	assert.Contains(t, err.Error(), "cannot redrive")
}
