package statemachine

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wsupdate"
)

// nonBudgetedSteps bounds what one workspace spends outside the stop, update, quiet-window and
// start budgets: LockWorkspaces, Validate, RegisterKeyConfig, the inventory, the reports and the
// publishes, with their retries (each a few seconds unless a service is down).
const nonBudgetedSteps = 20 * time.Minute

// TestTheExecutionTimeoutHoldsTheWorstCaseOfOneWorkspaceAndTheLockLeaseOutlastsIt derives the
// rotation state machine's TimeoutSeconds from the budgets it must hold: the longest approval and
// maintenance-window waits (before any lock), then a workspace that uses every budget to the end
// (stop, storage update and its PROVISIONING grace, the largest quiet window the template accepts,
// restart, then compensation) must still end inside the execution, or the execution times out with
// compute down and only the rescue to say so. And the workspace lock's lease must outlast the part
// that holds the lock, or a second rotation could start on a workspace the first still has down.
func TestTheExecutionTimeoutHoldsTheWorstCaseOfOneWorkspaceAndTheLockLeaseOutlastsIt(t *testing.T) {
	raw, err := os.ReadFile("rotation.asl.json")
	require.NoError(t, err)
	var def struct {
		TimeoutSeconds int `json:"TimeoutSeconds"`
	}
	require.NoError(t, json.Unmarshal(raw, &def))
	require.Positive(t, def.TimeoutSeconds, "the rotation state machine has a TimeoutSeconds")
	timeout := time.Duration(def.TimeoutSeconds) * time.Second

	param, ok := loadTemplate(t).section("Parameters")["StorageQuietWindowSeconds"].(map[string]any)
	require.True(t, ok, "StorageQuietWindowSeconds is a template parameter")
	maxQuiet, err := strconv.Atoi(fmt.Sprint(param["MaxValue"]))
	require.NoError(t, err, "StorageQuietWindowSeconds has a MaxValue: an unbounded quiet window guarantees a timeout")
	def8, err := strconv.Atoi(fmt.Sprint(param["Default"]))
	require.NoError(t, err)
	assert.LessOrEqual(t, def8, maxQuiet)

	// After the lock: a workspace that uses every budget to the end.
	worst := compute.DefaultSettings.StopBudget +
		wsupdate.DefaultSettings.StorageBudget + // the longer of the two update budgets
		wsupdate.DefaultSettings.ProvisioningGrace + // an update still PROVISIONING past its budget is waited for
		time.Duration(maxQuiet)*time.Second +
		compute.DefaultSettings.StartBudget + // restart
		compute.DefaultSettings.StartBudget + // compensation, when the restart check failed
		nonBudgetedSteps
	require.GreaterOrEqual(t, wsupdate.DefaultSettings.StorageBudget, wsupdate.DefaultSettings.ManagedServicesBudget)
	// Before the lock: change control (an approval, then a maintenance window), nothing locked or stopped.
	beforeLock := policy.MaxApprovalTimeout + policy.MaxWindowWait
	// After the lock: the workspaces rotate in child executions, MaxConcurrentWorkspaces at a time, so
	// a request at the cap with the lowest concurrency the template accepts runs that many waves,
	// each as long as a child may run (its own TimeoutSeconds, derived below).
	conc, ok := loadTemplate(t).section("Parameters")["MaxConcurrentWorkspaces"].(map[string]any)
	require.True(t, ok, "MaxConcurrentWorkspaces is a template parameter")
	minConcurrency, err := strconv.Atoi(fmt.Sprint(conc["MinValue"]))
	require.NoError(t, err, "MaxConcurrentWorkspaces has a MinValue")
	waves := (rotation.MaxWorkspacesPerRequest + minConcurrency - 1) / minConcurrency
	childRaw, err := os.ReadFile("workspace-rotation.asl.json")
	require.NoError(t, err)
	var child struct {
		TimeoutSeconds int `json:"TimeoutSeconds"`
	}
	require.NoError(t, json.Unmarshal(childRaw, &child))
	afterLock := time.Duration(waves)*time.Duration(child.TimeoutSeconds)*time.Second + nonBudgetedSteps
	t.Logf("worst case of one workspace %s; %d waves of children of at most %ds after the lock (%s); %s of waits before it; execution timeout %s (%d s); lock lease %s",
		worst, waves, child.TimeoutSeconds, afterLock, beforeLock, timeout, int((beforeLock + afterLock).Seconds()), wslock.DefaultLease)
	assert.LessOrEqual(t, beforeLock+afterLock, timeout,
		"a request can need %s after %s of change-control waits, but the execution times out after %s: lower a budget or raise TimeoutSeconds",
		afterLock, beforeLock, timeout)
	assert.Less(t, timeout, beforeLock+afterLock+time.Hour, "TimeoutSeconds is derived from the budgets, with under an hour of slack")
	// A child takes its workspace's lock again (wslock.Hold extends the lease) before it stops or
	// patches anything: the lease must outlast what a workspace does from there.
	assert.Greater(t, wslock.DefaultLease, worst, "the lock lease must outlast the part of a workspace's rotation that holds the lock")
}

// TestTheWorkspaceExecutionTimeoutHoldsTheWorstCaseOfItsWorkspace derives the child state
// machine's TimeoutSeconds (one execution per workspace, started by RotateWorkspaces) from the same
// budgets: a workspace that uses every budget to the end must finish inside its own execution,
// which starts when the Map starts it (after the lock, the approval and the window), so no
// change-control wait counts here.
func TestTheWorkspaceExecutionTimeoutHoldsTheWorstCaseOfItsWorkspace(t *testing.T) {
	raw, err := os.ReadFile("workspace-rotation.asl.json")
	require.NoError(t, err)
	var def struct {
		TimeoutSeconds int `json:"TimeoutSeconds"`
	}
	require.NoError(t, json.Unmarshal(raw, &def))
	require.Positive(t, def.TimeoutSeconds, "the workspace rotation state machine has a TimeoutSeconds")
	timeout := time.Duration(def.TimeoutSeconds) * time.Second

	param, ok := loadTemplate(t).section("Parameters")["StorageQuietWindowSeconds"].(map[string]any)
	require.True(t, ok)
	maxQuiet, err := strconv.Atoi(fmt.Sprint(param["MaxValue"]))
	require.NoError(t, err)
	worst := compute.DefaultSettings.StopBudget + wsupdate.DefaultSettings.StorageBudget +
		wsupdate.DefaultSettings.ProvisioningGrace + time.Duration(maxQuiet)*time.Second +
		2*compute.DefaultSettings.StartBudget + nonBudgetedSteps
	assert.LessOrEqual(t, worst, timeout, "one workspace can need %s, but its execution times out after %s", worst, timeout)
	assert.Less(t, timeout, worst+time.Hour, "TimeoutSeconds is derived from the budgets, with under an hour of slack")
	assert.Greater(t, wslock.DefaultLease, timeout, "the lock lease must outlast a workspace's execution")
}
