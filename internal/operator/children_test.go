package operator_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/operator"
)

const childSM = "arn:aws:states:us-east-1:123456789012:stateMachine:workspace-rotation"

// childOf is the child execution name RotateWorkspace gives a workspace, written out here from the
// ASL's Name.$ rather than taken from the code under test.
func childOf(request, workspaceID string) string {
	sum := md5.Sum([]byte(request))
	return workspaceID + "-" + hex.EncodeToString(sum[:])
}

// childPlay is what one workspace's child execution records and how it ends; block keeps it
// RUNNING until the server closes (or the test stops it).
type childPlay struct {
	events []awsfake.HistoryEvent
	output map[string]any
	fail   *awsfake.ExecError
	block  bool
}

func entered(kind, name string) awsfake.HistoryEvent {
	return awsfake.HistoryEvent{Type: kind + "StateEntered", StateName: name, Input: "{}"}
}

func exited(kind, name string) awsfake.HistoryEvent {
	return awsfake.HistoryEvent{Type: kind + "StateExited", StateName: name, Output: "{}"}
}

func lambdaFailed(t testing.TB, errorType, message string) awsfake.HistoryEvent {
	return awsfake.HistoryEvent{Type: "LambdaFunctionFailed", Error: errorType, Cause: lambdaCause(t, errorType, message)}
}

// childOutput is what the child's end states (Rotated, Failed, ...) output.
func childOutput(id, name, outcome string, patched bool, errName string) map[string]any {
	out := map[string]any{"workspace_id": id, "workspace_name": name, "outcome": outcome, "patched": patched,
		"previous_key_config_id": oldConfig, "previous_key_arn": oldKeyARN, "brief": nil}
	if errName != "" {
		out["error"] = map[string]string{"Error": errName}
	}
	return out
}

// childWorkspace is the workspace id of a child execution's input.
func childWorkspace(exec awsfake.Execution) string {
	var in struct {
		Workspace struct {
			ID string `json:"workspace_id"`
		} `json:"workspace"`
	}
	check(json.Unmarshal([]byte(exec.Input), &in))
	return in.Workspace.ID
}

// childrenHarness runs a request whose RotateWorkspaces Map starts real child executions on the
// fake (StartExecution through the SDK client, with the name the ASL derives), as far as the test's
// plays go, then stays RUNNING.
type childrenHarness struct {
	*harness
	plays   map[string]childPlay
	ready   chan struct{}
	started []string // workspace ids whose child the request starts, in Map order
}

type planned struct{ id, name string }

func newChildrenHarness(t *testing.T) *childrenHarness {
	h := &childrenHarness{harness: newHarness(t), plays: map[string]childPlay{}, ready: make(chan struct{})}
	h.srv.RegisterStateMachine(childSM, awsfake.RunnerFunc(func(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
		p := h.plays[childWorkspace(exec)]
		awsfake.RecordHistory(ctx, p.events...)
		if p.block {
			<-ctx.Done()
			return "", &awsfake.ExecError{Error: "Test.Closed", Cause: "the server closed"}
		}
		if p.fail != nil {
			return "", p.fail
		}
		return mustJSON(t, p.output), nil
	}))
	return h
}

