package awsfake_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
)

const smARN = "arn:aws:states:us-east-1:123456789012:stateMachine:rotation"

type fixture struct {
	srv    *awsfake.Server
	logs   *bytes.Buffer
	sfn    *sfn.Client
	events *eventbridge.Client
	sm     *secretsmanager.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	logs := &bytes.Buffer{}
	srv, err := awsfake.Start(awsfake.Config{Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	require.True(t, strings.HasPrefix(srv.URL(), "http://127.0.0.1:"), "binds loopback only: %s", srv.URL())

	creds := credentials.NewStaticCredentialsProvider("AKIDSANDBOX", "sandbox-secret", "")
	return &fixture{
		srv:  srv,
		logs: logs,
		sfn: sfn.New(sfn.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), Credentials: creds, RetryMaxAttempts: 1,
		}),
		events: eventbridge.New(eventbridge.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), Credentials: creds, RetryMaxAttempts: 1,
		}),
		sm: secretsmanager.New(secretsmanager.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), Credentials: creds, RetryMaxAttempts: 1,
		}),
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gatedRunner holds every execution open until the test releases it by name, then answers with
// what finish returns for that execution.
type gatedRunner struct {
	mu     sync.Mutex
	gates  map[string]chan struct{}
	runs   atomic.Int32
	finish func(exec awsfake.Execution) (string, *awsfake.ExecError)
}

func newGatedRunner() *gatedRunner {
	return &gatedRunner{gates: map[string]chan struct{}{}, finish: func(exec awsfake.Execution) (string, *awsfake.ExecError) {
		return `{"done":true}`, nil
	}}
}

func (g *gatedRunner) gate(name string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates[name] == nil {
		g.gates[name] = make(chan struct{})
	}
	return g.gates[name]
}

func (g *gatedRunner) release(name string) { close(g.gate(name)) }

func (g *gatedRunner) Run(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
	g.runs.Add(1)
	awsfake.RecordHistory(ctx, awsfake.HistoryEvent{Type: "TaskStateEntered", StateName: "Work", Input: exec.Input})
	select {
	case <-g.gate(exec.Name):
	case <-ctx.Done():
		return "", &awsfake.ExecError{Error: "Cancelled", Cause: ctx.Err().Error()}
	}
	awsfake.RecordHistory(ctx, awsfake.HistoryEvent{Type: "TaskStateExited", StateName: "Work", Output: `{"done":true}`})
	return g.finish(exec)
}

func (f *fixture) start(t *testing.T, name, input string) (*sfn.StartExecutionOutput, error) {
	t.Helper()
	in := &sfn.StartExecutionInput{StateMachineArn: aws.String(smARN), Input: aws.String(input)}
	if name != "" {
		in.Name = aws.String(name)
	}
	return f.sfn.StartExecution(context.Background(), in)
}

func waitClosed(t *testing.T, srv *awsfake.Server, arn string) awsfake.Execution {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	exec := srv.WaitExecution(ctx, arn)
	require.NotEqual(t, awsfake.StatusRunning, exec.Status, "execution %s still running", arn)
	return exec
}

func TestStartExecutionRefusesInvalidNames(t *testing.T) {
	f := newFixture(t)
	f.srv.RegisterStateMachine(smARN, newGatedRunner())

	for _, name := range []string{
		"", strings.Repeat("n", 81), "has space", "tab\tname", "new\nline", "a/b", "a:b", "a,b", "a;b",
		"a<b", "a>b", "{a}", "[a]", "a?", "a*", `a"b`, "a#b", "a%b", `a\b`, "a^b", "a|b", "a~b", "a`b",
		"a$b", "a&b", "ctl\x01", "del\x7f", "c1\u0085", "nbsp\u00a0",
	} {
		t.Run("refuses "+strings.ToValidUTF8(name, "?"), func(t *testing.T) {
			_, err := f.sfn.StartExecution(context.Background(), &sfn.StartExecutionInput{
				StateMachineArn: aws.String(smARN), Name: aws.String(name), Input: aws.String("{}"),
			})
			var invalid *sfntypes.InvalidName
			require.ErrorAs(t, err, &invalid)
		})
	}
	for _, name := range []string{strings.Repeat("n", 80), "rot-0a1b_2c.3d", "Ünïcode-ok", "a+b=c@d!e'(f)"} {
		t.Run("accepts "+name, func(t *testing.T) {
			out, err := f.start(t, name, "{}")
			require.NoError(t, err)
			assert.Equal(t, "arn:aws:states:us-east-1:123456789012:execution:rotation:"+name, aws.ToString(out.ExecutionArn))
		})
	}
}

