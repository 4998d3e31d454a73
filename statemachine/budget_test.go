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

	"github.com/acme/databricks-cmk-rotator/internal/compute"
	"github.com/acme/databricks-cmk-rotator/internal/wslock"
	"github.com/acme/databricks-cmk-rotator/internal/wsupdate"
)

// nonBudgetedSteps bounds what one workspace spends outside the stop, update, quiet-window and
// start budgets: LockWorkspaces, Validate, RegisterKeyConfig, the inventory, the reports and the
// publishes, with their retries (each a few seconds unless a service is down).
const nonBudgetedSteps = 20 * time.Minute

// TestTheExecutionTimeoutHoldsTheWorstCaseOfOneWorkspaceAndTheLockLeaseOutlastsIt derives the
// rotation state machine's TimeoutSeconds from the budgets it must hold: a workspace that uses every
// budget to the end (stop, storage update, the largest quiet window the template accepts, restart,
// then compensation) must still end inside the execution, or the execution times out with compute
// down and only the rescue to say so. And the workspace lock's lease must outlast the execution, or
// a second rotation could start on a workspace the first still has down.
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

	worst := compute.DefaultSettings.StopBudget +
		wsupdate.DefaultSettings.StorageBudget + // the longer of the two update budgets
		time.Duration(maxQuiet)*time.Second +
		compute.DefaultSettings.StartBudget + // restart
		compute.DefaultSettings.StartBudget + // compensation, when the restart check failed
		nonBudgetedSteps
	require.GreaterOrEqual(t, wsupdate.DefaultSettings.StorageBudget, wsupdate.DefaultSettings.ManagedServicesBudget)
	t.Logf("worst case of one workspace %s, execution timeout %s, lock lease %s", worst, timeout, wslock.DefaultLease)
	assert.LessOrEqual(t, worst, timeout,
		"one workspace can need %s but the execution times out after %s: lower StorageQuietWindowSeconds' MaxValue or raise TimeoutSeconds (and the lock lease)", worst, timeout)
	assert.Greater(t, wslock.DefaultLease, timeout, "the lock lease must outlast the execution")
}