// startRequest starts a request over workspaces (in plan order) whose Map starts the children of
// h.started, recording what AWS records when withParameters (the RotateWorkspace task's resolved
// parameters name the child state machine) or what the local engine records otherwise; it returns
// once every child that does not block has ended.
func (h *childrenHarness) startRequest(name string, withParameters bool, workspaces ...planned) string {
	h.t.Helper()
	var ids []string
	var items []map[string]any
	for _, ws := range workspaces {
		ids = append(ids, ws.id)
		items = append(items, map[string]any{"workspace_id": ws.id, "workspace_name": ws.name})
	}
	h.srv.RegisterStateMachine(smARN, awsfake.RunnerFunc(func(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
		hs := &hist{t: h.t}
		hs.state("Task", "CheckPolicy", exec.Input, exec.Input)
		hs.state("Choice", "ApprovalRequired?", exec.Input, exec.Input)
		hs.state("Task", "LockWorkspaces", exec.Input, exec.Input)
		hs.state("Task", "Validate", exec.Input, exec.Input)
		state := with(h.t, exec.Input, "plan", map[string]any{"workspaces": items, "key_arn": keyARN, "max_concurrency": len(h.started)})
		hs.state("Task", "RegisterKeyConfig", state, state)
		hs.enter("Map", "RotateWorkspaces", state)
		hs.event(awsfake.HistoryEvent{Type: "MapStateStarted"})
		awsfake.RecordHistory(ctx, hs.cur...)
		hs.cur = nil
		var arns []string
		for i, id := range h.started {
			item := map[string]any{"workspace": map[string]any{"workspace_id": id}, "execution": exec.Name}
			params := map[string]any{"StateMachineArn": childSM, "Name": childOf(exec.Name, id), "Input": item}
			events := []awsfake.HistoryEvent{
				{Type: "MapIterationStarted", StateName: "RotateWorkspaces", Index: i},
				{Type: "TaskStateEntered", StateName: "RotateWorkspace", Input: mustJSON(h.t, item)},
			}
			if withParameters {
				events = append(events, awsfake.HistoryEvent{Type: "TaskScheduled", Resource: "arn:aws:states:::states:startExecution.sync:2", Input: mustJSON(h.t, params)})
			}
			awsfake.RecordHistory(ctx, events...)
			out, err := h.client.StartExecution(ctx, &sfn.StartExecutionInput{
				StateMachineArn: aws.String(childSM), Name: aws.String(childOf(exec.Name, id)), Input: aws.String(mustJSON(h.t, item)),
			})
			if err != nil {
				return "", &awsfake.ExecError{Error: "Test.StartChild", Cause: err.Error()}
			}
			arns = append(arns, aws.ToString(out.ExecutionArn))
		}
		for i, id := range h.started {
			if !h.plays[id].block {
				h.srv.WaitExecution(ctx, arns[i])
				continue
			}
			// A running child is read once it has recorded its play (after ExecutionStarted).
			for len(h.srv.History(arns[i])) < 1+len(h.plays[id].events) && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
		}
		close(h.ready)
		<-ctx.Done()
		return "", &awsfake.ExecError{Error: "Test.Closed", Cause: "the server closed"}
	}))
	arn := h.startDirect(name, rotationInput(h.t, false, ids...))
	select {
	case <-h.ready:
	case <-time.After(10 * time.Second):
		h.t.Fatal("the request did not start its children")
	}
	return arn
}

