package awsfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sandboxCall is the engine's side of .waitForTaskToken (emulation/sandbox/lib/aws.mjs).
func sandboxCall(t *testing.T, url, op string, body any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("X-Amz-Target", "Sandbox."+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(text))
	var out map[string]any
	require.NoError(t, json.Unmarshal(text, &out))
	return out
}

func TestTaskTokensAreAnsweredOnceThroughTheRealClient(t *testing.T) {
	f := newFixture(t)
	runner := newGatedRunner()
	f.srv.RegisterStateMachine(smARN, runner)
	ctx := context.Background()
	started, err := f.start(t, "waiting", `{}`)
	require.NoError(t, err)
	arn := aws.ToString(started.ExecutionArn)

	params := `{"FunctionName":"f","Payload":{"task_token":"tok-1"}}`
	sandboxCall(t, f.srv.URL(), "RegisterTaskToken", map[string]string{"executionArn": arn, "taskToken": "tok-1", "stateName": "AwaitApproval",
		"resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "parameters": params})
	assert.Equal(t, "PENDING", sandboxCall(t, f.srv.URL(), "TaskTokenResult", map[string]string{"taskToken": "tok-1"})["status"])

	// The token is in the history, where cmkrotate approve finds it.
	hist, err := f.sfn.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(arn), ReverseOrder: true})
	require.NoError(t, err)
	var scheduled *sfntypes.TaskScheduledEventDetails
	for _, ev := range hist.Events {
		if ev.Type == sfntypes.HistoryEventTypeTaskScheduled {
			scheduled = ev.TaskScheduledEventDetails
		}
	}
	require.NotNil(t, scheduled)
	assert.Equal(t, "invoke.waitForTaskToken", aws.ToString(scheduled.Resource))
	assert.Equal(t, "lambda", aws.ToString(scheduled.ResourceType))
	assert.JSONEq(t, params, aws.ToString(scheduled.Parameters))

	_, err = f.sfn.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String("tok-1"), Output: aws.String("not json")})
	var badOutput *sfntypes.InvalidOutput
	assert.ErrorAs(t, err, &badOutput)
	_, err = f.sfn.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String("tok-unknown"), Output: aws.String("{}")})
	var invalid *sfntypes.InvalidToken
	assert.ErrorAs(t, err, &invalid)

	_, err = f.sfn.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String("tok-1"), Output: aws.String(`{"ok":true}`)})
	require.NoError(t, err)
	res := sandboxCall(t, f.srv.URL(), "TaskTokenResult", map[string]string{"taskToken": "tok-1"})
	assert.Equal(t, "SUCCEEDED", res["status"])
	assert.Equal(t, `{"ok":true}`, res["output"])

	_, err = f.sfn.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String("tok-1"), Error: aws.String("ApprovalRejected")})
	var timedOut *sfntypes.TaskTimedOut
	assert.ErrorAs(t, err, &timedOut, "a token is answered once")

	sandboxCall(t, f.srv.URL(), "RegisterTaskToken", map[string]string{"executionArn": arn, "taskToken": "tok-2"})
	_, err = f.sfn.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String("tok-2"), Error: aws.String("ApprovalRejected"), Cause: aws.String("freeze")})
	require.NoError(t, err)
	res = sandboxCall(t, f.srv.URL(), "TaskTokenResult", map[string]string{"taskToken": "tok-2"})
	assert.Equal(t, map[string]any{"status": "FAILED", "error": "ApprovalRejected", "cause": "freeze"}, res)

	sandboxCall(t, f.srv.URL(), "RegisterTaskToken", map[string]string{"executionArn": arn, "taskToken": "tok-3"})
	runner.release("waiting")
	waitClosed(t, f.srv, arn)
	_, err = f.sfn.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String("tok-3"), Output: aws.String("{}")})
	assert.ErrorAs(t, err, &timedOut, "the execution closed")
}
