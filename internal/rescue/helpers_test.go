package rescue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
)

// The deployment the fixtures in events/stepfunctions describe.
const (
	region      = "us-west-2"
	account     = "111122223333"
	rotationARN = "arn:aws:states:us-west-2:111122223333:stateMachine:databricks-cmk-rotator-RotationStateMachine-1A2B3C4D5E6F"
	reminderARN = "arn:aws:states:us-west-2:111122223333:stateMachine:databricks-cmk-rotator-RetirementReminderStateMachine-1A2B3C4D5E6F"
	eventBus    = "databricks-cmk-rotator"
	lockTable   = "databricks-cmk-rotator-RotationLockTable-1A2B3C4D5E6F"
	bucket      = "databricks-cmk-rotator-inventorybucket-1a2b3c4d5e6f"
	fixtureDir  = "../../events/stepfunctions"

	// The execution of every fixture, and its three workspaces.
	executionName = "rotate-0987dcba-cb7b3f5b74f9d75a42895e9fd165fa4efb9e1d35cfb5c87641ea6ba555b13575"
	executionARN  = "arn:aws:states:us-west-2:111122223333:execution:databricks-cmk-rotator-RotationStateMachine-1A2B3C4D5E6F:" + executionName
	newKeyARN     = "arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
	oldKeyARN     = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	oldConfigID   = "5e6f7a8b-1111-4000-8000-000000000001"
	newConfigID   = "9c1d2e3f-0000-4a4a-8b8b-1234567890ab"
	wsAnalytics   = "1234567890123456"
	wsML          = "2345678901234567"
	wsBI          = "3456789012345678"
	// wsOther is locked by another execution throughout.
	wsOther        = "4567890123456789"
	otherExecution = "rotate-1234abcd-0000000000000000000000000000000000000000000000000000000000000000"
)

var t0 = time.Date(2026, 11, 26, 9, 58, 43, 0, time.UTC)