func TestStartExecutionOnUnknownStateMachine(t *testing.T) {
	f := newFixture(t)
	_, err := f.start(t, "x", "{}")
	var missing *sfntypes.StateMachineDoesNotExist
	require.ErrorAs(t, err, &missing)

	_, err = f.sfn.StartExecution(context.Background(), &sfn.StartExecutionInput{StateMachineArn: aws.String("not-an-arn")})
	var badARN *sfntypes.InvalidArn
	require.ErrorAs(t, err, &badARN)
}

func TestStartExecutionIsIdempotentOnlyWhileRunningWithTheSameInput(t *testing.T) {
	f := newFixture(t)
	runner := newGatedRunner()
	f.srv.RegisterStateMachine(smARN, runner)

	first, err := f.start(t, "rot-1", `{"key":"a"}`)
	require.NoError(t, err)

	t.Run("same name, running, identical input returns the existing execution", func(t *testing.T) {
		again, err := f.start(t, "rot-1", `{"key":"a"}`)
		require.NoError(t, err)
		assert.Equal(t, aws.ToString(first.ExecutionArn), aws.ToString(again.ExecutionArn))
		assert.True(t, first.StartDate.Equal(*again.StartDate), "%v vs %v", first.StartDate, again.StartDate)
		assert.Len(t, f.srv.Executions(), 1)
	})
	t.Run("same name, running, different input is refused", func(t *testing.T) {
		_, err := f.start(t, "rot-1", `{"key":"b"}`)
		var exists *sfntypes.ExecutionAlreadyExists
		require.ErrorAs(t, err, &exists)
	})

	runner.release("rot-1")
	closed := waitClosed(t, f.srv, aws.ToString(first.ExecutionArn))
	assert.Equal(t, awsfake.StatusSucceeded, closed.Status)

	t.Run("same name, closed, identical input is refused", func(t *testing.T) {
		_, err := f.start(t, "rot-1", `{"key":"a"}`)
		var exists *sfntypes.ExecutionAlreadyExists
		require.ErrorAs(t, err, &exists)
	})
	assert.EqualValues(t, 1, runner.runs.Load(), "the runner ran once for all those starts")

	t.Run("an omitted name gets a uuid", func(t *testing.T) {
		out, err := f.start(t, "", "{}")
		require.NoError(t, err)
		name := aws.ToString(out.ExecutionArn)[strings.LastIndex(aws.ToString(out.ExecutionArn), ":")+1:]
		assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, name)
	})
	t.Run("an input that is not JSON is refused", func(t *testing.T) {
		_, err := f.start(t, "rot-2", `{not json`)
		var invalid *sfntypes.InvalidExecutionInput
		require.ErrorAs(t, err, &invalid)
	})
}

