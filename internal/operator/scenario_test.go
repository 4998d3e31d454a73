package operator_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// The scenarios below record the history the rotation state machine (statemachine/rotation.asl.json)
// writes: its state names, the workspace run each Map iteration carries (real rotation types), the
// per-workspace results its Pass states build, and the plan detail the real report task builds.

var t0 = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

type testWorkspace struct {
	target    rotation.WorkspaceTarget
	inventory rotation.Inventory
	// stopTimesOut makes the second CheckStopped fail with ComputeStopTimedOut, then compensate.
	stopTimesOut bool
	// stillDownAfterRestart makes a warehouse stay down after the restart: ROTATED_COMPUTE_DOWN.
	stillDownAfterRestart bool
	// unavailableOnce makes the second CheckStopped fail once with DatabricksUnavailable, which the
	// state machine retries.
	unavailableOnce bool
}

func analyticsProd() testWorkspace {
	return testWorkspace{
		target: rotation.WorkspaceTarget{
			WorkspaceID: "1234567890123456", WorkspaceName: "analytics-prod", DeploymentName: "analytics-prod",
			Region: "us-east-1", PreviousManagedKeyID: oldConfig, PreviousManagedKeyARN: oldKeyARN,
		},
		inventory: rotation.Inventory{
			WorkspaceID: "1234567890123456", TakenAt: t0,
			Clusters: []rotation.ClusterRef{
				{ID: "0102-150405-etl1", Name: "etl-nightly", Source: "UI", State: "RUNNING"},
				{ID: "0102-150405-job2", Name: "job-run-42", Source: "JOB", State: "RUNNING"},
			},
			Pools:      []rotation.PoolSettings{{ID: "0102-pool-shared", Name: "shared-pool", NodeTypeID: "i3.xlarge", MinIdleInstances: 2}},
			Warehouses: []rotation.WarehouseRef{{ID: "wh-bi", Name: "bi-warehouse"}},
			Pipelines:  []rotation.PipelineRef{{ID: "pl-ingest", Name: "ingest", Continuous: true}},
		},
	}
}

func mlResearch() testWorkspace {
	return testWorkspace{
		target: rotation.WorkspaceTarget{
			WorkspaceID: "2345678901234567", WorkspaceName: "ml-research", DeploymentName: "ml-research",
			Region: "us-east-1", PreviousManagedKeyID: oldConfig, PreviousManagedKeyARN: oldKeyARN,
		},
		inventory: rotation.Inventory{
			WorkspaceID: "2345678901234567", TakenAt: t0,
			Clusters:   []rotation.ClusterRef{{ID: "0102-150405-gpu1", Name: "gpu-training", Source: "API", State: "RUNNING"}},
			Pools:      []rotation.PoolSettings{},
			Warehouses: []rotation.WarehouseRef{},
			Pipelines:  []rotation.PipelineRef{},
		},
	}
}

// hist accumulates history events in steps: a stepped runner records one step per poll.
type hist struct {
	t     testing.TB
	steps [][]awsfake.HistoryEvent
	cur   []awsfake.HistoryEvent
}

func (h *hist) doc(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return mustJSON(h.t, v)
}

func (h *hist) enter(kind, name string, in any) {
	h.cur = append(h.cur, awsfake.HistoryEvent{Type: kind + "StateEntered", StateName: name, Input: h.doc(in)})
}

func (h *hist) exit(kind, name string, out any) {
	h.cur = append(h.cur, awsfake.HistoryEvent{Type: kind + "StateExited", StateName: name, Output: h.doc(out)})
}

// state enters and exits a state.
func (h *hist) state(kind, name string, in, out any) {
	h.enter(kind, name, in)
	h.exit(kind, name, out)
}

func (h *hist) event(ev awsfake.HistoryEvent) { h.cur = append(h.cur, ev) }

func (h *hist) step() {
	if len(h.cur) > 0 {
		h.steps = append(h.steps, h.cur)
		h.cur = nil
	}
}