func testEnv(extra map[string]string) func(string) (string, bool) {
	env := map[string]string{
		rescue.EnvEventBusName:            eventBus,
		rescue.EnvRotationStateMachineARN: rotationARN,
		rescue.EnvLockTableName:           lockTable,
		rescue.EnvInventoryBucket:         bucket,
		rescue.EnvReminderStateMachineARN: reminderARN,
	}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// rig is one test's world: the AWS fake with the rotation state machine, the lock table and the
// inventory bucket, and the handler wired to it as main wires it.
type rig struct {
	t     *testing.T
	aws   *awsfake.Server
	sfn   *sfn.Client
	db    *dynamodb.Client
	s3    *s3.Client
	locks *wslock.Locks
	logs  *safeBuffer
	h     *rescue.Handler

	mu    sync.Mutex
	plays map[string]play
}

// play is what the rotation "runs" for one execution: the history it records, then how it ends.
type play struct {
	history []awsfake.HistoryEvent
	// untilStopped: the execution runs until StopExecution (ABORTED); otherwise it ends with fail,
	// or succeeds with output.
	untilStopped bool
	fail         *awsfake.ExecError
	output       string
	recorded     chan struct{}
}

func newRig(t *testing.T) *rig {
	t.Helper()
	fake, err := awsfake.Start(awsfake.Config{Region: region, AccountID: account})
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	fake.CreateTable(lockTable, "workspace_id")
	fake.CreateBucket(bucket)
	creds := credentials.NewStaticCredentialsProvider("local", "local", "")
	r := &rig{t: t, aws: fake, logs: &safeBuffer{}, plays: map[string]play{},
		sfn: sfn.New(sfn.Options{Region: region, BaseEndpoint: aws.String(fake.URL()), Credentials: creds}),
		db:  dynamodb.New(dynamodb.Options{Region: region, BaseEndpoint: aws.String(fake.URL()), Credentials: creds}),
		s3:  s3.New(s3.Options{Region: region, BaseEndpoint: aws.String(fake.URL()), Credentials: creds, UsePathStyle: true}),
	}
	r.locks = &wslock.Locks{DB: r.db, Table: lockTable, Lease: wslock.DefaultLease, Clock: func() time.Time { return time.Now().UTC() }}
	fake.RegisterStateMachine(rotationARN, awsfake.RunnerFunc(r.run))
	fake.RegisterStateMachine(reminderARN, awsfake.RunnerFunc(func(context.Context, awsfake.Execution) (string, *awsfake.ExecError) {
		return "{}", nil
	}))

	cfg, err := rescue.LoadConfig(testEnv(nil))
	require.NoError(t, err)
	r.h = &rescue.Handler{
		Config:      cfg,
		Executions:  r.sfn,
		History:     r.sfn,
		Events:      eventbridge.New(eventbridge.Options{Region: region, BaseEndpoint: aws.String(fake.URL()), Credentials: creds}),
		Locks:       r.locks,
		Reminders:   r.sfn,
		Inventories: &invstore.Store{S3: r.s3, Bucket: bucket},
		Log:         slog.New(slog.NewJSONHandler(r.logs, nil)),
	}
	// Another rotation holds another workspace: the rescue must never free it.
	r.lock(otherExecution, wsOther)
	return r
}

func (r *rig) run(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
	r.mu.Lock()
	p, ok := r.plays[exec.Name]
	r.mu.Unlock()
	if !ok {
		return "", &awsfake.ExecError{Error: "Test.NoPlay", Cause: "the test gave no play for " + exec.Name}
	}
	awsfake.RecordHistory(ctx, p.history...)
	close(p.recorded)
	if p.untilStopped {
		<-ctx.Done()
		return "", &awsfake.ExecError{Error: "Test.Stopped", Cause: "stopped"}
	}
	return p.output, p.fail
}

// lock takes the workspace locks for an execution, as LockWorkspaces does.
func (r *rig) lock(execution string, ids ...string) {
	r.t.Helper()
	raw, err := json.Marshal(map[string]any{"workspace_ids": ids, "key_arn": newKeyARN})
	require.NoError(r.t, err)
	_, err = r.locks.Acquire(context.Background(), wslock.AcquireInput{Execution: execution, Request: raw})
	require.NoError(r.t, err)
}

// execute runs the fixture's execution with the play and returns it once closed. An execution that
// runs until stopped is stopped with stopError and stopCause once its history is recorded.
func (r *rig) execute(input string, p play, stopError, stopCause string) awsfake.Execution {
	r.t.Helper()
	p.recorded = make(chan struct{})
	r.mu.Lock()
	r.plays[executionName] = p
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := r.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(rotationARN),
		Name: aws.String(executionName), Input: aws.String(input)})
	require.NoError(r.t, err)
	require.Equal(r.t, executionARN, aws.ToString(out.ExecutionArn))
	select {
	case <-p.recorded:
	case <-ctx.Done():
		r.t.Fatal("the play was not recorded")
	}
	if p.untilStopped {
		in := &sfn.StopExecutionInput{ExecutionArn: out.ExecutionArn}
		if stopError != "" {
			in.Error, in.Cause = aws.String(stopError), aws.String(stopCause)
		}
		_, err := r.sfn.StopExecution(ctx, in)
		require.NoError(r.t, err)
	}
	exec := r.aws.WaitExecution(ctx, executionARN)
	require.NotEqual(r.t, awsfake.StatusRunning, exec.Status)
	return exec
}

// lockedWorkspaces lists the workspaces whose lock is in the table, with their owner.
func (r *rig) lockedWorkspaces() map[string]string {
	out := map[string]string{}
	for _, it := range r.aws.Items(lockTable) {
		out[it["workspace_id"]] = it["owner"]
	}
	return out
}

// published returns the Rotation Failed events published, decoded, checking their envelope.
func (r *rig) published() []rescue.Detail {
	r.t.Helper()
	var out []rescue.Detail
	for _, ev := range r.aws.Events() {
		require.Equal(r.t, rotation.EventSource, ev.Source)
		require.Equal(r.t, rotation.DetailRotationFailed, ev.DetailType)
		require.Equal(r.t, eventBus, ev.EventBusName)
		var d rescue.Detail
		require.NoError(r.t, json.Unmarshal([]byte(ev.Detail), &d))
		require.Equal(r.t, []string{d.ExecutionARN}, ev.Resources)
		out = append(out, d)
	}
	return out
}

func byWorkspace(ds []rescue.Detail) map[string]rescue.Detail {
	out := map[string]rescue.Detail{}
	for _, d := range ds {
		out[d.WorkspaceID] = d
	}
	return out
}

