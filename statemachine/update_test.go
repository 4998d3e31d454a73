package statemachine

// The workspace update's routes: what each of its typed errors leads to, and that the state
// machine's overall timeout holds the update budgets.

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wsupdate"
)

// rotationStates are the states of one workspace's rotation: the child execution that the
// rotation's RotateWorkspaces Map starts per workspace.
func rotationStates(t *testing.T) map[string]state {
	t.Helper()
	return load(t, "workspace-rotation.asl.json").States
}

// caughtBy is the state the first Catch matching errorName leads to.
func caughtBy(s state, errorName string) string {
	for _, c := range s.Catch {
		for _, e := range c.ErrorEquals {
			if e == errorName || e == "States.ALL" {
				return c.Next
			}
		}
	}
	return ""
}

func TestTheWorkspaceUpdateRoutesEachErrorWhereItBelongs(t *testing.T) {
	states := rotationStates(t)
	patch, check := states["PatchWorkspace"], states["CheckWorkspace"]

	assert.Equal(t, "StopCompute", caughtBy(patch, "ComputeStillRunning"), "compute running again is stopped again, not compensated")
	for _, r := range patch.Retry {
		assert.NotContains(t, r.ErrorEquals, "ComputeStillRunning", "a refusal goes back to stop, not into a blind retry")
	}
	assert.Equal(t, "Compensate", caughtBy(patch, "ComputeStopTimedOut"))
	assert.Equal(t, "Compensate", caughtBy(patch, "DatabricksUnavailable"))

	assert.Equal(t, "BuildFailureReport", caughtBy(check, "WorkspaceUpdateTimedOut"), "never start compute into an update still PROVISIONING")
	assert.Equal(t, "Compensate", caughtBy(check, "WorkspaceReverted"))
	assert.Equal(t, "Compensate", caughtBy(check, "WorkspaceFailed"))

	var waits []string
	for _, raw := range states["OnNewKey?"].Choices {
		var c struct{ Variable, Next string }
		require.NoError(t, json.Unmarshal(raw, &c))
		if c.Variable == "$.workspace_status.outlasted_budget" {
			waits = append(waits, c.Next)
		}
	}
	require.Equal(t, []string{"WaitForUpdateToEnd"}, waits)
	wait := states["WaitForUpdateToEnd"]
	assert.Equal(t, "Wait", wait.Type, "the wait is the state machine's, no Lambda sleeps")
	assert.Equal(t, "CheckWorkspace", wait.Next)
}

// A Choice that reads a missing path fails the execution (States.Runtime), so every field the
// update's Choices read is always in the task's output.
func TestTheFieldsTheUpdateChoicesReadAreNeverOmitted(t *testing.T) {
	tags := map[string]string{}
	typ := reflect.TypeOf(rotation.WorkspaceStat{})
	for i := range typ.NumField() {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		tags[name] = opts
	}
	for _, raw := range rotationStates(t)["OnNewKey?"].Choices {
		var c struct{ Variable string }
		require.NoError(t, json.Unmarshal(raw, &c))
		field, ok := strings.CutPrefix(c.Variable, "$.workspace_status.")
		require.True(t, ok, c.Variable)
		opts, known := tags[field]
		require.True(t, known, "%s is not a field of rotation.WorkspaceStat", field)
		assert.NotContains(t, opts, "omitempty", "%s may be omitted", field)
	}
}

// The overall timeout holds the longest path of one workspace with the default budgets: stop,
// the update budget and its PROVISIONING grace, the storage quiet window, and the restart.
func TestTheExecutionTimeoutHoldsTheUpdateBudgets(t *testing.T) {
	raw, err := os.ReadFile("workspace-rotation.asl.json")
	require.NoError(t, err)
	var d struct{ TimeoutSeconds int }
	require.NoError(t, json.Unmarshal(raw, &d))
	const quietWindow = 20 * time.Minute
	longest := compute.DefaultSettings.StopBudget +
		max(wsupdate.DefaultSettings.ManagedServicesBudget, wsupdate.DefaultSettings.StorageBudget) +
		wsupdate.DefaultSettings.ProvisioningGrace + quietWindow + compute.DefaultSettings.StartBudget
	assert.Greater(t, time.Duration(d.TimeoutSeconds)*time.Second, longest)
	assert.GreaterOrEqual(t, wsupdate.DefaultSettings.ManagedServicesBudget, 25*time.Minute,
		"Databricks documents up to ~20 minutes of PROVISIONING, for a managed services key too; the budget needs margin")
}