// lambdaCause is the Cause Step Functions stores for a Go Lambda's error.
func lambdaCause(t testing.TB, errorType, message string) string {
	return mustJSON(t, map[string]string{"errorMessage": message, "errorType": errorType})
}

// with returns doc (a JSON document or a value) with key set to v, as a ResultPath does.
func with(t testing.TB, doc any, key string, v any) map[string]any {
	raw, ok := doc.(string)
	if !ok {
		raw = mustJSON(t, doc)
	}
	var m map[string]any
	check(json.Unmarshal([]byte(raw), &m))
	var vv any
	check(json.Unmarshal([]byte(mustJSON(t, v)), &vv))
	m[key] = vv
	return m
}

// check fails a scenario builder. Builders run in the fake's runner goroutine, where require
// cannot stop the test: the panic becomes a failed execution (Sandbox.RunnerPanic) the test sees.
func check(err error) {
	if err != nil {
		panic(err)
	}
}

func result(ws testWorkspace, outcome string, stepErr *rotation.StepError, plan any) map[string]any {
	r := map[string]any{
		"workspace_id": ws.target.WorkspaceID, "workspace_name": ws.target.WorkspaceName, "outcome": outcome,
		"previous_key_config_id": ws.target.PreviousManagedKeyID, "previous_key_arn": ws.target.PreviousManagedKeyARN,
	}
	if stepErr != nil {
		r["error"] = stepErr
	}
	if plan != nil {
		r["plan"] = plan
	}
	return r
}