func TestDescribeExecutionReportsEveryOutcome(t *testing.T) {
	f := newFixture(t)
	runner := newGatedRunner()
	runner.finish = func(exec awsfake.Execution) (string, *awsfake.ExecError) {
		switch exec.Name {
		case "fails":
			return "", &awsfake.ExecError{Error: "KeyNotUsable", Cause: `{"errorMessage":"disabled"}`}
		case "times-out":
			return "", &awsfake.ExecError{Error: "States.Timeout", Status: awsfake.StatusTimedOut}
		}
		return `{"ok":1}`, nil
	}
	f.srv.RegisterStateMachine(smARN, runner)
	ctx := context.Background()

	running, err := f.start(t, "runs", `{"in":1}`)
	require.NoError(t, err)
	desc, err := f.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: running.ExecutionArn})
	require.NoError(t, err)
	assert.Equal(t, sfntypes.ExecutionStatusRunning, desc.Status)
	assert.Equal(t, `{"in":1}`, aws.ToString(desc.Input))
	assert.Nil(t, desc.StopDate)
	assert.WithinDuration(t, time.Now(), aws.ToTime(desc.StartDate), 5*time.Second)

	for _, tc := range []struct {
		name          string
		status        sfntypes.ExecutionStatus
		output        *string
		errName, caus string
	}{
		{"succeeds", sfntypes.ExecutionStatusSucceeded, aws.String(`{"ok":1}`), "", ""},
		{"fails", sfntypes.ExecutionStatusFailed, nil, "KeyNotUsable", `{"errorMessage":"disabled"}`},
		{"times-out", sfntypes.ExecutionStatusTimedOut, nil, "States.Timeout", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := f.start(t, tc.name, "{}")
			require.NoError(t, err)
			runner.release(tc.name)
			waitClosed(t, f.srv, aws.ToString(out.ExecutionArn))
			desc, err := f.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: out.ExecutionArn})
			require.NoError(t, err)
			assert.Equal(t, tc.status, desc.Status)
			assert.Equal(t, tc.output, desc.Output)
			assert.Equal(t, tc.errName, aws.ToString(desc.Error))
			assert.Equal(t, tc.caus, aws.ToString(desc.Cause))
			require.NotNil(t, desc.StopDate)
			assert.False(t, desc.StopDate.Before(*desc.StartDate))
		})
	}

	_, err = f.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String("arn:aws:states:us-east-1:123456789012:execution:rotation:nope")})
	var missing *sfntypes.ExecutionDoesNotExist
	require.ErrorAs(t, err, &missing)
}

func TestListExecutionsFiltersByStatusNewestFirst(t *testing.T) {
	f := newFixture(t)
	runner := newGatedRunner()
	f.srv.RegisterStateMachine(smARN, runner)
	other := "arn:aws:states:us-east-1:123456789012:stateMachine:other"
	f.srv.RegisterStateMachine(other, newGatedRunner())
	ctx := context.Background()

	for _, name := range []string{"e1", "e2", "e3", "e4"} {
		out, err := f.start(t, name, "{}")
		require.NoError(t, err)
		if name == "e1" || name == "e3" {
			runner.release(name)
			waitClosed(t, f.srv, aws.ToString(out.ExecutionArn))
		}
		time.Sleep(2 * time.Millisecond) // distinct start dates
	}
	_, err := f.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(other), Name: aws.String("elsewhere")})
	require.NoError(t, err)

	names := func(items []sfntypes.ExecutionListItem) []string {
		var out []string
		for _, it := range items {
			out = append(out, aws.ToString(it.Name))
		}
		return out
	}
	all, err := f.sfn.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String(smARN)})
	require.NoError(t, err)
	assert.Equal(t, []string{"e4", "e3", "e2", "e1"}, names(all.Executions))

	running, err := f.sfn.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String(smARN), StatusFilter: sfntypes.ExecutionStatusRunning})
	require.NoError(t, err)
	assert.Equal(t, []string{"e4", "e2"}, names(running.Executions))

	succeeded, err := f.sfn.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String(smARN), StatusFilter: sfntypes.ExecutionStatusSucceeded})
	require.NoError(t, err)
	assert.Equal(t, []string{"e3", "e1"}, names(succeeded.Executions))
	require.NotNil(t, succeeded.Executions[0].StopDate)

	var paged []string
	pager := sfn.NewListExecutionsPaginator(f.sfn, &sfn.ListExecutionsInput{StateMachineArn: aws.String(smARN), MaxResults: 3})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		require.NoError(t, err)
		paged = append(paged, names(page.Executions)...)
	}
	assert.Equal(t, []string{"e4", "e3", "e2", "e1"}, paged)

	_, err = f.sfn.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String("arn:aws:states:us-east-1:123456789012:stateMachine:nope")})
	var missing *sfntypes.StateMachineDoesNotExist
	require.ErrorAs(t, err, &missing)
}

