package operator

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

var start = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

const execARN = "arn:aws:states:us-east-1:123456789012:execution:rotation:rotate-7"

// history builds GetExecutionHistory events the way Step Functions chains them: each event points
// at the one it follows in its own iteration, so concurrent iterations interleave by id.
type history struct {
	events []types.HistoryEvent
}

func (h *history) add(prev int64, typ types.HistoryEventType, set func(ev *types.HistoryEvent)) int64 {
	id := int64(len(h.events) + 1)
	ev := types.HistoryEvent{Id: id, PreviousEventId: prev, Type: typ, Timestamp: aws.Time(start.Add(time.Duration(id) * time.Second))}
	if set != nil {
		set(&ev)
	}
	h.events = append(h.events, ev)
	return id
}

func (h *history) entered(prev int64, typ types.HistoryEventType, name, input string) int64 {
	return h.add(prev, typ, func(ev *types.HistoryEvent) {
		ev.StateEnteredEventDetails = &types.StateEnteredEventDetails{Name: aws.String(name), Input: aws.String(input)}
	})
}

func (h *history) exited(prev int64, typ types.HistoryEventType, name, output string) int64 {
	return h.add(prev, typ, func(ev *types.HistoryEvent) {
		ev.StateExitedEventDetails = &types.StateExitedEventDetails{Name: aws.String(name), Output: aws.String(output)}
	})
}

func (h *history) iteration(prev int64, typ types.HistoryEventType, index int32) int64 {
	return h.add(prev, typ, func(ev *types.HistoryEvent) {
		d := &types.MapIterationEventDetails{Name: aws.String("RotateWorkspaces"), Index: index}
		switch typ {
		case types.HistoryEventTypeMapIterationStarted:
			ev.MapIterationStartedEventDetails = d
		case types.HistoryEventTypeMapIterationSucceeded:
			ev.MapIterationSucceededEventDetails = d
		}
	})
}

const (
	mapInput = `{"plan":{"workspaces":[{"workspace_id":"1234567890123456","workspace_name":"analytics-prod"},{"workspace_id":2345678901234567,"workspace_name":"ml-research"}]}}`
	// The run of analytics-prod while it waits for its compute to stop; the inventory is in S3 and only
	// its counts travel, and the pending list names 2 of the 7 pending resources.
	stoppingRun = `{"workspace":{"workspace_id":"1234567890123456","workspace_name":"analytics-prod"},
		"inventory":{"workspace_id":"1234567890123456","taken_at":"2026-01-02T15:04:10Z","counts":{"clusters":310,"pools":2,"warehouses":1,"pipelines":0},"ref":"s3://rotator-inventories/rotate-7/1234567890123456.json"},
		"stop":{"stopped_at":"2026-01-02T15:04:20Z","deadline":"2026-01-02T15:34:20Z","poll_after_seconds":5,"more":false},
		"stop_status":{"done":false,"attempt":3,"checked_at":"2026-01-02T15:05:00Z","poll_after_seconds":10,
			"pending":[{"kind":"cluster","id":"c1","name":"etl-nightly","state":"TERMINATING"},{"kind":"pool","id":"p1","name":"shared-pool","state":"3 instances"}],"pending_count":7}}`
	restartingRun = `{"workspace":{"workspace_id":"2345678901234567","workspace_name":"ml-research"},
		"inventory":{"workspace_id":"2345678901234567","taken_at":"2026-01-02T15:04:10Z","counts":{"clusters":1,"pools":0,"warehouses":0,"pipelines":0},"clusters":[{"id":"g1","name":"gpu-training","source":"API"}]},
		"stop":{"stopped_at":"2026-01-02T15:04:20Z"},"stop_status":{"done":true},
		"patch":{"patched_at":"2026-01-02T15:05:00Z"},"workspace_status":{"done":true,"status":"RUNNING"},
		"restart":{"requested_at":"2026-01-02T15:07:00Z","started":{"clusters":1,"pools":0,"warehouses":0,"pipelines":0},"not_restartable_count":0},
		"restart_status":{"done":false,"pending":[{"kind":"cluster","id":"g1","name":"gpu-training","state":"PENDING"}],"pending_count":1}}`
)