func TestStatusOfARequestFollowsEachWorkspaceIntoItsChildExecution(t *testing.T) {
	h := newChildrenHarness(t)
	const (
		rotated, running, failedOutcome, timedOut, aborted, failed, waiting = "1000000000000001", "1000000000000002",
			"1000000000000003", "1000000000000004", "1000000000000005", "1000000000000006", "1000000000000007"
	)
	h.plays[rotated] = childPlay{
		events: []awsfake.HistoryEvent{entered("Choice", "AlreadyOnKey?"), exited("Choice", "AlreadyOnKey?"),
			entered("Task", "PublishSuccess"), exited("Task", "PublishSuccess"), entered("Pass", "Rotated"), exited("Pass", "Rotated")},
		output: childOutput(rotated, "analytics-prod", "ROTATED", true, ""),
	}
	h.plays[running] = childPlay{
		events: []awsfake.HistoryEvent{entered("Task", "StopCompute"), exited("Task", "StopCompute"), entered("Task", "CheckStopped"),
			lambdaFailed(t, "DatabricksUnavailable", "listing clusters: 503 Service Unavailable")},
		block: true,
	}
	h.plays[failedOutcome] = childPlay{
		events: []awsfake.HistoryEvent{entered("Task", "CheckStopped"), lambdaFailed(t, "ComputeStopTimedOut", "2 clusters still TERMINATING"),
			exited("Task", "CheckStopped"), entered("Task", "Compensate"), exited("Task", "Compensate"), entered("Pass", "Failed"), exited("Pass", "Failed")},
		output: childOutput(failedOutcome, "ml-research", "FAILED", false, "ComputeStopTimedOut"),
	}
	h.plays[timedOut] = childPlay{
		events: []awsfake.HistoryEvent{entered("Task", "CheckRunning"), exited("Task", "CheckRunning"), entered("Wait", "WaitForRestartAgain")},
		fail:   &awsfake.ExecError{Error: "States.Timeout", Cause: "the execution timed out", Status: awsfake.StatusTimedOut},
	}
	h.plays[aborted] = childPlay{events: []awsfake.HistoryEvent{entered("Task", "QuietWindow")}, block: true}
	h.plays[failed] = childPlay{
		events: []awsfake.HistoryEvent{entered("Task", "PublishRawFailure")},
		fail:   &awsfake.ExecError{Error: "States.Runtime", Cause: "An error occurred while executing the state 'PublishRawFailure'"},
	}
	// The Map reached every workspace but the last (MaxConcurrency), in plan order.
	h.started = []string{failed, running, rotated, aborted, timedOut, failedOutcome}
	arn := h.startRequest("request-7", true,
		planned{failed, "finance"}, planned{running, "ml-training"}, planned{rotated, "analytics-prod"},
		planned{aborted, "bi"}, planned{timedOut, "etl"}, planned{failedOutcome, "ml-research"}, planned{waiting, "sandbox"})
	_, err := h.client.StopExecution(context.Background(), &sfn.StopExecutionInput{
		ExecutionArn: aws.String("arn:aws:states:us-east-1:123456789012:execution:workspace-rotation:" + childOf("request-7", aborted)),
		Error:        aws.String("Operator.Stopped"),
	})
	require.NoError(t, err)
	before := len(h.srv.Requests())

	code := h.run("status", "request-7")

	require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
	c := func(id string) string { return childOf("request-7", id) }
	assert.Equal(t, `Execution   request-7
Status      RUNNING for T (started TIME)
Workspaces  1000000000000006, 1000000000000002, 1000000000000001, 1000000000000005, 1000000000000004, 1000000000000003, 1000000000000007
Key         `+keyARN+`
State       RotateWorkspaces
Children    7 workspaces: 1 FAILED, 1 TIMED_OUT, 1 ABORTED, 1 RUNNING, 2 SUCCEEDED, 1 not started (state machine workspace-rotation)
  WORKSPACE         NAME            CHILD EXECUTION                                    STATUS       STATE                                                                  OUTCOME
  1000000000000001  analytics-prod  `+c(rotated)+`  SUCCEEDED    Rotated                                                                ROTATED, patched
  1000000000000002  ml-training     `+c(running)+`  RUNNING      CheckStopped (stopping compute); retrying after DatabricksUnavailable  -
  1000000000000003  ml-research     `+c(failedOutcome)+`  SUCCEEDED    Failed                                                                 FAILED, not patched: ComputeStopTimedOut
  1000000000000004  etl             `+c(timedOut)+`  TIMED_OUT    WaitForRestartAgain                                                    States.Timeout
  1000000000000005  bi              `+c(aborted)+`  ABORTED      QuietWindow                                                            Operator.Stopped
  1000000000000006  finance         `+c(failed)+`  FAILED       PublishRawFailure                                                      States.Runtime
  1000000000000007  sandbox         `+c(waiting)+`  not started  -                                                                      -
Console     https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/`+arn+`
`, normalise(h.stdout.String()))
	assert.Empty(t, h.stderr.String())

	calls := map[string]int{}
	for _, r := range h.srv.Requests()[before:] {
		calls[r.Target]++
	}
	assert.Equal(t, map[string]int{
		// The request, then each of the 7 workspaces: the one not started costs its describe only.
		"AWSStepFunctions.DescribeExecution":   1 + 7,
		"AWSStepFunctions.GetExecutionHistory": 1 + 6,
	}, calls, "a bounded number of calls per workspace")

	t.Run("a child's own status shows that child", func(t *testing.T) {
		h.stdout.Reset()
		code := h.run("status", "arn:aws:states:us-east-1:123456789012:execution:workspace-rotation:"+c(running))

		require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
		assert.Contains(t, h.stdout.String(), "\nState       CheckStopped (stopping compute); retrying after DatabricksUnavailable: listing clusters: 503 Service Unavailable\n")
		assert.NotContains(t, h.stdout.String(), "Children")
	})
}

func TestStatusOfARequestAwaitingApprovalSaysNoChildIsStartedYet(t *testing.T) {
	h := newHarness(t)
	h.srv.RegisterStateMachine(smARN, awsfake.RunnerFunc(func(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
		hs := &hist{t: t}
		hs.state("Task", "CheckPolicy", exec.Input, exec.Input)
		hs.state("Choice", "ApprovalRequired?", exec.Input, exec.Input)
		hs.state("Task", "PlanForApproval", exec.Input, exec.Input)
		hs.enter("Task", "AwaitApproval", exec.Input)
		awsfake.RecordHistory(ctx, hs.cur...)
		<-ctx.Done()
		return "", &awsfake.ExecError{Error: "Test.Closed", Cause: "the server closed"}
	}))
	arn := h.startDirect("request-8", rotationInput(t, false, "1234567890123456"))
	require.Eventually(t, func() bool { return len(h.srv.History(arn)) > 7 }, 5*time.Second, 10*time.Millisecond)

	code := h.run("status", arn)

	require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
	assert.Contains(t, h.stdout.String(), "\nState       AwaitApproval (awaiting approval)\nChildren    none yet: the request is at AwaitApproval (awaiting approval)\nConsole")
}