// calledSFN reports whether the handler called Step Functions at all.
func (r *rig) calledSFN(operation string) bool {
	return slices.ContainsFunc(r.aws.Requests(), func(req awsfake.Request) bool {
		return req.Target == "AWSStepFunctions."+operation
	})
}

// fixture reads an event from events/stepfunctions.
func fixture(t testing.TB, name string) events.CloudWatchEvent {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, name))
	require.NoError(t, err)
	var ev events.CloudWatchEvent
	require.NoError(t, json.Unmarshal(raw, &ev), name)
	return ev
}

// fixtureInput is the execution input every fixture carries.
func fixtureInput(t testing.TB) string {
	t.Helper()
	var d struct {
		Input string `json:"input"`
	}
	require.NoError(t, json.Unmarshal(fixture(t, "rotation-execution-aborted.json").Detail, &d))
	return d.Input
}

// editDetail changes an event's detail.
func editDetail(t testing.TB, ev events.CloudWatchEvent, edit func(detail map[string]any)) events.CloudWatchEvent {
	t.Helper()
	var detail map[string]any
	require.NoError(t, json.Unmarshal(ev.Detail, &detail))
	edit(detail)
	raw, err := json.Marshal(detail)
	require.NoError(t, err)
	ev.Detail = raw
	return ev
}

// safeBuffer collects the handler's JSON log records.
type safeBuffer = faketest.LogBuffer

// ---------------------------------------------------------------------------------------------------
// Histories as the rotation state machine records them
// ---------------------------------------------------------------------------------------------------

// steps is a run of history events. Each state is recorded as Step Functions records it: entered
// with its input, for a Lambda task scheduled, started and succeeded, and exited with its input
// extended at its ResultPath.
type steps []awsfake.HistoryEvent

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("test document does not encode: %v", err))
	}
	return string(b)
}

func lambdaARN(state string) string {
	return "arn:aws:lambda:us-west-2:111122223333:function:databricks-cmk-rotator-" + state + "Function-1A2B3C4D5E6F"
}

func (s *steps) add(evs ...awsfake.HistoryEvent) { *s = append(*s, evs...) }

// task records a Lambda task state that succeeded.
func (s *steps) task(name string, in, result, out any) {
	s.taskStarted(name, in)
	s.add(awsfake.HistoryEvent{Type: "LambdaFunctionSucceeded", Output: mustJSON(result)},
		awsfake.HistoryEvent{Type: "TaskStateExited", StateName: name, Output: mustJSON(out)})
}

// taskStarted records a Lambda task state still running.
func (s *steps) taskStarted(name string, in any) {
	s.add(awsfake.HistoryEvent{Type: "TaskStateEntered", StateName: name, Input: mustJSON(in)},
		awsfake.HistoryEvent{Type: "LambdaFunctionScheduled", Resource: lambdaARN(name), Input: mustJSON(in)},
		awsfake.HistoryEvent{Type: "LambdaFunctionStarted"})
}

// failedTask records a Lambda task state whose error a Catch took into out.
func (s *steps) failedTask(name string, in any, stepErr rotation.StepError, out any) {
	s.taskStarted(name, in)
	s.add(awsfake.HistoryEvent{Type: "LambdaFunctionFailed", Error: stepErr.Error, Cause: stepErr.Cause},
		awsfake.HistoryEvent{Type: "TaskStateExited", StateName: name, Output: mustJSON(out)})
}

// putEvents records an events:putEvents task (ResultPath null); refused, its Catch puts the error at
// $.publish_error.
func (s *steps) putEvents(name string, in any, refused bool) {
	resource := "arn:aws:states:::events:putEvents"
	s.add(awsfake.HistoryEvent{Type: "TaskStateEntered", StateName: name, Input: mustJSON(in)},
		awsfake.HistoryEvent{Type: "TaskScheduled", Resource: resource},
		awsfake.HistoryEvent{Type: "TaskStarted", Resource: resource})
	if !refused {
		s.add(awsfake.HistoryEvent{Type: "TaskSucceeded", Resource: resource, Output: `{"Entries":[{"EventId":"11111111-2222-4333-8444-555555555555"}],"FailedEntryCount":0}`},
			awsfake.HistoryEvent{Type: "TaskStateExited", StateName: name, Output: mustJSON(in)})
		return
	}
	stepErr := map[string]string{"Error": "EventBridge.FailedEntry", "Cause": "InternalFailure: awsfake: injected failure"}
	s.add(awsfake.HistoryEvent{Type: "TaskFailed", Resource: resource, Error: stepErr["Error"], Cause: stepErr["Cause"]},
		awsfake.HistoryEvent{Type: "TaskStateExited", StateName: name, Output: mustJSON(with(in, "publish_error", stepErr))})
}

