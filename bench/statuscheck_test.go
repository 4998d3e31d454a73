//go:build bench

package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	computetask "github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// statusCheckWorkspace is what runs in a workspace whose 30-day cluster list holds 20,000
// terminated job clusters: the checks must cost calls for what runs, not for that history.
type statusCheckWorkspace struct{ clusters, warehouses, pipelines int }

func (w statusCheckWorkspace) running() int { return w.clusters + w.warehouses + w.pipelines }

// goal is ⌈running ÷ 100⌉ + 2: one page of 100 per list, plus a partial page of two kinds.
func (w statusCheckWorkspace) goal() int { return (w.running()+99)/100 + 2 }

func (w statusCheckWorkspace) String() string {
	return fmt.Sprintf("%d interactive clusters, %d warehouses, %d continuous pipelines", w.clusters, w.warehouses, w.pipelines)
}

// benchStatusChecks counts the Databricks calls of each ComputeStatus check (and of RestartCompute's
// opening read) in a whole cycle run in-process against the fake, at 50 running resources (the
// issue's figure) and at 250, where every kind needs more than a default page.
func benchStatusChecks(t *testing.T, _ *environment, rep *report) {
	const title = "Calls per status check with thirty days of job history"
	rep.note(title, "**Set-up.** The real compute tasks in-process (`compute.Tasks`, 4 workers) against the Databricks fake, whose clock the benchmark advances 2 minutes between checks (transitions take 1 minute), through a whole cycle: Inventory, StopCompute, two ComputeStatus(STOPPED), RestartCompute, two ComputeStatus(RUNNING). Every request the fake served during a step is counted, whatever its method. A check lists clusters with `filter_by.cluster_states` (never the 30-day list), 100 a page, and warehouses and pipelines when the inventory holds them: pipelines with `max_results=100`, since the API pages them at 25 otherwise (100 continuous pipelines would take 4 pages, 6 calls a check against a goal of 5).")
	for _, w := range []struct {
		figure string
		ws     statusCheckWorkspace
	}{
		{"calls_per_status_check", statusCheckWorkspace{clusters: 45, warehouses: 3, pipelines: 2}},
		{"calls_per_status_check_250_running", statusCheckWorkspace{clusters: 100, warehouses: 50, pipelines: 100}},
	} {
		calls, inventory := statusCheckCalls(t, w.ws)
		worst := max(calls["stop check"], calls["running check"])
		rep.figure(w.figure, float64(worst), "count", 0, atMost(float64(w.ws.goal())))
		rep.note(title, "**`%s`**: %s running beside 20,000 terminated job clusters; the most calls of one check: stop checks %d, running checks %d (not checks: RestartCompute %d calls, its starts included; the inventory %d); goal ⌈%d ÷ 100⌉ + 2 = %d.",
			w.figure, w.ws, calls["stop check"], calls["running check"], calls["restart"], inventory, w.ws.running(), w.ws.goal())
	}
}

// statusCheckCalls returns the most calls each step made, and the inventory's calls.
func statusCheckCalls(t *testing.T, w statusCheckWorkspace) (map[string]int, int) {
	clock := &benchClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	fake := faketest.Start(t, dbfake.Options{Now: clock.Now, TransitionDelay: time.Minute})
	ws := faketest.Workspace(fake, benchWorkspace, "job-heavy")
	fake.AddTerminatedJobClusters(benchWorkspace, 20000)
	for i := range w.clusters {
		fake.AddCluster(benchWorkspace, compute.ClusterDetails{ClusterName: fmt.Sprintf("interactive-%d", i), ClusterSource: compute.ClusterSourceUi})
	}
	for i := range w.warehouses {
		fake.AddWarehouse(benchWorkspace, sql.EndpointInfo{Name: fmt.Sprintf("bi-%d", i)})
	}
	for i := range w.pipelines {
		fake.AddPipeline(benchWorkspace, dbfake.PipelineSeed{Name: fmt.Sprintf("stream-%d", i), Continuous: true})
	}
	tasks := &computetask.Tasks{Clients: faketest.Factory(fake), Clock: clock.Now,
		Settings: computetask.Settings{Workers: 4, StopBudget: time.Hour, StartBudget: time.Hour}}
	run := rotation.WorkspaceRun{Workspace: rotation.WorkspaceTarget{WorkspaceID: fmt.Sprint(benchWorkspace), DeploymentName: ws.DeploymentName, Region: faketest.Region}}
	ctx := context.Background()
	served := func() int {
		n := 0
		for _, r := range fake.Requests() {
			require.False(t, r.Path == "/api/2.1/clusters/list" && !strings.Contains(r.RawQuery, "filter_by.cluster_states"),
				"a cluster list without filter_by reads the 30-day history")
			n++
		}
		fake.ClearRequests()
		return n
	}
	inv, err := tasks.Inventory(ctx, run)
	require.NoError(t, err)
	require.Len(t, inv.Clusters, w.clusters)
	run.Inventory = &inv
	inventory := served()
	stop, err := tasks.Stop(ctx, run)
	require.NoError(t, err)
	run.Stop = &stop
	served()
	calls := map[string]int{}
	for range 2 {
		status, err := tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: run})
		require.NoError(t, err)
		run.StopStatus = &status
		calls["stop check"] = max(calls["stop check"], served())
		clock.Advance(2 * time.Minute)
	}
	require.True(t, run.StopStatus.Done, "still stopping: %+v", run.StopStatus.Pending)
	restart, err := tasks.Restart(ctx, run)
	require.NoError(t, err)
	run.Restart = &restart
	calls["restart"] = served()
	for range 2 {
		status, err := tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetRunning, Run: run})
		require.NoError(t, err)
		run.RestartStatus = &status
		calls["running check"] = max(calls["running check"], served())
		clock.Advance(2 * time.Minute)
	}
	require.True(t, run.RestartStatus.Done, "still starting: %+v", run.RestartStatus.Pending)
	return calls, inventory
}

// benchClock is shared by the tasks and the fake, so that the benchmark decides what a check sees.
type benchClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *benchClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *benchClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
