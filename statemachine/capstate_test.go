package statemachine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
)

// payloadQuota is Step Functions' limit on a state's input or output (256 KiB). Exceeding it fails
// the execution with States.DataLimitExceeded, which no Catch of the request's handles.
const payloadQuota = 256 << 10

// requestStateDocs reads rotation.asl.json's top-level states, and the states of its Maps' processors
// by "Map/State", as plain documents.
func requestStateDocs(t *testing.T) map[string]map[string]any {
	t.Helper()
	raw, err := os.ReadFile("rotation.asl.json")
	require.NoError(t, err)
	var def struct {
		States map[string]map[string]any `json:"States"`
	}
	require.NoError(t, json.Unmarshal(raw, &def))
	states := map[string]map[string]any{}
	for name, s := range def.States {
		states[name] = s
		if processor, ok := s["ItemProcessor"].(map[string]any); ok {
			inner, _ := processor["States"].(map[string]any)
			for innerName, is := range inner {
				states[name+"/"+innerName], _ = is.(map[string]any)
			}
		}
	}
	return states
}

// widestTarget is a workspace as Validate plans it, every field at the longest value it takes.
func widestTarget(i int) rotation.WorkspaceTarget {
	return rotation.WorkspaceTarget{
		WorkspaceID: fmt.Sprintf("%019d", 1000000000000000000+i), WorkspaceName: strings.Repeat("w", 100), DeploymentName: strings.Repeat("d", 64),
		Region: "ap-southeast-4", PreviousManagedKeyID: "0000aaaa-12ab-34cd-56ef-1234567890ab",
		PreviousManagedKeyARN: "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/0000aaaa-12ab-34cd-56ef-1234567890ab",
		PreviousStorageKeyID:  "1111bbbb-12ab-34cd-56ef-1234567890ab", AddsStorageKey: true, AlreadyOnKey: true,
	}
}

func sizeOf(t *testing.T, doc any) int {
	t.Helper()
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	return len(b)
}

// asDoc round-trips v through JSON, as Step Functions sees a task's result.
func asDoc(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var doc any
	require.NoError(t, json.Unmarshal(b, &doc))
	return doc
}

