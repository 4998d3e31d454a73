package statemachine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/approval"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// mapItemBudget bounds what one workspace's iteration adds to the Map's result, which lands in the
// execution's top-level state with every other workspace's: a per-request workspace cap times this
// must stay under the 256 KiB payload limit (States.DataLimitExceeded cannot be caught; in the
// approval Map it fails the whole execution).
const mapItemBudget = 1024

// worstIteration is the largest state a workspace iteration can reach: an inline inventory at
// invstore's limit, every progress list full, 200 still-down entries, a failure report, errors.
func worstIteration(t *testing.T) map[string]any {
	t.Helper()
	inv := rotation.Inventory{WorkspaceID: "1234567890123456", TakenAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	for i := 0; ; i++ {
		inv.Clusters = append(inv.Clusters, rotation.ClusterRef{ID: fmt.Sprintf("1126-%06d-abcdefgh", i), Name: strings.Repeat("n", 90), Source: "UI", State: "RUNNING"})
		b, err := json.Marshal(inv)
		require.NoError(t, err)
		if len(b) > invstore.DefaultInlineLimit {
			inv.Clusters = inv.Clusters[:len(inv.Clusters)-1]
			break
		}
	}
	inv.Counts = rotation.CountOf(inv)
	lists := func() *rotation.ComputeStatus {
		st := &rotation.ComputeStatus{PendingCount: 5000, StillDownCount: 5000}
		for i := 0; i < rotation.MaxListed; i++ {
			r := rotation.ResourceRef{Kind: "cluster", ID: fmt.Sprintf("1126-%06d-abcdefgh", i), Name: strings.Repeat("n", 100), State: "TERMINATING"}
			st.Pending, st.LateStopped, st.StoppedAgain = append(st.Pending, r), append(st.LateStopped, r), append(st.StoppedAgain, r)
		}
		for i := 0; i < rotation.MaxFailuresListed; i++ {
			st.StillDown = append(st.StillDown, rotation.ResourceRef{Kind: "cluster", ID: fmt.Sprintf("1126-%06d-abcdefgh", i),
				Name: strings.Repeat("n", 100), State: "TERMINATED", Reason: strings.Repeat("r", 1000)})
		}
		return st
	}
	stepErr := &rotation.StepError{Error: "RestartTimedOut", Cause: strings.Repeat("c", 32768)}
	run := &rotation.WorkspaceRun{
		Workspace: rotation.WorkspaceTarget{WorkspaceID: inv.WorkspaceID, WorkspaceName: strings.Repeat("w", 100),
			PreviousManagedKeyID: "old-cfg", PreviousManagedKeyARN: "arn:aws:kms:us-west-2:111122223333:key/0000aaaa-12ab-34cd-56ef-1234567890ab"},
		KeyConfigID: "new-cfg", KeyARN: "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		UseCases: []string{"MANAGED_SERVICES", "STORAGE"}, Execution: strings.Repeat("e", 80), Inventory: &inv,
		Stop: &rotation.StopResult{}, StopStatus: lists(), Patch: &rotation.PatchResult{}, QuietStatus: lists(),
		Restart: &rotation.RestartResult{}, RestartStatus: lists(), Error: stepErr, CompensationError: stepErr,
	}
	out, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindFailed, Run: run})
	require.NoError(t, err)
	doc, err := json.Marshal(run)
	require.NoError(t, err)
	var state map[string]any
	require.NoError(t, json.Unmarshal(doc, &state))
	rep, err := json.Marshal(out)
	require.NoError(t, err)
	var r map[string]any
	require.NoError(t, json.Unmarshal(rep, &r))
	// A dry run's iteration reads $.report.plan: the plan of a dry run, which has taken its inventory
	// and done nothing else.
	dry := &rotation.WorkspaceRun{Workspace: run.Workspace, KeyARN: run.KeyARN, UseCases: run.UseCases,
		Execution: run.Execution, Inventory: run.Inventory, DryRun: true}
	plan, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindPlan, Run: dry})
	require.NoError(t, err)
	pb, err := json.Marshal(plan.Plan)
	require.NoError(t, err)
	var p any
	require.NoError(t, json.Unmarshal(pb, &p))
	r["plan"] = p
	state["report"] = r
	return state
}

