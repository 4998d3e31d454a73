//go:build bench

package bench

// Issue 11: one child execution per workspace. `make bench` records the figures of one request of
// 200 workspaces (how many rotated, its wall time, its history and its largest state) and the
// largest history of one workspace's execution.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	computebudget "github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/polling"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/validate"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wsupdate"
)

// historyQuota is the most events one Step Functions execution may hold.
const historyQuota = 25000

// checksWithin is how many checks a wait loop makes when the thing it waits for never comes: the
// waits of the schedule add up until they reach the budget.
func checksWithin(s polling.Schedule, budget time.Duration) int {
	n, waited := 0, 0
	for waited < int(budget/time.Second) {
		waited += s.After(n)
		n++
	}
	return n
}

// benchHistoryPerWorkspace counts, over statemachine/workspace-rotation.asl.json, the history of
// one workspace's execution at the budget limits: every state once (the straight path and every
// side path), plus every wait loop running to its budget (stop, storage update and its
// PROVISIONING grace, the longest quiet window, restart, compensation), nine events per check
// (WaitStateEntered/Exited, TaskStateEntered, LambdaFunctionScheduled/Started/Succeeded,
// TaskStateExited, ChoiceStateEntered/Exited). Retries are not counted: a retry of a check adds
// three events, and retries are rare and capped per task.
func benchHistoryPerWorkspace(t *testing.T, env *environment, rep *report) {
	raw, err := os.ReadFile(filepath.Join(env.root, "statemachine", "workspace-rotation.asl.json"))
	require.NoError(t, err)
	var def struct {
		States map[string]struct{ Type string } `json:"States"`
	}
	require.NoError(t, json.Unmarshal(raw, &def))
	fixed := 2 // ExecutionStarted and its end
	for _, s := range def.States {
		if s.Type == "Task" {
			fixed += 5
		} else {
			fixed += 2
		}
	}
	const perCheck = 9
	loops := map[string]int{
		"stop":         checksWithin(polling.ComputeStop, computebudget.DefaultSettings.StopBudget),
		"update":       checksWithin(polling.WorkspaceUpdate, wsupdate.DefaultSettings.StorageBudget+wsupdate.DefaultSettings.ProvisioningGrace),
		"quiet":        checksWithin(polling.ComputeStop, validate.MaxQuietWindowSeconds*time.Second),
		"restart":      checksWithin(polling.ComputeStart, computebudget.DefaultSettings.StartBudget),
		"compensation": checksWithin(polling.ComputeStart, computebudget.DefaultSettings.StartBudget),
	}
	total := fixed
	for _, n := range loops {
		total += n * perCheck
	}
	rep.figure("history_events_per_workspace_max", float64(total), "events", 0, atMost(historyQuota/4))
	t.Logf("fixed %d events; checks per loop %v; %d events of %d (%.1f %%)", fixed, loops, total, historyQuota, 100*float64(total)/historyQuota)
}

// benchWorkspaces200 rotates 200 workspaces in one request (rotation.MaxWorkspacesPerRequest): 200
// child executions through the real engine, with the scenarios' scaled latencies (one Databricks
// minute lasts 20 ms, transitions land at random moments between checks, Waits shortened to 20 ms).
func benchWorkspaces200(t *testing.T, env *environment, rep *report) {
	const n, concurrency = 200, 10
	require.GreaterOrEqual(t, rotation.MaxWorkspacesPerRequest, n, "one request holds the 200 workspaces")
	ctx := t.Context()
	opts := rig.Options{RepoRoot: env.root, BuildDir: env.localDir, Seed: rig.DemoSeed(rig.DefaultRegion), ClientSecret: "bench-client-secret",
		Fake:        dbfake.Options{Realistic: &dbfake.RealisticTime{Minute: 20 * time.Millisecond, Seed: 11}},
		FunctionEnv: map[string]string{"MAX_CONCURRENT_WORKSPACES": strconv.Itoa(concurrency)}, Instances: 6}
	withWorkspaces(n)(&opts)
	r, err := rig.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	require.NoError(t, r.PrepareFixtureKeys(ctx))

	ids := manyIDs(n)
	input, err := json.Marshal(map[string]any{"workspace_ids": ids, "key_arn": r.KeyARN(rig.AliasTargetKeyID)})
	require.NoError(t, err)
	started := time.Now()
	arn, err := r.StartExecution(ctx, "", input)
	require.NoError(t, err)
	exec := r.AWS.WaitExecution(ctx, arn)
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	wall := time.Since(started)

	rotated, largest := 0, 0
	for i := 1; i <= n; i++ {
		if r.Fake.Workspace(manyID(i)).ManagedServicesCustomerManagedKeyId != rig.OldKeyConfigID &&
			r.Fake.Cluster(manyID(i), fmt.Sprintf("c-%02d-a", i)).State == compute.StateRunning &&
			r.Fake.Cluster(manyID(i), fmt.Sprintf("c-%02d-b", i)).State == compute.StateRunning {
			rotated++
		}
	}
	children := r.Children(arn)
	for _, c := range children {
		largest = max(largest, len(r.AWS.History(c.ExecutionArn)))
	}
	largestState := 0
	for _, ev := range r.Timeline(arn) {
		largestState = max(largestState, len(ev.Input), len(ev.Output))
	}
	rep.figure("workspaces_200_rotated", float64(rotated), "count", 0, atLeast(n))
	rep.figure("workspaces_200_s", wall.Seconds(), "s", 1, goal{})
	rep.figure("workspaces_200_request_history_events", float64(len(r.AWS.History(arn))), "events", 0, atMost(historyQuota))
	rep.figure("workspaces_200_request_largest_state_kib", float64(largestState)/1024, "KiB", 1, atMost(256))
	t.Logf("1 request, %d children, request history %d events, largest child history %d events, largest request state %d B, concurrency %d",
		len(children), len(r.AWS.History(arn)), largest, largestState, concurrency)
}