func TestGetExecutionHistoryHasTheRunnersEvents(t *testing.T) {
	f := newFixture(t)
	runner := newGatedRunner()
	f.srv.RegisterStateMachine(smARN, runner)
	ctx := context.Background()

	out, err := f.start(t, "h1", `{"k":1}`)
	require.NoError(t, err)
	runner.release("h1")
	waitClosed(t, f.srv, aws.ToString(out.ExecutionArn))

	hist, err := f.sfn.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: out.ExecutionArn})
	require.NoError(t, err)
	var types []sfntypes.HistoryEventType
	for _, ev := range hist.Events {
		types = append(types, ev.Type)
		require.NotNil(t, ev.Timestamp)
	}
	assert.Equal(t, []sfntypes.HistoryEventType{"ExecutionStarted", "TaskStateEntered", "TaskStateExited", "ExecutionSucceeded"}, types)
	assert.Equal(t, `{"k":1}`, aws.ToString(hist.Events[0].ExecutionStartedEventDetails.Input))
	assert.Equal(t, "Work", aws.ToString(hist.Events[1].StateEnteredEventDetails.Name))
	assert.Equal(t, "Work", aws.ToString(hist.Events[2].StateExitedEventDetails.Name))
	assert.Equal(t, int64(2), hist.Events[2].PreviousEventId)

	reversed, err := f.sfn.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: out.ExecutionArn, ReverseOrder: true, MaxResults: 1})
	require.NoError(t, err)
	require.Len(t, reversed.Events, 1)
	assert.Equal(t, sfntypes.HistoryEventTypeExecutionSucceeded, reversed.Events[0].Type)
	assert.NotNil(t, reversed.NextToken)

	assert.Len(t, f.srv.History(aws.ToString(out.ExecutionArn)), 4)
}

func TestStopExecutionAbortsAndCancelsTheRunner(t *testing.T) {
	f := newFixture(t)
	runner := newGatedRunner()
	f.srv.RegisterStateMachine(smARN, runner)
	ctx := context.Background()

	out, err := f.start(t, "stop-me", "{}")
	require.NoError(t, err)
	_, err = f.sfn.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: out.ExecutionArn, Error: aws.String("Operator"), Cause: aws.String("manual stop")})
	require.NoError(t, err)
	exec := waitClosed(t, f.srv, aws.ToString(out.ExecutionArn))
	assert.Equal(t, awsfake.StatusAborted, exec.Status)
	assert.Equal(t, "Operator", exec.Error)

	_, err = f.start(t, "stop-me", "{}")
	var exists *sfntypes.ExecutionAlreadyExists
	require.ErrorAs(t, err, &exists, "an aborted execution is closed")
}