// evalParameters applies a Pass state's Parameters to doc. Only plain paths ($.a.b) and constants
// are understood: anything else fails the test, so a new kind of expression gets a look.
func evalParameters(t *testing.T, params map[string]any, doc map[string]any) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range params {
		if name, ok := strings.CutSuffix(k, ".$"); ok {
			path, _ := v.(string)
			require.True(t, strings.HasPrefix(path, "$.") && !strings.ContainsAny(path, "[]*()'"), "%s: only plain paths are evaluated here, got %q", k, path)
			var cur any = doc
			for _, part := range strings.Split(strings.TrimPrefix(path, "$."), ".") {
				m, _ := cur.(map[string]any)
				cur = m[part]
			}
			out[name] = cur
			continue
		}
		if nested, ok := v.(map[string]any); ok {
			out[k] = evalParameters(t, nested, doc)
			continue
		}
		out[k] = v
	}
	return out
}

// Issue 9, item 3: a Map's result is one item per workspace in the top-level state. Every state
// that ends an iteration of a Map whose result is kept (in any statemachine/*.asl.json) outputs a
// bounded item at the worst case. Before the fix, the approval Map's ApprovalPlanned copied the
// whole inventory: four workspaces with 64 KiB inline inventories passed 256 KiB before the
// approval was even asked.
func TestEveryMapIterationOutputsABoundedItemAtTheWorstCase(t *testing.T) {
	worst := worstIteration(t)
	files, err := filepath.Glob("*.asl.json")
	require.NoError(t, err)
	var checked []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var def struct {
			States map[string]map[string]any `json:"States"`
		}
		require.NoError(t, json.Unmarshal(raw, &def))
		var visit func(states map[string]map[string]any)
		visit = func(states map[string]map[string]any) {
			for name, s := range states {
				if s["Type"] != "Map" {
					continue
				}
				processor, _ := s["ItemProcessor"].(map[string]any)
				require.NotNil(t, processor, "%s: Map %s has no ItemProcessor", f, name)
				pb, _ := json.Marshal(processor["States"])
				var inner map[string]map[string]any
				require.NoError(t, json.Unmarshal(pb, &inner))
				if rp, set := s["ResultPath"]; !set || rp != nil {
					for endName, end := range inner {
						if end["End"] != true {
							continue
						}
						if end["Type"] == "Task" {
							// A child execution per item: the item is the ResultSelector applied to
							// each output the child can end with (its own end states, at the worst case).
							for _, childOut := range childEndOutputs(t, end, worst) {
								selector, _ := end["ResultSelector"].(map[string]any)
								require.NotNil(t, selector, "%s: %s/%s keeps the child's whole answer", f, name, endName)
								item, err := json.Marshal(evalParameters(t, selector, map[string]any{"Output": childOut.output}))
								require.NoError(t, err)
								assert.LessOrEqual(t, len(item), mapItemBudget, "%s: %s/%s after the child's %s outputs %d bytes at the worst case", f, name, endName, childOut.state, len(item))
								checked = append(checked, fmt.Sprintf("%s/%s<-%s %d B", name, endName, childOut.state, len(item)))
							}
							continue
						}
						require.Equal(t, "Pass", end["Type"], "%s: %s/%s ends an iteration whose result is kept: a Pass state shapes a bounded item", f, name, endName)
						params, _ := end["Parameters"].(map[string]any)
						require.NotNil(t, params, "%s: %s/%s outputs its whole input", f, name, endName)
						item, err := json.Marshal(evalParameters(t, params, worst))
						require.NoError(t, err)
						assert.LessOrEqual(t, len(item), mapItemBudget, "%s: %s/%s outputs %d bytes at the worst case", f, name, endName, len(item))
						checked = append(checked, fmt.Sprintf("%s/%s %d B", name, endName, len(item)))
					}
				}
				visit(inner)
			}
		}
		visit(def.States)
	}
	t.Logf("iteration outputs at the worst case: %v", checked)
	// The Map's result replaces its items (ItemsPath and ResultPath are both $.targets) and sits once
	// in the request's top-level state: at the per-request cap it leaves 56 KiB for the lock, the
	// collected outcomes and the failure cause (TestTheRequestStateAtTheCapStaysUnderThePayloadQuota
	// builds that state).
	assert.LessOrEqual(t, rotation.MaxWorkspacesPerRequest*mapItemBudget, 200<<10, "cap × item budget")
	assert.Contains(t, strings.Join(checked, " "), "InventoryForApproval/ApprovalPlanned", "the approval Map is checked")
	assert.Contains(t, strings.Join(checked, " "), "RotateWorkspaces/RotateWorkspace<-Failed", "the child executions' results are checked")
}