// rotationScript is an execution of the rotation state machine over the workspaces, as its
// history and output would be: a rotation, or a dry run when the input says dry_run.
func rotationScript(t testing.TB, exec awsfake.Execution, workspaces ...testWorkspace) script {
	req, err := rotation.ParseRequest([]byte(exec.Input))
	check(err)
	byID := map[string]testWorkspace{}
	for _, ws := range workspaces {
		byID[ws.target.WorkspaceID] = ws
	}
	var targets []testWorkspace
	plan := rotation.Plan{
		KeyARN: req.KeyARN, KeyAlias: req.KeyAlias, KeyRegion: "us-east-1", UseCases: req.UseCases,
		ReuseKeyForClusterVolumes: req.ReuseKeyForVolumes(), DryRun: req.DryRun, QuietWindowSeconds: 1200, MaxConcurrency: 1,
	}
	for _, id := range req.WorkspaceIDs {
		ws, ok := byID[id]
		if !ok {
			panic("the scenario has no workspace " + id)
		}
		targets = append(targets, ws)
		plan.Workspaces = append(plan.Workspaces, ws.target)
	}

	h := &hist{t: t}
	h.state("Task", "LockWorkspaces", exec.Input, with(t, exec.Input, "lock", map[string]any{"locked": req.WorkspaceIDs}))
	h.enter("Task", "Validate", with(t, exec.Input, "lock", map[string]any{"locked": req.WorkspaceIDs}))
	state := with(t, with(t, exec.Input, "lock", map[string]any{"locked": req.WorkspaceIDs}), "plan", plan)
	h.exit("Task", "Validate", state)
	h.state("Choice", "DryRun?", state, state)
	h.step()
	if req.DryRun {
		return planScript(t, h, exec, state, plan, targets)
	}

	h.state("Task", "RegisterKeyConfig", state, with(t, state, "key_config", rotation.KeyConfig{KeyConfigID: newConfig, Created: true}))
	state = with(t, state, "key_config", rotation.KeyConfig{KeyConfigID: newConfig, Created: true})
	h.enter("Map", "RotateWorkspaces", state)
	h.event(awsfake.HistoryEvent{Type: "MapStateStarted"})
	h.step()

	var results []map[string]any
	anyFailed, anyRotated, anyDown := false, false, false
	for i, ws := range targets {
		run := rotation.WorkspaceRun{
			Workspace: ws.target, KeyConfigID: newConfig, KeyARN: req.KeyARN, UseCases: req.UseCases,
			QuietWindowSeconds: 1200, Execution: exec.Name,
		}
		h.event(awsfake.HistoryEvent{Type: "MapIterationStarted", StateName: "RotateWorkspaces", Index: i})
		h.state("Choice", "AlreadyOnKey?", run, run)
		h.enter("Task", "TakeInventory", run)
		inv := ws.inventory
		inv.Counts = rotation.CountOf(inv)
		run.Inventory = &inv
		h.exit("Task", "TakeInventory", run)
		h.enter("Task", "StopCompute", run)
		run.Stop = &rotation.StopResult{StoppedAt: t0.Add(10 * time.Second), Deadline: t0.Add(30 * time.Minute), PollAfterSeconds: 5}
		h.exit("Task", "StopCompute", run)
		h.state("Choice", "StopMore?", run, run)
		h.state("Wait", "WaitForStop", run, run)
		h.enter("Task", "CheckStopped", run)
		run.StopStatus = &rotation.ComputeStatus{Attempt: 1, CheckedAt: t0.Add(15 * time.Second), PollAfterSeconds: 10, Pending: []rotation.ResourceRef{
			{Kind: "cluster", ID: ws.inventory.Clusters[0].ID, Name: ws.inventory.Clusters[0].Name, State: "TERMINATING"},
		}, PendingCount: 1}
		h.exit("Task", "CheckStopped", run)
		h.state("Choice", "AllStopped?", run, run)
		h.enter("Wait", "WaitForStopAgain", run)
		h.step()

		h.exit("Wait", "WaitForStopAgain", run)
		h.enter("Task", "CheckStopped", run)
		if ws.unavailableOnce {
			h.event(awsfake.HistoryEvent{Type: "LambdaFunctionFailed", Error: "DatabricksUnavailable",
				Cause: lambdaCause(t, "DatabricksUnavailable", "listing clusters of workspace "+ws.target.WorkspaceID+": 503 Service Unavailable")})
			h.step()
		}
		if ws.stopTimesOut {
			stepErr := &rotation.StepError{Error: "ComputeStopTimedOut", Cause: lambdaCause(t, "ComputeStopTimedOut",
				"compute of workspace "+ws.target.WorkspaceID+" did not stop within 30m0s: cluster etl-nightly is still TERMINATING")}
			h.event(awsfake.HistoryEvent{Type: "LambdaFunctionFailed", Error: stepErr.Error, Cause: stepErr.Cause})
			run.Error = stepErr
			h.exit("Task", "CheckStopped", run)
			h.enter("Task", "Compensate", run)
			run.Restart = &rotation.RestartResult{RequestedAt: t0.Add(31 * time.Minute), Deadline: t0.Add(61 * time.Minute), PollAfterSeconds: 10,
				Started:        rotation.Counts{Clusters: 1, Pools: 1, Pipelines: 1},
				NotRestartable: []rotation.ResourceRef{{Kind: "cluster", ID: "0102-150405-job2", Name: "job-run-42", Reason: "JOB cluster"}}, NotRestartableCount: 1}
			h.exit("Task", "Compensate", run)
			h.state("Choice", "CompensateMore?", run, run)
			h.state("Wait", "WaitForCompensation", run, run)
			h.enter("Task", "CheckCompensation", run)
			run.RestartStatus = &rotation.ComputeStatus{Done: true, Attempt: 1, CheckedAt: t0.Add(33 * time.Minute),
				StillDown:      []rotation.ResourceRef{{Kind: "warehouse", ID: "wh-bi", Name: "bi-warehouse", State: "STOPPED", Reason: "did not start within 30m0s"}},
				StillDownCount: 1}
			h.exit("Task", "CheckCompensation", run)
			h.state("Choice", "Compensated?", run, run)
			h.step()
			h.state("Task", "BuildFailureReport", run, run)
			h.state("Task", "PublishFailure", run, run)
			res := result(ws, rotation.OutcomeFailed, stepErr, nil)
			h.state("Pass", "Failed", run, res)
			results = append(results, res)
			anyFailed = true
		} else {
			run.StopStatus = &rotation.ComputeStatus{Done: true, Attempt: 2, CheckedAt: t0.Add(25 * time.Second)}
			h.exit("Task", "CheckStopped", run)
			h.state("Choice", "AllStopped?", run, run)
			h.enter("Task", "PatchWorkspace", run)
			run.Patch = &rotation.PatchResult{PatchedAt: t0.Add(30 * time.Second), UpdateMask: "managed_services_customer_managed_key_id",
				VerifyDeadline: t0.Add(16 * time.Minute), PollAfterSeconds: 10}
			h.exit("Task", "PatchWorkspace", run)
			h.step()
			h.state("Wait", "WaitForWorkspace", run, run)
			h.enter("Task", "CheckWorkspace", run)
			run.WorkspaceStat = &rotation.WorkspaceStat{Done: true, Attempt: 1, Status: "RUNNING", ManagedKeyID: newConfig, CheckedAt: t0.Add(2 * time.Minute)}
			h.exit("Task", "CheckWorkspace", run)
			h.state("Choice", "OnNewKey?", run, run)
			h.state("Choice", "QuietWindow?", run, run)
			h.enter("Task", "RestartCompute", run)
			run.Restart = &rotation.RestartResult{RequestedAt: t0.Add(3 * time.Minute), Deadline: t0.Add(33 * time.Minute), PollAfterSeconds: 10,
				Started: rotation.CountOf(ws.inventory)}
			h.exit("Task", "RestartCompute", run)
			h.state("Choice", "RestartMore?", run, run)
			h.enter("Wait", "WaitForRestart", run)
			h.step()
			h.exit("Wait", "WaitForRestart", run)
			h.enter("Task", "CheckRunning", run)
			run.RestartStatus = &rotation.ComputeStatus{Done: true, Attempt: 1, CheckedAt: t0.Add(4 * time.Minute), DowntimeSeconds: 230}
			if ws.stillDownAfterRestart {
				run.RestartStatus.StillDown = []rotation.ResourceRef{{Kind: "warehouse", ID: "wh-bi", Name: "bi-warehouse", State: "STOPPED", Reason: "did not start within 30m0s"}}
				run.RestartStatus.StillDownCount = 1
			}
			h.exit("Task", "CheckRunning", run)
			h.state("Choice", "AllRunning?", run, run)
			h.state("Task", "BuildSuccessReport", run, run)
			h.state("Task", "PublishSuccess", run, run)
			h.state("Choice", "AllBack?", run, run)
			if ws.stillDownAfterRestart {
				res := result(ws, rotation.OutcomeRotatedComputeDown, nil, nil)
				res["still_down"] = run.RestartStatus.StillDown
				h.state("Pass", "RotatedComputeDown", run, res)
				results = append(results, res)
				anyDown = true
			} else {
				res := result(ws, rotation.OutcomeRotated, nil, nil)
				h.state("Pass", "Rotated", run, res)
				results = append(results, res)
				anyRotated = true
			}
		}
		h.event(awsfake.HistoryEvent{Type: "MapIterationSucceeded", StateName: "RotateWorkspaces", Index: i})
		h.step()
	}
	h.event(awsfake.HistoryEvent{Type: "MapStateSucceeded"})
	state = with(t, state, "results", results)
	h.exit("Map", "RotateWorkspaces", state)
	summary := map[string]any{"execution": exec.Name, "key_arn": req.KeyARN, "key_config_id": newConfig,
		"any_failed": anyFailed, "any_rotated": anyRotated, "any_compute_down": anyDown, "results": results}
	h.state("Pass", "CollectOutcomes", state, state)
	state = with(t, state, "summary", summary)
	h.state("Pass", "Summarize", state, state)
	h.state("Choice", "AnyRotated?", state, state)
	if anyRotated || anyDown {
		h.state("Task", "ScheduleRetirementReminder", state, state)
	}
	h.state("Task", "ReleaseLocks", state, state)
	h.state("Choice", "AnyFailed?", state, state)
	switch {
	case anyFailed:
		h.enter("Fail", "RotationFailed", state)
		h.step()
		return script{steps: h.steps, fail: &awsfake.ExecError{Error: "RotationFailed",
			Cause: "One or more workspaces failed to rotate; each published a Rotation Failed event naming the cause and anything still down."}}
	case anyDown:
		h.enter("Fail", "ComputeNotRestored", state)
		h.step()
		return script{steps: h.steps, fail: &awsfake.ExecError{Error: "ComputeNotRestored",
			Cause: "Every workspace is on the new key, but some compute did not come back; the Rotation Succeeded events list it in still_down."}}
	}
	h.state("Succeed", "Done", state, summary)
	h.step()
	return script{steps: h.steps, output: mustJSON(t, summary)}
}