// concurrentRotation is two iterations running at once, their events interleaved.
func concurrentRotation() []types.HistoryEvent {
	h := &history{}
	e := h.add(0, types.HistoryEventTypeExecutionStarted, nil)
	e = h.entered(e, types.HistoryEventTypeTaskStateEntered, "Validate", `{}`)
	e = h.exited(e, types.HistoryEventTypeTaskStateExited, "Validate", `{}`)
	e = h.entered(e, types.HistoryEventTypeMapStateEntered, "RotateWorkspaces", mapInput)
	m := h.add(e, types.HistoryEventTypeMapStateStarted, nil)
	i0 := h.iteration(m, types.HistoryEventTypeMapIterationStarted, 0)
	i1 := h.iteration(m, types.HistoryEventTypeMapIterationStarted, 1)
	a := h.entered(i0, types.HistoryEventTypeTaskStateEntered, "CheckStopped", stoppingRun)
	b := h.entered(i1, types.HistoryEventTypeTaskStateEntered, "RestartCompute", restartingRun)
	a = h.add(a, types.HistoryEventTypeLambdaFunctionFailed, func(ev *types.HistoryEvent) {
		ev.LambdaFunctionFailedEventDetails = &types.LambdaFunctionFailedEventDetails{Error: aws.String("DatabricksUnavailable"),
			Cause: aws.String(`{"errorMessage":"listing clusters: 503 Service Unavailable","errorType":"DatabricksUnavailable"}`)}
	})
	b = h.exited(b, types.HistoryEventTypeTaskStateExited, "RestartCompute", restartingRun)
	_ = h.entered(b, types.HistoryEventTypeWaitStateEntered, "WaitForRestart", restartingRun)
	_ = a
	return h.events
}

func TestIterationsAreFollowedByTheirEventChainsEvenWhenInterleaved(t *testing.T) {
	p := Analyze(Snapshot{ExecutionArn: execARN, Name: "rotate-7", Status: "RUNNING", StartDate: start,
		Input: `{"workspace_ids":["1234567890123456",2345678901234567],"key_arn":"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}`},
		concurrentRotation())

	require.Len(t, p.Iterations, 2)
	assert.Equal(t, "RotateWorkspaces", p.Top)
	assert.True(t, p.TopIsMap)
	assert.Equal(t, []string{"1234567890123456", "2345678901234567"}, p.WorkspaceIDs)
	assert.Equal(t, "CheckStopped", p.Iterations[0].Current())
	assert.Equal(t, "DatabricksUnavailable", p.Iterations[0].Retrying.Error)
	assert.Equal(t, "WaitForRestart", p.Iterations[1].Current())
	assert.Nil(t, p.Iterations[1].Retrying, "iteration 0's failure is not iteration 1's")

	assert.Equal(t, `Execution   rotate-7
Status      RUNNING for 2m00s (started 2026-01-02 15:04:05 UTC)
Workspaces  1234567890123456, 2345678901234567
Key         arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab
State       RotateWorkspaces
  [0] 1234567890123456 analytics-prod: CheckStopped (stopping compute); retrying after DatabricksUnavailable: listing clusters: 503 Service Unavailable
      stopping 310 clusters, 2 pools, 1 warehouse; waiting on 7: cluster etl-nightly (TERMINATING), pool shared-pool (3 instances), +5 more
  [1] 2345678901234567 ml-research: WaitForRestart (restarting)
      restarting 1 cluster; waiting on 1: cluster gpu-training (PENDING)
Console     https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/`+execARN+`
`, RenderStatus(p, start.Add(2*time.Minute)))
}

func TestARejectedExecutionShowsTheValidationErrorUnwrapped(t *testing.T) {
	p := Analyze(Snapshot{ExecutionArn: execARN, Name: "rotate-7", Status: "FAILED", StartDate: start, StopDate: start.Add(3 * time.Second),
		Error: "KeyPolicyRejected", Cause: `{"errorMessage":"key policy does not let Databricks use the key","errorType":"KeyPolicyRejected"}`}, nil)

	assert.Equal(t, `Execution   rotate-7
Status      FAILED after 3s (started 2026-01-02 15:04:05 UTC)
Error       KeyPolicyRejected
Cause       key policy does not let Databricks use the key
Console     https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/`+execARN+`
`, RenderOutcome(p))
	assert.Equal(t, "KeyPolicyRejected: key policy does not let Databricks use the key", outcomeSummary(p))
}