func (s *steps) state(kind, name string, in, out any) {
	s.add(awsfake.HistoryEvent{Type: kind + "StateEntered", StateName: name, Input: mustJSON(in)},
		awsfake.HistoryEvent{Type: kind + "StateExited", StateName: name, Output: mustJSON(out)})
}

func (s *steps) choice(name string, doc any) { s.state("Choice", name, doc, doc) }
func (s *steps) wait(name string, doc any)   { s.state("Wait", name, doc, doc) }

// with returns the document v with key set to value, as a ResultPath does.
func with(v any, key string, value any) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(mustJSON(v)), &m); err != nil {
		panic(err)
	}
	m[key] = value
	return m
}

// rotationStart records the top level of a rotation up to the workspace Map: the lock, the plan,
// the key configuration. It returns the history and the execution state the Map iterates over.
func rotationStart(input string, targets ...rotation.WorkspaceTarget) (steps, map[string]any) {
	var s steps
	var req rotation.Request
	if err := json.Unmarshal([]byte(input), &req); err != nil {
		panic(err)
	}
	var state map[string]any
	if err := json.Unmarshal([]byte(input), &state); err != nil {
		panic(err)
	}
	lock := wslock.Lock{Owner: executionName, WorkspaceIDs: slices.Sorted(slices.Values(req.WorkspaceIDs)), ExpiresAt: t0.Add(wslock.DefaultLease)}
	locked := with(state, "lock", lock)
	s.task("LockWorkspaces", map[string]any{"execution": executionName, "request": json.RawMessage(input)}, lock, locked)
	plan := rotation.Plan{KeyARN: req.KeyARN, KeyAlias: req.KeyAlias, KeyRegion: region, UseCases: req.UseCases,
		DryRun: req.DryRun, ExistingKeyConfigID: newConfigID, QuietWindowSeconds: 1200, MaxConcurrency: 2, Workspaces: targets}
	planned := with(locked, "plan", plan)
	s.task("Validate", locked, plan, planned)
	s.choice("DryRun?", planned)
	if req.DryRun {
		s.add(awsfake.HistoryEvent{Type: "MapStateEntered", StateName: "PlanWorkspaces", Input: mustJSON(planned)},
			awsfake.HistoryEvent{Type: "MapStateStarted"})
		return s, planned
	}
	keyConfig := rotation.KeyConfig{KeyConfigID: newConfigID}
	registered := with(planned, "key_config", keyConfig)
	s.task("RegisterKeyConfig", planned, keyConfig, registered)
	s.add(awsfake.HistoryEvent{Type: "MapStateEntered", StateName: "RotateWorkspaces", Input: mustJSON(registered)},
		awsfake.HistoryEvent{Type: "MapStateStarted"})
	return s, registered
}

func target(id, name string) rotation.WorkspaceTarget {
	return rotation.WorkspaceTarget{WorkspaceID: id, WorkspaceName: name, DeploymentName: "dbc-" + name, Region: region,
		PreviousManagedKeyID: oldConfigID, PreviousManagedKeyARN: oldKeyARN}
}

// iter is one workspace's Map iteration, state by state.
type iter struct {
	steps
	mapName string
	index   int
	run     rotation.WorkspaceRun
}

func newIter(mapName string, index int, ws rotation.WorkspaceTarget, dryRun bool) *iter {
	it := &iter{mapName: mapName, index: index, run: rotation.WorkspaceRun{
		Workspace: ws, KeyConfigID: newConfigID, KeyARN: newKeyARN, UseCases: []string{rotation.UseCaseManagedServices},
		QuietWindowSeconds: 1200, DryRun: dryRun, Execution: executionName}}
	it.add(awsfake.HistoryEvent{Type: "MapIterationStarted", StateName: mapName, Index: index})
	return it
}