// The local engine records no TaskScheduled parameters: the child state machine must be given.
func TestStatusNeedsTheChildStateMachineWhenTheHistoryDoesNotNameIt(t *testing.T) {
	h := newChildrenHarness(t)
	h.plays["1234567890123456"] = childPlay{events: []awsfake.HistoryEvent{entered("Task", "PatchWorkspace")}, block: true}
	h.started = []string{"1234567890123456"}
	h.startRequest("request-9", false, planned{"1234567890123456", "analytics-prod"}, planned{"2345678901234567", "ml-research"})

	t.Run("without it, a line says how to give it", func(t *testing.T) {
		h.stdout.Reset()
		code := h.run("status", "request-9")

		require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
		assert.Contains(t, h.stdout.String(), "\nChildren    not read: the history names no workspace-rotation state machine (no RotateWorkspace task parameters); give --workspace-state-machine or set ROTATOR_WORKSPACE_STATE_MACHINE_ARN\n")
		assert.Contains(t, h.stdout.String(), "[0] 1234567890123456 analytics-prod: RotateWorkspace", "the request's own view stays")
	})

	for _, how := range []string{"flag", "environment"} {
		t.Run("given by "+how+", each child is read", func(t *testing.T) {
			h.stdout.Reset()
			args := []string{"status", "request-9"}
			if how == "flag" {
				args = append(args, "--workspace-state-machine", childSM)
			} else {
				h.env["ROTATOR_WORKSPACE_STATE_MACHINE_ARN"] = childSM
				defer delete(h.env, "ROTATOR_WORKSPACE_STATE_MACHINE_ARN")
			}
			code := h.run(args...)

			require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
			rows := tableCells(h.stdout.String())
			assert.Contains(t, rows, []string{"Children", "2 workspaces: 1 RUNNING, 1 not started (state machine workspace-rotation)"})
			assert.Contains(t, rows, []string{"", "1234567890123456", "analytics-prod", childOf("request-9", "1234567890123456"), "RUNNING", "PatchWorkspace (updating workspace)", "-"})
			assert.Contains(t, rows, []string{"", "2345678901234567", "ml-research", childOf("request-9", "2345678901234567"), "not started", "-", "-"})
			assert.NotContains(t, h.stdout.String(), "[0] 1234567890123456", "the child's row replaces the request's iteration line")
		})
	}
}

func TestStatusRefusesAChildStateMachineThatIsNotOneBeforeAnyCall(t *testing.T) {
	var stdout, stderr bytes.Buffer
	newSFN := func(context.Context) (*sfn.Client, error) {
		t.Error("no client may be built for a wrong command line")
		return nil, context.Canceled
	}

	code := operator.Run(context.Background(), []string{"status", execPfx + "request-1", "--workspace-state-machine", "workspace-rotation"},
		&stdout, &stderr, func(string) string { return "" }, newSFN)

	assert.Equal(t, operator.ExitUsage, code)
	assert.Contains(t, stderr.String(), `cmkrotate status: --workspace-state-machine (or ROTATOR_WORKSPACE_STATE_MACHINE_ARN) "workspace-rotation" is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)`)
	assert.Empty(t, stdout.String())
}

// denying answers one call (DescribeExecution unless op names another) about one execution as IAM
// would when the operator's role does not cover it; every other call goes to the fake.
type denying struct {
	next http.RoundTripper
	arn  string
	op   string
}

func (d denying) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	op := cmp.Or(d.op, "DescribeExecution")
	if r.Header.Get("X-Amz-Target") == "AWSStepFunctions."+op && bytes.Contains(body, []byte(d.arn)) {
		return &http.Response{
			StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Request: r,
			Header: http.Header{"Content-Type": []string{"application/x-amz-json-1.0"}},
			Body: io.NopCloser(strings.NewReader(`{"__type":"com.amazon.coral.service#AccessDeniedException",` +
				`"message":"User is not authorized to perform: states:` + op + ` on resource: ` + d.arn + `"}`)),
		}, nil
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	return d.next.RoundTrip(r)
}