func TestUnreadableStateDocumentsAreSkippedNotFatal(t *testing.T) {
	h := &history{}
	e := h.add(0, types.HistoryEventTypeExecutionStarted, nil)
	e = h.entered(e, types.HistoryEventTypeMapStateEntered, "RotateWorkspaces", `not json`)
	e = h.iteration(e, types.HistoryEventTypeMapIterationStarted, 0)
	e = h.entered(e, types.HistoryEventTypeTaskStateEntered, "StopCompute", `{"workspace":{"workspace_id":"1234567890123456"},"inventory":{"taken_at":"yesterday","counts":{"clusters":1}}}`)
	_ = h.exited(e, types.HistoryEventTypeTaskStateExited, "StopCompute", `{"workspace":"1234567890123456","stop":[]}`)

	p := Analyze(Snapshot{Status: "RUNNING", StartDate: start, Input: `[1,2]`, Output: `{"results":"none"}`}, h.events)

	require.Len(t, p.Iterations, 1)
	assert.Equal(t, "1234567890123456", p.Iterations[0].WorkspaceID)
	assert.Nil(t, p.Iterations[0].Run, "an inventory whose time does not parse is left out")
	assert.Empty(t, p.WorkspaceIDs)
}

func TestTheQuietWindowSaysHowLongItLasts(t *testing.T) {
	it := Iteration{Index: 0, WorkspaceID: "2345678901234567", State: "QuietWindow", Run: &RunView{QuietWindowSeconds: 1200}}

	assert.Equal(t, "[0] 2345678901234567: QuietWindow (quiet window of 20m00s after adding the storage key)", iterationText(it))
}

func TestComputeSummarySaysWhatIsStoppedAtEachStep(t *testing.T) {
	inv := &rotation.Inventory{Clusters: []rotation.ClusterRef{{ID: "c1"}, {ID: "c2"}}, Warehouses: []rotation.WarehouseRef{{ID: "w1"}}}
	pending := []rotation.ResourceRef{{Kind: "cluster", ID: "c1", State: "TERMINATING"}}
	for _, tc := range []struct {
		name string
		run  *RunView
		dry  bool
		want string
	}{
		{"no inventory yet", &RunView{}, false, ""},
		{"nothing running", &RunView{Inventory: &rotation.Inventory{}}, false, "no running compute"},
		{"a dry run", &RunView{Inventory: inv}, true, "would stop 2 clusters, 1 warehouse"},
		{"inventory taken", &RunView{Inventory: inv}, false, "to stop: 2 clusters, 1 warehouse"},
		{"stopping", &RunView{Inventory: inv, Stop: &rotation.StopResult{}, StopStatus: &rotation.ComputeStatus{Pending: pending, PendingCount: 1}}, false,
			"stopping 2 clusters, 1 warehouse; waiting on 1: cluster c1 (TERMINATING)"},
		{"stopped, with a late starter", &RunView{Inventory: inv, Stop: &rotation.StopResult{}, StopStatus: &rotation.ComputeStatus{Done: true,
			LateStopped: []rotation.ResourceRef{{Kind: "cluster", ID: "c9", Name: "adhoc"}}}}, false,
			"stopped 2 clusters, 1 warehouse; also stopped, started after the inventory: cluster adhoc"},
		{"stopped, with a cluster a user started again", &RunView{Inventory: inv, Stop: &rotation.StopResult{}, StopStatus: &rotation.ComputeStatus{Done: true,
			StoppedAgain: []rotation.ResourceRef{{Kind: "cluster", ID: "c1", Name: "etl"}}}}, false,
			"stopped 2 clusters, 1 warehouse; stopped again, started by someone mid-rotation: cluster etl"},
		{"restarting with a failure", &RunView{Inventory: inv, Stop: &rotation.StopResult{}, Restart: &rotation.RestartResult{Started: rotation.Counts{Clusters: 1},
			Failed: []rotation.ResourceRef{{Kind: "warehouse", ID: "w1", Reason: "quota"}}}}, false,
			"restarting 1 cluster; failed to start: warehouse w1 (quota)"},
		{"back, some still down", &RunView{Inventory: inv, Restart: &rotation.RestartResult{Started: rotation.Counts{Clusters: 2}, NotRestartableCount: 1},
			RestartStatus: &rotation.ComputeStatus{Done: true, StillDown: []rotation.ResourceRef{{Kind: "warehouse", ID: "w1"}}, StillDownCount: 4}}, false,
			"restarted 2 clusters; 1 not restartable; still down 4: warehouse w1, +3 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, computeSummary(tc.run, tc.dry))
		})
	}
}