type childOutput struct {
	state  string
	output map[string]any
}

// childEndOutputs returns what the child state machine a .sync Task starts can end with: every end
// state of its definition, each a Pass state whose Parameters shape the child's output.
func childEndOutputs(t *testing.T, task map[string]any, worst map[string]any) []childOutput {
	t.Helper()
	resource, _ := task["Resource"].(string)
	require.True(t, strings.HasPrefix(resource, "arn:aws:states:::states:startExecution.sync"), "an iteration that ends in a Task ends in a child execution, got %s", resource)
	params, _ := task["Parameters"].(map[string]any)
	files := map[string]string{"${WorkspaceRotationStateMachineArn}": "workspace-rotation.asl.json"}
	file, ok := files[fmt.Sprint(params["StateMachineArn"])]
	require.True(t, ok, "no definition known for the child %v", params["StateMachineArn"])
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	var child struct {
		States map[string]map[string]any `json:"States"`
	}
	require.NoError(t, json.Unmarshal(raw, &child))
	var outs []childOutput
	for name, st := range child.States {
		if st["End"] != true && st["Type"] != "Succeed" {
			continue
		}
		require.Equal(t, "Pass", st["Type"], "%s: the end state %s shapes the child's output", file, name)
		p, _ := st["Parameters"].(map[string]any)
		require.NotNil(t, p, "%s: the end state %s outputs its whole input", file, name)
		outs = append(outs, childOutput{state: name, output: evalParameters(t, p, worst)})
	}
	require.NotEmpty(t, outs, "%s has no end state", file)
	return outs
}

// The approval request reads the counts the approval Map's items now carry (not the lists).
func TestTheApprovalRequestReadsTheCountsApprovalPlannedOutputs(t *testing.T) {
	def := load(t, "rotation.asl.json")
	raw, err := os.ReadFile("rotation.asl.json")
	require.NoError(t, err)
	require.Contains(t, def.States, "InventoryForApproval")
	var doc struct {
		States map[string]struct {
			ItemProcessor struct {
				States map[string]struct {
					Parameters map[string]any `json:"Parameters"`
				} `json:"States"`
			} `json:"ItemProcessor"`
		} `json:"States"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	params := doc.States["InventoryForApproval"].ItemProcessor.States["ApprovalPlanned"].Parameters
	require.NotNil(t, params)
	worst := worstIteration(t)
	item, err := json.Marshal(evalParameters(t, params, worst))
	require.NoError(t, err)
	var planned approval.PlannedWorkspace
	require.NoError(t, json.Unmarshal(item, &planned))
	require.NotNil(t, planned.Inventory)
	want := worst["inventory"].(map[string]any)["counts"].(map[string]any)
	assert.EqualValues(t, want["clusters"], planned.Inventory.Counts.Clusters, "RequestApproval's will_stop comes from these counts")
	assert.Positive(t, planned.Inventory.Counts.Clusters)
}