func TestAChildThatCannotBeReadIsMarkedAndTheStatusExitsOne(t *testing.T) {
	h := newChildrenHarness(t)
	const readable, denied = "1234567890123456", "2345678901234567"
	h.plays[readable] = childPlay{events: []awsfake.HistoryEvent{entered("Task", "TakeInventory")}, block: true}
	h.plays[denied] = childPlay{events: []awsfake.HistoryEvent{entered("Task", "TakeInventory")}, block: true}
	h.started = []string{readable, denied}
	h.startRequest("request-10", true, planned{readable, "analytics-prod"}, planned{denied, "ml-research"})
	deniedARN := "arn:aws:states:us-east-1:123456789012:execution:workspace-rotation:" + childOf("request-10", denied)
	opts := h.client.Options()
	opts.HTTPClient = &http.Client{Transport: denying{next: http.DefaultTransport.(*http.Transport).Clone(), arn: deniedARN}}
	h.client = sfn.New(opts)

	code := h.run("status", "request-10")

	assert.Equal(t, operator.ExitFailure, code)
	rows := tableCells(h.stdout.String())
	assert.Contains(t, rows, []string{"Children", "2 workspaces: 1 unreadable, 1 RUNNING (state machine workspace-rotation)"})
	assert.Contains(t, rows, []string{"", readable, "analytics-prod", childOf("request-10", readable), "RUNNING", "TakeInventory (stopping compute)", "-"})
	assert.Contains(t, rows, []string{"", denied, "ml-research", childOf("request-10", denied), "unreadable", "-", "could not be read: AccessDeniedException"})
	assert.Contains(t, h.stderr.String(), "cmkrotate status: 1 of 2 child executions could not be read; first: describe "+deniedARN+": ")
	assert.Contains(t, h.stderr.String(), "AccessDeniedException")
}