func TestPlanOfAnInventoryKeptInS3ListsCountsAndWhereTheListIs(t *testing.T) {
	p := Progress{KeyARN: "arn:aws:kms:us-east-1:123456789012:key/k", ExistingKeyConfigID: "cfg-1", Results: []Result{
		{WorkspaceID: "1234567890123456", WorkspaceName: "analytics-prod", Outcome: "PLANNED", Plan: &PlanView{
			Message:   "Dry run: nothing was changed.",
			Inventory: &rotation.Inventory{Counts: rotation.Counts{Clusters: 2000, Pools: 3}, Ref: "s3://bucket/inv.json"}, QuietWindowSeconds: 1200,
		}},
		{WorkspaceID: "2345678901234567", Outcome: "FAILED", Error: &rotation.StepError{Error: "DatabricksRequestFailed", Cause: "permission denied"}},
	}}

	assert.Equal(t, `Key         arn:aws:kms:us-east-1:123456789012:key/k
Key config  would reuse cfg-1

1234567890123456 analytics-prod: would stop 2000 clusters, 3 pools
  (too large for the execution state: the full list is in s3://bucket/inv.json)
  then a quiet window of 20m00s (storage key added) before anything restarts
  Dry run: nothing was changed.

2345678901234567: FAILED: DatabricksRequestFailed: permission denied
`, RenderPlan(p))
}

func TestListTableNamesEachExecutionOnOneLine(t *testing.T) {
	rows := []ListRow{
		{Progress: Progress{Snapshot: Snapshot{Name: "cmkrotate-20260102T150405Z-1a2b3c4d", Status: "RUNNING", StartDate: start},
			WorkspaceIDs: []string{"1", "2", "3", "4", "5"}}, Outcome: "running"},
		{Progress: Progress{Snapshot: Snapshot{Name: "rotate-1", Status: "SUCCEEDED", StartDate: start.Add(-time.Hour), StopDate: start.Add(-time.Hour + 4*time.Minute + 12*time.Second)},
			WorkspaceIDs: []string{"1234567890123456"}}, Outcome: "1 ROTATED"},
	}

	assert.Equal(t, `NAME                                 STATUS     STARTED                  DURATION  WORKSPACES        OUTCOME
cmkrotate-20260102T150405Z-1a2b3c4d  RUNNING    2026-01-02 15:04:05 UTC  1h02m03s  1,2,3 +2          running
rotate-1                             SUCCEEDED  2026-01-02 14:04:05 UTC  4m12s     1234567890123456  1 ROTATED
`, RenderList(rows, start.Add(time.Hour+2*time.Minute+3*time.Second)))
}

func TestATerminalGetsTheBlockRedrawnInPlace(t *testing.T) {
	var out bytes.Buffer
	d := newDisplay(&out, true, 40)
	p := Analyze(Snapshot{ExecutionArn: execARN, Name: "rotate-7", Status: "RUNNING", StartDate: start}, nil)

	assert.True(t, d.update(p, start.Add(time.Second)))
	first := out.String()
	assert.False(t, d.update(p, start.Add(2*time.Second)), "only the elapsed time changed")

	assert.NotContains(t, first, "\x1b[")
	redraw := strings.TrimPrefix(out.String(), first)
	assert.True(t, strings.HasPrefix(redraw, fmt.Sprintf("\x1b[%dA\x1b[J", strings.Count(first, "\n"))), "%q", redraw)
	for _, line := range strings.Split(strings.TrimSuffix(redraw, "\n"), "\n") {
		assert.LessOrEqual(t, len([]rune(strings.TrimPrefix(line, "\x1b[4A\x1b[J"))), 40, "lines are cut to the width: %q", line)
	}
}