func planScript(t testing.TB, h *hist, exec awsfake.Execution, state map[string]any, plan rotation.Plan, targets []testWorkspace) script {
	h.enter("Map", "PlanWorkspaces", state)
	h.event(awsfake.HistoryEvent{Type: "MapStateStarted"})
	var results []map[string]any
	for i, ws := range targets {
		run := rotation.WorkspaceRun{Workspace: ws.target, KeyARN: plan.KeyARN, UseCases: plan.UseCases, QuietWindowSeconds: 1200, DryRun: true, Execution: exec.Name}
		h.event(awsfake.HistoryEvent{Type: "MapIterationStarted", StateName: "PlanWorkspaces", Index: i})
		h.state("Choice", "PlanAlreadyOnKey?", run, run)
		h.enter("Task", "PlanInventory", run)
		inv := ws.inventory
		inv.Counts = rotation.CountOf(inv)
		run.Inventory = &inv
		h.exit("Task", "PlanInventory", run)
		h.step()
		rep, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindPlan, Run: &run, ExistingKeyConfigID: plan.ExistingKeyConfigID})
		check(err)
		withReport := with(t, run, "report", rep)
		h.state("Task", "BuildPlanReport", run, withReport)
		h.state("Task", "PublishPlan", withReport, withReport)
		res := result(ws, rotation.OutcomePlanned, nil, rep.Detail)
		h.state("Pass", "Planned", withReport, res)
		results = append(results, res)
		h.event(awsfake.HistoryEvent{Type: "MapIterationSucceeded", StateName: "PlanWorkspaces", Index: i})
	}
	h.event(awsfake.HistoryEvent{Type: "MapStateSucceeded"})
	state = with(t, state, "results", results)
	h.exit("Map", "PlanWorkspaces", state)
	h.state("Task", "ReleaseLocksAfterPlan", state, state)
	out := map[string]any{"dry_run": true, "key_arn": plan.KeyARN, "existing_key_config_id": plan.ExistingKeyConfigID, "results": results}
	h.state("Pass", "PlanDone", state, out)
	h.step()
	return script{steps: h.steps, output: mustJSON(t, out)}
}