// Issue 11: one request carries rotation.MaxWorkspacesPerRequest workspaces. This builds the
// request's top-level state at its largest points, at the cap, every workspace at its worst: the
// state that awaits an approval (the plan made for it and every workspace's counts), the state the
// rotation starts from (PrepareRotation: the plan and the targets), the state after
// Validate on a request that waited (the compact baseline beside the plan) and the state after
// DescribeOutcome when every workspace failed (results, lock, collected outcomes, released locks
// and the failure cause the real report task writes). Each must stay under the 256 KiB quota.
func TestTheRequestStateAtTheCapStaysUnderThePayloadQuota(t *testing.T) {
	const n = rotation.MaxWorkspacesPerRequest
	states := requestStateDocs(t)
	worst := worstIteration(t)

	plan := rotation.Plan{KeyARN: "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", KeyRegion: "us-gov-west-1",
		UseCases: []string{"MANAGED_SERVICES", "STORAGE"}, ReuseKeyForClusterVolumes: true, ExistingKeyConfigID: "2222cccc-12ab-34cd-56ef-1234567890ab",
		QuietWindowSeconds: 3600, MaxConcurrency: 40, KeyAlias: "alias/" + strings.Repeat("a", 250)}
	ids := make([]string, n)
	for i := range n {
		plan.Workspaces = append(plan.Workspaces, widestTarget(i))
		ids[i] = plan.Workspaces[i].WorkspaceID
	}
	input := map[string]any{"workspace_ids": ids, "key_arn": plan.KeyARN, "use_cases": plan.UseCases}
	lock := asDoc(t, wslock.Lock{Owner: strings.Repeat("e", 80), WorkspaceIDs: ids, ExpiresAt: time.Now()})
	policyOut := asDoc(t, policy.TaskOutput{Decision: policy.Decision{Rules: []string{strings.Repeat("r", 64)}, Mode: "approval"},
		BudgetSeconds: 16800, WaitUntil: time.Now().Format(time.RFC3339), WindowCloses: time.Now().Format(time.RFC3339), Message: strings.Repeat("m", 300)})
	keyConfig := asDoc(t, rotation.KeyConfig{KeyConfigID: "3333dddd-12ab-34cd-56ef-1234567890ab", Created: true})

	// After Validate, on a request that waited: the execution input is still the state's base.
	afterValidate := map[string]any{"policy": policyOut, "baseline": asDoc(t, policy.Baseline(plan)), "lock": lock, "plan": asDoc(t, plan)}
	for k, v := range input {
		afterValidate[k] = v
	}

	// Before the lock, awaiting approval: the baseline plan and every workspace's approval item.
	approvalItem := evalParameters(t, states["InventoryForApproval/ApprovalPlanned"]["Parameters"].(map[string]any), worst)
	inventories := make([]any, n)
	for i := range inventories {
		inventories[i] = approvalItem
	}
	awaitingApproval := map[string]any{"policy": policyOut, "baseline": asDoc(t, plan), "approval_inventories": inventories,
		"Payload": map[string]any{"policy": policyOut}}
	for k, v := range input {
		awaitingApproval[k] = v
	}

	prepared := evalParameters(t, states["PrepareRotation"]["Parameters"].(map[string]any),
		map[string]any{"plan": asDoc(t, plan), "key_config": keyConfig, "lock": lock})
	require.Len(t, prepared["targets"], n, "PrepareRotation hands the plan's workspaces to the Map as $.targets")

	// The largest item the Map can write per workspace: each end of the child through the
	// ResultSelector, and ChildFailed.
	rotate := states["RotateWorkspaces/RotateWorkspace"]
	var item map[string]any
	for _, out := range childEndOutputs(t, rotate, worst) {
		candidate := evalParameters(t, rotate["ResultSelector"].(map[string]any), map[string]any{"Output": out.output})
		if item == nil || sizeOf(t, candidate) > sizeOf(t, item) {
			item = candidate
		}
	}
	failedRun := map[string]any{"workspace": worst["workspace"], "error": map[string]any{"Error": "States.TaskFailed", "Cause": strings.Repeat("c", 32768)}}
	if childFailed := evalParameters(t, states["RotateWorkspaces/ChildFailed"]["Parameters"].(map[string]any), failedRun); sizeOf(t, childFailed) > sizeOf(t, item) {
		item = childFailed
	}
	results := make([]any, n)
	raws := make([]json.RawMessage, n)
	outcomes, patched := make([]any, n), make([]any, n)
	for i := range n {
		one := map[string]any{}
		for k, v := range item {
			one[k] = v
		}
		one["workspace_id"] = ids[i]
		results[i] = one
		raws[i], _ = json.Marshal(one)
		outcomes[i], patched[i] = one["outcome"], true
	}
	described, err := report.Task{}.Handle(context.Background(), report.Input{Kind: report.KindSummary, Results: raws})
	require.NoError(t, err)
	require.NotEmpty(t, described.Cause)
	afterDescribe := evalParameters(t, map[string]any{"plan.$": "$.plan", "key_config.$": "$.key_config", "lock.$": "$.lock"}, prepared)
	afterDescribe["results"] = results
	afterDescribe["collected"] = map[string]any{"outcomes": outcomes, "patched": patched}
	afterDescribe["summary"] = map[string]any{"execution": strings.Repeat("e", 80), "key_arn": plan.KeyARN, "key_config_id": "3333dddd-12ab-34cd-56ef-1234567890ab",
		"any_failed": true, "any_rotated": false, "any_compute_down": true, "any_patched": true}
	afterDescribe["reminder"] = map[string]any{"ExecutionArn": "arn:aws-us-gov:states:us-gov-west-1:111122223333:execution:" + strings.Repeat("x", 80) + ":retire-" + strings.Repeat("h", 64), "StartDate": 1.8e12}
	afterDescribe["released"] = asDoc(t, wslock.Released{Released: ids})
	afterDescribe["outcome"] = asDoc(t, described)

	for _, c := range []struct {
		name string
		doc  any
	}{{"awaiting approval", awaitingApproval}, {"after Validate, having waited", afterValidate}, {"PrepareRotation", prepared}, {"after DescribeOutcome, every workspace failed", afterDescribe}} {
		size := sizeOf(t, c.doc)
		t.Logf("%s at %d workspaces: %d bytes of %d (item %d B, cause %d B)", c.name, n, size, payloadQuota, sizeOf(t, item), len(described.Cause))
		assert.Less(t, size, payloadQuota, "%s: the request's state at the cap exceeds the payload quota", c.name)
	}
}