func TestPlainOutputPrintsOnlyTheLinesThatChanged(t *testing.T) {
	var out bytes.Buffer
	d := newDisplay(&out, false, 0)
	events := concurrentRotation()
	snap := Snapshot{ExecutionArn: execARN, Name: "rotate-7", Status: "RUNNING", StartDate: start}

	d.update(Analyze(snap, events[:2]), start.Add(5*time.Second))
	d.update(Analyze(snap, events[:2]), start.Add(9*time.Second))
	d.update(Analyze(snap, events), start.Add(75*time.Second))

	assert.Equal(t, `+5s RUNNING Validate (validating)
+1m15s RUNNING RotateWorkspaces
+1m15s [0] 1234567890123456 analytics-prod: CheckStopped (stopping compute); retrying after DatabricksUnavailable: listing clusters: 503 Service Unavailable; stopping 310 clusters, 2 pools, 1 warehouse; waiting on 7: cluster etl-nightly (TERMINATING), pool shared-pool (3 instances), +5 more
+1m15s [1] 2345678901234567 ml-research: WaitForRestart (restarting); restarting 1 cluster; waiting on 1: cluster gpu-training (PENDING)
`, out.String())
}

func TestFormattingOfDurationsURLsAndExecutionNames(t *testing.T) {
	assert.Equal(t, "0s", formatDuration(-time.Second))
	assert.Equal(t, "59s", formatDuration(59*time.Second+400*time.Millisecond))
	assert.Equal(t, "4m05s", formatDuration(4*time.Minute+5*time.Second))
	assert.Equal(t, "2h00m01s", formatDuration(2*time.Hour+time.Second))

	assert.Equal(t, "https://console.amazonaws-us-gov.com/states/home?region=us-gov-west-1#/v2/executions/details/arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:rotation:r",
		ConsoleURL("arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:rotation:r"))
	assert.Equal(t, "", ConsoleURL("not-an-arn"))

	arn, err := executionARN("rotate-7", "arn:aws:states:us-east-1:123456789012:stateMachine:rotation")
	require.NoError(t, err)
	assert.Equal(t, execARN, arn)
	_, err = executionARN("arn:aws:states:us-east-1:123456789012:stateMachine:rotation", "")
	var usage *usageError
	assert.True(t, errors.As(err, &usage), "a state machine ARN is not an execution: %v", err)

	assert.Equal(t, "cmkrotate-plan-20260102T150405Z-44136fa3", executionName(true, start.In(time.FixedZone("CET", 3600)), []byte(`{}`)))
}

func TestOnlyFailuresWorthRepeatingAreRetriedByTheWatch(t *testing.T) {
	assert.True(t, transient(errors.New("connection reset by peer")))
	assert.True(t, transient(&smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}))
	assert.True(t, transient(&smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}))
	assert.False(t, transient(&smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient}))
	assert.False(t, transient(&notFoundError{arn: execARN, err: errors.New("ExecutionDoesNotExist")}))
	assert.False(t, transient(fmt.Errorf("poll: %w", context.Canceled)))
	assert.True(t, errors.Is(&notFoundError{arn: execARN}, ErrExecutionNotFound))
}

func TestOfflineValidationReportsEveryProblemAsInvalidInput(t *testing.T) {
	_, err := checkRequest([]byte(`{"workspace_ids":["x"],"key_arn":"arn:aws:kms:us-east-1:12:key/k"}`), true)

	var invalid *invalidInputError
	require.True(t, errors.As(err, &invalid), "%v", err)
	assert.Equal(t, []string{
		`--workspace[0]: "x" is not a Databricks workspace id (digits only)`,
		`--key-arn "arn:aws:kms:us-east-1:12:key/k" is not a KMS key or alias ARN: account "12" is not a 12-digit AWS account id`,
	}, invalid.problems)
}

// Every flag a command defines is in its help, so the help cannot fall behind the flags.
func TestHelpNamesEveryFlag(t *testing.T) {
	sets := map[string]func(fs *flag.FlagSet){
		startHelp: func(fs *flag.FlagSet) { (&startFlags{}).register(fs, false) },
		planHelp:  func(fs *flag.FlagSet) { (&startFlags{}).register(fs, true) },
	}
	for help, register := range sets {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		register(fs)
		fs.VisitAll(func(f *flag.Flag) {
			assert.Contains(t, help, "--"+f.Name+" ", "help of %q", strings.SplitN(help, "\n", 2)[0])
		})
	}
	assert.NotContains(t, planHelp, "--watch", "plan always follows its dry run")
	for _, help := range []string{statusHelp, watchHelp, listHelp} {
		assert.Contains(t, help, "--state-machine ARN")
	}
	assert.Contains(t, listHelp, "--max N")
	assert.Contains(t, listHelp, "--status STATUS")
}
