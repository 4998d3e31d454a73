package report_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// stateLimit is Step Functions' payload limit for a state's input and output; exceeding it raises
// States.DataLimitExceeded, which no Catch can handle.
const stateLimit = 256 << 10

// largestInlineInventory fills an inventory up to invstore's inline limit: anything larger travels
// by reference.
func largestInlineInventory(t *testing.T) *rotation.Inventory {
	inv := &rotation.Inventory{WorkspaceID: "1234567890123456", TakenAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	for i := 0; ; i++ {
		c := rotation.ClusterRef{ID: fmt.Sprintf("1126-%06d-abcdefgh", i), Name: strings.Repeat("n", 90) + fmt.Sprint(i), Source: "UI", State: "RUNNING"}
		inv.Clusters = append(inv.Clusters, c)
		b, err := json.Marshal(inv)
		require.NoError(t, err)
		if len(b) > invstore.DefaultInlineLimit {
			inv.Clusters = inv.Clusters[:len(inv.Clusters)-1]
			break
		}
	}
	inv.Counts = rotation.CountOf(*inv)
	return inv
}

// stillDown is rotation.MaxFailuresListed entries whose reasons are a long Databricks state message.
func stillDown(inv *rotation.Inventory) *rotation.ComputeStatus {
	st := &rotation.ComputeStatus{Done: true, StillDownCount: 5000}
	for i := 0; i < rotation.MaxFailuresListed; i++ {
		c := inv.Clusters[i%len(inv.Clusters)]
		st.StillDown = append(st.StillDown, rotation.ResourceRef{Kind: "cluster", ID: c.ID, Name: c.Name, State: "TERMINATED",
			Reason: "CLOUD_PROVIDER_LAUNCH_FAILURE: " + strings.Repeat("The instance could not be launched. ", 6)})
	}
	return st
}

// stateAfter is the state a Task state leaves with ResultPath $.report: the run plus the report.
func stateAfter(t *testing.T, run *rotation.WorkspaceRun, r rotation.Report) int {
	b, err := json.Marshal(run)
	require.NoError(t, err)
	var state map[string]any
	require.NoError(t, json.Unmarshal(b, &state))
	state["report"] = r
	out, err := json.Marshal(state)
	require.NoError(t, err)
	return len(out)
}

// Issue 9, item 3: every state a report step produces stays under the payload limit at the worst
// case (reproduced before: 276,109 bytes after BuildFailureReport), and the Map result of a dry run
// does not grow with the inventories of its workspaces.
func TestEveryReportStateStaysUnderThePayloadLimitAtTheWorstCase(t *testing.T) {
	ctx := context.Background()
	inv := largestInlineInventory(t)
	base := func() *rotation.WorkspaceRun {
		return &rotation.WorkspaceRun{
			Workspace: rotation.WorkspaceTarget{WorkspaceID: "1234567890123456", WorkspaceName: strings.Repeat("w", 100),
				PreviousManagedKeyID: "old-cfg", PreviousManagedKeyARN: "arn:aws:kms:us-west-2:111122223333:key/0000aaaa-12ab-34cd-56ef-1234567890ab"},
			KeyConfigID: "new-cfg", KeyARN: "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
			UseCases: []string{"MANAGED_SERVICES"}, Execution: strings.Repeat("e", 80), Inventory: inv,
		}
	}

	t.Run("after BuildFailureReport with a 64 KiB inline inventory and 200 still-down entries", func(t *testing.T) {
		run := base()
		run.Stop = &rotation.StopResult{}
		run.Patch = &rotation.PatchResult{}
		run.Restart = &rotation.RestartResult{}
		run.RestartStatus = stillDown(inv)
		run.Error = &rotation.StepError{Error: "RestartTimedOut", Cause: strings.Repeat("c", 2000)}
		out, err := report.Task{}.Handle(ctx, report.Input{Kind: report.KindFailed, Run: run})
		require.NoError(t, err)
		size := stateAfter(t, run, out)
		t.Logf("state after BuildFailureReport: %d bytes", size)
		assert.Less(t, size, stateLimit)
		d := out.Detail.(report.Detail)
		assert.Equal(t, 5000, d.StillDownCount, "the count stays exact")
		require.NotNil(t, d.Inventory)
		assert.Equal(t, inv.Counts, d.Inventory.Counts, "the inventory's counts always travel")
	})
	t.Run("after BuildFailureReport with every status list of the run full", func(t *testing.T) {
		// The stop, quiet window and restart statuses all stay in the state until the report:
		// each with its progress lists full (MaxListed entries each, 100-character names), the
		// restart's with MaxFailuresListed still-down entries whose reasons are at compute's clip.
		full := func(stillDown bool) *rotation.ComputeStatus {
			st := &rotation.ComputeStatus{Done: true, PendingCount: 5000, StillDownCount: 5000}
			for i := 0; i < rotation.MaxListed; i++ {
				r := rotation.ResourceRef{Kind: "warehouse", ID: fmt.Sprintf("%032d", i), Name: strings.Repeat("n", 100), State: "STOPPING"}
				st.Pending, st.LateStopped, st.StoppedAgain = append(st.Pending, r), append(st.LateStopped, r), append(st.StoppedAgain, r)
			}
			if stillDown {
				for i := 0; i < rotation.MaxFailuresListed; i++ {
					st.StillDown = append(st.StillDown, rotation.ResourceRef{Kind: "warehouse", ID: fmt.Sprintf("%032d", i),
						Name: strings.Repeat("n", 100), State: "STOPPED", Reason: strings.Repeat("r", 256+3)})
				}
			}
			return st
		}
		run := base()
		run.Stop, run.Patch, run.Restart = &rotation.StopResult{}, &rotation.PatchResult{}, &rotation.RestartResult{}
		run.StopStatus, run.QuietStatus, run.RestartStatus = full(false), full(false), full(true)
		// Both causes at the boundary's cap (taskerr.MaxReason).
		run.Error = &rotation.StepError{Error: "RestartTimedOut", Cause: strings.Repeat("c", taskerr.MaxReason+len(" [clipped]"))}
		run.CompensationError = run.Error
		out, err := report.Task{}.Handle(ctx, report.Input{Kind: report.KindFailed, Run: run})
		require.NoError(t, err)
		size := stateAfter(t, run, out)
		t.Logf("state after BuildFailureReport with every list full: %d bytes", size)
		assert.Less(t, size, stateLimit)
	})
	t.Run("after BuildSuccessReport with 200 still-down entries", func(t *testing.T) {
		run := base()
		run.Stop, run.Patch, run.Restart = &rotation.StopResult{}, &rotation.PatchResult{}, &rotation.RestartResult{}
		run.RestartStatus = stillDown(inv)
		out, err := report.Task{}.Handle(ctx, report.Input{Kind: report.KindSucceeded, Run: run})
		require.NoError(t, err)
		size := stateAfter(t, run, out)
		t.Logf("state after BuildSuccessReport: %d bytes", size)
		assert.Less(t, size, stateLimit)
	})
	t.Run("a dry run of 40 workspaces with inventories at the inline limit", func(t *testing.T) {
		var results []map[string]any
		for i := 0; i < 40; i++ {
			run := base()
			run.DryRun = true
			out, err := report.Task{}.Handle(ctx, report.Input{Kind: report.KindPlan, Run: run})
			require.NoError(t, err)
			size := stateAfter(t, run, out)
			require.Less(t, size, stateLimit, "state after BuildPlanReport")
			// The Planned state's output (statemachine/rotation.asl.json): what the Map collects.
			results = append(results, map[string]any{"workspace_id": run.Workspace.WorkspaceID, "outcome": "PLANNED", "plan": out.Plan})
		}
		b, err := json.Marshal(map[string]any{"dry_run": true, "results": results})
		require.NoError(t, err)
		t.Logf("PlanDone output for 40 workspaces: %d bytes", len(b))
		assert.Less(t, len(b), stateLimit)
	})
}