// rejectedScript is an execution whose Validate task refused the key policy.
func rejectedScript(t testing.TB, exec awsfake.Execution) script {
	h := &hist{t: t}
	h.state("Task", "LockWorkspaces", exec.Input, exec.Input)
	h.enter("Task", "Validate", exec.Input)
	cause := lambdaCause(t, "KeyPolicyRejected", "key policy does not let the Databricks control plane use the key for MANAGED_SERVICES")
	h.event(awsfake.HistoryEvent{Type: "LambdaFunctionFailed", Error: "KeyPolicyRejected", Cause: cause})
	state := with(t, exec.Input, "error", rotation.StepError{Error: "KeyPolicyRejected", Cause: cause})
	h.exit("Task", "Validate", state)
	h.state("Task", "BuildRejectionReport", state, state)
	h.state("Task", "PublishRejection", state, state)
	h.state("Task", "ReleaseLocksAfterRejection", state, state)
	h.enter("Fail", "Rejected", state)
	h.step()
	return script{steps: h.steps, fail: &awsfake.ExecError{Error: "KeyPolicyRejected", Cause: cause}}
}

func rotationInput(t testing.TB, dryRun bool, ids ...string) string {
	return mustJSON(t, rotation.Request{WorkspaceIDs: ids, KeyARN: keyARN, UseCases: []string{rotation.UseCaseManagedServices}, DryRun: dryRun})
}