// rotating starts an iteration of RotateWorkspaces for a workspace not yet on the key.
func rotating(index int, ws rotation.WorkspaceTarget) *iter {
	it := newIter("RotateWorkspaces", index, ws, false)
	it.choice("AlreadyOnKey?", it.run)
	return it
}

// then records a task that adds its result at key.
func (it *iter) then(name, key string, result any) *iter {
	next := with(it.run, key, result)
	it.task(name, it.run, result, next)
	if err := json.Unmarshal([]byte(mustJSON(next)), &it.run); err != nil {
		panic(err)
	}
	return it
}

func (it *iter) inventory(inv rotation.Inventory) *iter {
	return it.then("TakeInventory", "inventory", inv)
}

// stopped: StopCompute stopped everything, and the first check is waiting.
func (it *iter) stopped() *iter {
	it.then("StopCompute", "stop", rotation.StopResult{StoppedAt: t0.Add(time.Minute), Deadline: t0.Add(31 * time.Minute), PollAfterSeconds: 30})
	it.choice("StopMore?", it.run)
	it.add(awsfake.HistoryEvent{Type: "WaitStateEntered", StateName: "WaitForStop", Input: mustJSON(it.run)})
	return it
}

// stopping: StopCompute is running.
func (it *iter) stopping() *iter {
	it.taskStarted("StopCompute", it.run)
	return it
}

// allStopped completes the stop wait loop.
func (it *iter) allStopped() *iter {
	it.add(awsfake.HistoryEvent{Type: "WaitStateExited", StateName: "WaitForStop", Output: mustJSON(it.run)})
	it.then("CheckStopped", "stop_status", rotation.ComputeStatus{Done: true, Attempt: 1, CheckedAt: t0.Add(2 * time.Minute)})
	it.choice("AllStopped?", it.run)
	return it
}

// patched sends the PATCH and starts verifying.
func (it *iter) patched() *iter {
	it.then("PatchWorkspace", "patch", rotation.PatchResult{PatchedAt: t0.Add(3 * time.Minute), UpdateMask: "managed_services_customer_managed_key_id",
		VerifyDeadline: t0.Add(18 * time.Minute), PollAfterSeconds: 20})
	it.wait("WaitForWorkspace", it.run)
	it.then("CheckWorkspace", "workspace_status", rotation.WorkspaceStat{Attempt: 1, Status: "PROVISIONING", CheckedAt: t0.Add(4 * time.Minute), PollAfterSeconds: 30})
	it.choice("OnNewKey?", it.run)
	it.add(awsfake.HistoryEvent{Type: "WaitStateEntered", StateName: "WaitForWorkspaceAgain", Input: mustJSON(it.run)})
	return it
}

// rotated runs the rest of a successful rotation, through its own Rotation Succeeded event.
func (it *iter) rotated() *iter {
	it.allStopped()
	it.then("PatchWorkspace", "patch", rotation.PatchResult{PatchedAt: t0.Add(3 * time.Minute), UpdateMask: "managed_services_customer_managed_key_id"})
	it.wait("WaitForWorkspace", it.run)
	it.then("CheckWorkspace", "workspace_status", rotation.WorkspaceStat{Done: true, Status: "RUNNING", ManagedKeyID: newConfigID, CheckedAt: t0.Add(5 * time.Minute)})
	it.choice("OnNewKey?", it.run)
	it.choice("QuietWindow?", it.run)
	it.then("RestartCompute", "restart", rotation.RestartResult{RequestedAt: t0.Add(6 * time.Minute), Started: rotation.CountOf(*it.run.Inventory)})
	it.choice("RestartMore?", it.run)
	it.wait("WaitForRestart", it.run)
	it.then("CheckRunning", "restart_status", rotation.ComputeStatus{Done: true, Attempt: 1, CheckedAt: t0.Add(9 * time.Minute), DowntimeSeconds: 480})
	it.choice("AllRunning?", it.run)
	it.then("ConfirmKey", "key_confirmation", rotation.WorkspaceStat{Done: true, Status: "RUNNING", ManagedKeyID: newConfigID})
	it.then("BuildSuccessReport", "report", map[string]any{"detail_type": rotation.DetailRotationSucceeded, "outcome": rotation.OutcomeRotated, "detail": map[string]any{}})
	it.putEvents("PublishSuccess", it.run, false)
	it.choice("AllBack?", it.run)
	return it.ended("Rotated", rotation.OutcomeRotated, nil)
}