func TestPutEventsRecordsEntriesAndInjectsFailures(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	out, err := f.events.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		Source: aws.String("acme.rotator"), DetailType: aws.String("Rotation Succeeded"), Detail: aws.String(`{"workspace":1}`),
		EventBusName: aws.String("default"), Resources: []string{"arn:aws:kms:us-east-1:123456789012:key/k"}, Time: &when,
	}}})
	require.NoError(t, err)
	assert.Zero(t, out.FailedEntryCount)
	require.Len(t, out.Entries, 1)
	require.NotEmpty(t, aws.ToString(out.Entries[0].EventId))

	f.srv.FailPutEvents(1)
	out, err = f.events.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
		{Source: aws.String("acme.rotator"), DetailType: aws.String("A"), Detail: aws.String(`{"n":1}`)},
		{Source: aws.String("acme.rotator"), DetailType: aws.String("B"), Detail: aws.String(`{"n":2}`)},
		{Source: aws.String("acme.rotator"), DetailType: aws.String("C"), Detail: aws.String(`not json`)},
	}})
	require.NoError(t, err, "partial failures are answered with 200")
	assert.EqualValues(t, 2, out.FailedEntryCount)
	assert.Equal(t, "InternalFailure", aws.ToString(out.Entries[0].ErrorCode))
	assert.NotEmpty(t, aws.ToString(out.Entries[1].EventId))
	assert.Equal(t, "MalformedDetail", aws.ToString(out.Entries[2].ErrorCode))

	events := f.srv.Events()
	require.Len(t, events, 2)
	assert.Equal(t, awsfake.Event{
		EventID: events[0].EventID, Source: "acme.rotator", DetailType: "Rotation Succeeded", Detail: `{"workspace":1}`,
		EventBusName: "default", Resources: []string{"arn:aws:kms:us-east-1:123456789012:key/k"}, Time: when,
	}, events[0])
	assert.Equal(t, "B", events[1].DetailType)
	failed := f.srv.FailedEvents()
	require.Len(t, failed, 2)
	assert.Equal(t, "A", failed[0].DetailType)
	assert.Equal(t, "InternalFailure", failed[0].ErrorCode)
}

func TestGetSecretValueByNameOrARN(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const value = `{"client_id":"sp","client_secret":"s3cr3t-never-logged"}`
	f.srv.PutSecret("databricks/sp", value)
	f.srv.PutSecret("arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf", "x")

	byName, err := f.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("databricks/sp")})
	require.NoError(t, err)
	assert.Equal(t, value, aws.ToString(byName.SecretString))
	assert.Equal(t, "databricks/sp", aws.ToString(byName.Name))
	assert.Equal(t, []string{"AWSCURRENT"}, byName.VersionStages)

	byARN, err := f.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: byName.ARN})
	require.NoError(t, err)
	assert.Equal(t, value, aws.ToString(byARN.SecretString))

	partial, err := f.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("arn:aws:secretsmanager:us-east-1:123456789012:secret:other")})
	require.NoError(t, err)
	assert.Equal(t, "other", aws.ToString(partial.Name))

	for _, in := range []*secretsmanager.GetSecretValueInput{
		{SecretId: aws.String("missing")},
		{SecretId: aws.String("databricks/sp"), VersionStage: aws.String("AWSPENDING")},
	} {
		_, err = f.sm.GetSecretValue(ctx, in)
		var notFound *smtypes.ResourceNotFoundException
		require.ErrorAs(t, err, &notFound)
	}
	assert.NotContains(t, f.logs.String(), "s3cr3t", "secret values never reach the log")
	assert.Contains(t, f.srv.Requests(), awsfake.Request{Target: "secretsmanager.GetSecretValue", Status: 400, ErrorCode: "ResourceNotFoundException"})
}

func TestUnknownTargetsAreRefusedAndRecorded(t *testing.T) {
	f := newFixture(t)
	_, err := f.sfn.ListStateMachines(context.Background(), &sfn.ListStateMachinesInput{})
	var apiErr smithy.APIError
	require.True(t, errors.As(err, &apiErr), "%v", err)
	assert.Equal(t, "UnknownOperationException", apiErr.ErrorCode())

	resp, err := http.Post(f.srv.URL(), "application/x-amz-json-1.1", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, "UnknownOperationException", resp.Header.Get("X-Amzn-ErrorType"))

	assert.Equal(t, []awsfake.Request{
		{Target: "AWSStepFunctions.ListStateMachines", Status: 400, ErrorCode: "UnknownOperationException"},
		{Target: "", Status: 400, ErrorCode: "UnknownOperationException"},
	}, f.srv.Requests())
}