// TestWatchOfARequestShowsWhereEachRunningChildIs: watch reads each running child's history tail
// at every poll, so a workspace's line says where its child is (and a retry in progress), where the
// request's own history only says that RotateWorkspace runs; a child whose history the operator may
// not read keeps the request's line, with the error. Each poll lets every child record its next
// step; the request ends once all have.
func TestWatchOfARequestShowsWhereEachRunningChildIs(t *testing.T) {
	h := newHarness(t)
	const first, second, denied = "1000000000000001", "1000000000000002", "1000000000000003"
	workspaces := []string{first, second, denied}
	steps := map[string][][]awsfake.HistoryEvent{
		first: {
			{entered("Task", "StopCompute")},
			{exited("Task", "StopCompute"), entered("Task", "CheckStopped"), lambdaFailed(t, "DatabricksUnavailable", "listing clusters: 503 Service Unavailable")},
			{exited("Task", "CheckStopped"), entered("Task", "PatchWorkspace")},
			{exited("Task", "PatchWorkspace"), entered("Pass", "Rotated"), exited("Pass", "Rotated")},
		},
		second: {
			{entered("Task", "Inventory")},
			{exited("Task", "Inventory"), entered("Task", "StopCompute")},
			{exited("Task", "StopCompute"), entered("Task", "CheckStopped")},
			{exited("Task", "CheckStopped"), entered("Pass", "Rotated"), exited("Pass", "Rotated")},
		},
		denied: {
			{entered("Task", "StopCompute")},
			{exited("Task", "StopCompute"), entered("Pass", "Rotated"), exited("Pass", "Rotated")},
		},
	}
	release, recorded := map[string]chan struct{}{}, map[string]chan struct{}{}
	for _, id := range workspaces {
		release[id], recorded[id] = make(chan struct{}), make(chan struct{})
	}
	h.srv.RegisterStateMachine(childSM, awsfake.RunnerFunc(func(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
		id := childWorkspace(exec)
		for _, step := range steps[id] {
			select {
			case <-release[id]:
			case <-ctx.Done():
				return "", &awsfake.ExecError{Error: "Test.Closed", Cause: "the server closed"}
			}
			awsfake.RecordHistory(ctx, step...)
			recorded[id] <- struct{}{}
		}
		return mustJSON(t, childOutput(id, "ws-"+id, "ROTATED", true, "")), nil
	}))
	childARN := func(request, id string) string {
		return "arn:aws:states:us-east-1:123456789012:execution:workspace-rotation:" + childOf(request, id)
	}
	h.srv.RegisterStateMachine(smARN, awsfake.RunnerFunc(func(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
		var items []map[string]any
		for _, id := range workspaces {
			items = append(items, map[string]any{"workspace_id": id, "workspace_name": "ws-" + id})
		}
		hs := &hist{t: t}
		hs.state("Task", "CheckPolicy", exec.Input, exec.Input)
		hs.state("Task", "Validate", exec.Input, exec.Input)
		state := with(t, exec.Input, "plan", map[string]any{"workspaces": items, "key_arn": keyARN, "max_concurrency": len(workspaces)})
		hs.enter("Map", "RotateWorkspaces", state)
		hs.event(awsfake.HistoryEvent{Type: "MapStateStarted"})
		for i, id := range workspaces {
			item := map[string]any{"workspace": map[string]any{"workspace_id": id}, "execution": exec.Name}
			hs.event(awsfake.HistoryEvent{Type: "MapIterationStarted", StateName: "RotateWorkspaces", Index: i})
			hs.enter("Task", "RotateWorkspace", item)
			hs.event(awsfake.HistoryEvent{Type: "TaskScheduled", Resource: "arn:aws:states:::states:startExecution.sync:2",
				Input: mustJSON(t, map[string]any{"StateMachineArn": childSM, "Name": childOf(exec.Name, id), "Input": item})})
			if _, err := h.client.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(childSM),
				Name: aws.String(childOf(exec.Name, id)), Input: aws.String(mustJSON(t, item))}); err != nil {
				return "", &awsfake.ExecError{Error: "Test.StartChild", Cause: err.Error()}
			}
		}
		awsfake.RecordHistory(ctx, hs.cur...)
		hs.cur = nil
		for i, id := range workspaces {
			h.srv.WaitExecution(ctx, childARN(exec.Name, id))
			hs.exit("Task", "RotateWorkspace", childOutput(id, "ws-"+id, "ROTATED", true, ""))
			hs.event(awsfake.HistoryEvent{Type: "MapIterationSucceeded", StateName: "RotateWorkspaces", Index: i})
		}
		hs.event(awsfake.HistoryEvent{Type: "MapStateSucceeded"})
		hs.exit("Map", "RotateWorkspaces", state)
		hs.state("Succeed", "Done", state, "{}")
		awsfake.RecordHistory(ctx, hs.cur...)
		return "{}", nil
	}))
	polls := 0
	h.onSleep = func(ctx context.Context) error {
		polls++
		for _, id := range workspaces {
			if polls > len(steps[id]) {
				continue
			}
			select {
			case release[id] <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			<-recorded[id]
		}
		return nil
	}
	h.startDirect("request-9", rotationInput(t, false, workspaces...))
	// Watch starts once every child runs (and has recorded nothing yet).
	require.Eventually(t, func() bool {
		for _, id := range workspaces {
			if len(h.srv.History(childARN("request-9", id))) == 0 {
				return false
			}
		}
		return true
	}, time.Minute, time.Millisecond)
	opts := h.client.Options()
	opts.HTTPClient = &http.Client{Transport: denying{next: http.DefaultTransport.(*http.Transport).Clone(),
		arn: childARN("request-9", denied), op: "GetExecutionHistory"}}
	h.client = sfn.New(opts)

	code := h.run("watch", "request-9")

	require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
	out := normalise(h.stdout.String())
	for _, line := range []string{
		"+T [0] 1000000000000001 ws-1000000000000001: child at StopCompute (stopping compute)\n",
		"+T [1] 1000000000000002 ws-1000000000000002: child at Inventory\n",
		"+T [0] 1000000000000001 ws-1000000000000001: child at CheckStopped (stopping compute); retrying after DatabricksUnavailable\n",
		"+T [1] 1000000000000002 ws-1000000000000002: child at StopCompute (stopping compute)\n",
		"+T [0] 1000000000000001 ws-1000000000000001: child at PatchWorkspace (updating workspace)\n",
		"+T [1] 1000000000000002 ws-1000000000000002: child at CheckStopped (stopping compute)\n",
		"+T [2] 1000000000000003 ws-1000000000000003: RotateWorkspace (stopping compute); child not read: AccessDeniedException\n",
	} {
		assert.Contains(t, out, line)
	}
	assert.NotContains(t, out, "ws-1000000000000003: child at")
	assert.Empty(t, h.stderr.String())
}