// failedAfterPatch: the PATCH keeps failing, compensation restarts everything, and the failure
// report is built; published says whether EventBridge took it.
func (it *iter) failedAfterPatch(published bool) *iter {
	it.allStopped()
	stepErr := rotation.StepError{Error: "DatabricksUnavailable", Cause: `{"errorType":"DatabricksUnavailable","errorMessage":"PATCH workspaces/` + it.run.Workspace.WorkspaceID + `: 500 Internal Server Error"}`}
	failed := with(it.run, "error", stepErr)
	it.failedTask("PatchWorkspace", it.run, stepErr, failed)
	if err := json.Unmarshal([]byte(mustJSON(failed)), &it.run); err != nil {
		panic(err)
	}
	it.then("Compensate", "restart", rotation.RestartResult{RequestedAt: t0.Add(20 * time.Minute), Started: rotation.CountOf(*it.run.Inventory)})
	it.choice("CompensateMore?", it.run)
	it.wait("WaitForCompensation", it.run)
	it.then("CheckCompensation", "restart_status", rotation.ComputeStatus{Done: true, Attempt: 1, CheckedAt: t0.Add(24 * time.Minute), DowntimeSeconds: 1260})
	it.choice("Compensated?", it.run)
	it.then("BuildFailureReport", "report", map[string]any{"detail_type": rotation.DetailRotationFailed, "outcome": rotation.OutcomeFailed, "detail": map[string]any{}})
	if published {
		it.putEvents("PublishFailure", it.run, false)
		return it.ended("Failed", rotation.OutcomeFailed, &stepErr)
	}
	it.putEvents("PublishFailure", it.run, true)
	it.putEvents("PublishRawFailure", it.run, true)
	return it.ended("FailedUnreported", rotation.OutcomeFailed, &stepErr)
}

// unchanged: the workspace already uses the key.
func (it *iter) unchanged() *iter { return it.ended("Unchanged", rotation.OutcomeUnchanged, nil) }

// ended records the Pass state that ends the iteration with its outcome.
func (it *iter) ended(name, outcome string, stepErr *rotation.StepError) *iter {
	out := map[string]any{"workspace_id": it.run.Workspace.WorkspaceID, "workspace_name": it.run.Workspace.WorkspaceName,
		"outcome": outcome, "previous_key_config_id": oldConfigID, "previous_key_arn": oldKeyARN}
	if stepErr != nil {
		out["error"] = stepErr
	}
	it.state("Pass", name, it.run, out)
	it.add(awsfake.HistoryEvent{Type: "MapIterationSucceeded", StateName: it.mapName, Index: it.index})
	return it
}

// interleaved merges iterations as a Map running them at once records them: one event of each in
// turn.
func interleaved(iters ...*iter) steps {
	var out steps
	for i := 0; ; i++ {
		more := false
		for _, it := range iters {
			if i < len(it.steps) {
				out = append(out, it.steps[i])
				more = true
			}
		}
		if !more {
			return out
		}
	}
}

// inventoryOf is what Inventory records for a workspace with n running clusters, a pool, a SQL
// warehouse and a continuous pipeline.
func inventoryOf(ws string, n int) rotation.Inventory {
	inv := rotation.Inventory{WorkspaceID: ws, TakenAt: t0,
		Pools:      []rotation.PoolSettings{{ID: "0101-pool-" + ws, Name: "shared-pool", NodeTypeID: "i3.xlarge", MinIdleInstances: 2, IdleInstanceAutoterminationMinutes: new(30)}},
		Warehouses: []rotation.WarehouseRef{{ID: "wh" + ws[:8], Name: "reporting"}},
		Pipelines:  []rotation.PipelineRef{{ID: "pl-" + ws, Name: "ingest", Continuous: true}},
	}
	for i := range n {
		inv.Clusters = append(inv.Clusters, rotation.ClusterRef{ID: fmt.Sprintf("0102-%06d-%s", i, ws[:6]), Name: fmt.Sprintf("team-%d", i), Source: "UI", State: "RUNNING"})
	}
	inv.Counts = rotation.CountOf(inv)
	return inv
}
