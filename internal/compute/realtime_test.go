package compute_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	computetask "github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// testClock is shared by the tasks and the fake, so that a test decides exactly what a check sees
// still in transition (Databricks takes minutes to terminate or start a cluster).
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type timedFixture struct {
	*fixture
	clock *testClock
}

// newTimedFixture is newFixture on a shared clock, with transitions lasting delay.
func newTimedFixture(t *testing.T, delay time.Duration) *timedFixture {
	clock := &testClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f := newFixture(t, dbfake.Options{TransitionDelay: delay, Now: clock.Now})
	f.tasks.Clock = clock.Now
	return &timedFixture{fixture: f, clock: clock}
}

func (f *timedFixture) workspace(t *testing.T) *dbclient.Workspace {
	t.Helper()
	w, err := faketest.Factory(f.fake).Workspace(f.run.Workspace)
	require.NoError(t, err)
	return w
}

func (f *timedFixture) status(t *testing.T, target string) rotation.ComputeStatus {
	t.Helper()
	status, err := f.tasks.Status(context.Background(), rotation.ComputeStatusInput{Target: target, Run: f.run})
	require.NoError(t, err)
	switch target {
	case rotation.TargetStopped:
		f.run.StopStatus = &status
	case rotation.TargetQuiet:
		f.run.QuietStatus = &status
	case rotation.TargetRunning:
		f.run.RestartStatus = &status
	}
	return status
}

func ids(refs []rotation.ResourceRef) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Kind+" "+r.ID)
	}
	return out
}

// Defect 1: StopCompute fails on one warehouse (403) while the clusters it already terminated are
// still TERMINATING; compensation must bring them back, not count them as started and then list
// them as still down.
func TestCompensationAfterAPartialStopStartsWhatWasStillTerminating(t *testing.T) {
	f := newTimedFixture(t, 5*time.Minute)
	ctx := context.Background()
	f.fake.InjectFault(dbfake.Fault{Method: http.MethodPost, Path: `/sql/warehouses/wh-bi/stop$`, Status: http.StatusForbidden,
		Message: "User is not authorized to stop this warehouse"})
	inv, err := f.tasks.Inventory(ctx, f.run)
	require.NoError(t, err)
	f.run.Inventory = &inv
	_, err = f.tasks.Stop(ctx, f.run)
	require.Error(t, err, "the warehouse stop is refused")
	require.Equal(t, compute.StateTerminating, f.fake.Cluster(wsID, "c-ui").State, "precondition: compensation begins while the clusters terminate")

	// Compensate, with no $.stop (the ASL catches StopCompute's error).
	f.clock.Advance(time.Minute)
	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	f.run.Restart = &restart
	assert.Equal(t, 3, restart.Settling, "c-ui and c-api are still TERMINATING, p-stream STOPPING: settling, not started")
	assert.Zero(t, restart.Started.Clusters, "nothing TERMINATING is counted as started")
	assert.Equal(t, 1, restart.Started.Warehouses, "wh-bi never stopped: it is up")

	status := f.status(t, rotation.TargetRunning)
	assert.False(t, status.Done)
	assert.Empty(t, status.StillDown)
	assert.Subset(t, ids(status.Pending), []string{"cluster c-ui", "cluster c-api"})

	// The clusters settle (TERMINATED): the check starts them and keeps them pending.
	f.clock.Advance(5 * time.Minute)
	status = f.status(t, rotation.TargetRunning)
	assert.False(t, status.Done)
	assert.Empty(t, status.StillDown, "a cluster that has not had its start is pending, not still down")
	require.NotNil(t, status.StartedLater)
	assert.Equal(t, 2, status.StartedLater.Clusters)
	assert.Equal(t, compute.StatePending, f.fake.Cluster(wsID, "c-ui").State)

	f.clock.Advance(5 * time.Minute)
	status = f.status(t, rotation.TargetRunning)
	assert.True(t, status.Done, "pending: %+v", status.Pending)
	assert.Empty(t, status.StillDown)
	assert.Equal(t, 2, status.StartedLater.Clusters, "carried across checks for the report")
	for _, id := range []string{"c-ui", "c-api"} {
		assert.Equal(t, compute.StateRunning, f.fake.Cluster(wsID, id).State, id)
	}
	assert.Equal(t, 2, countRequests(f.fake, http.MethodPost, "/clusters/start"), "each cluster is started once")
}

// Defect 1, warehouses and pipelines: STOPPING at compensation time is not "up".
func TestCompensationStartsAWarehouseAndAPipelineThatWereStillStopping(t *testing.T) {
	f := newTimedFixture(t, 5*time.Minute)
	ctx := context.Background()
	f.stopAll(t, ctx)
	require.Equal(t, sql.StateStopping, f.fake.Warehouse(wsID, "wh-bi").State)
	f.run.Stop = nil

	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	f.run.Restart = &restart
	assert.Equal(t, 4, restart.Settling, "c-ui, c-api, wh-bi and p-stream are still stopping")
	f.clock.Advance(6 * time.Minute)
	status := f.status(t, rotation.TargetRunning)
	require.NotNil(t, status.StartedLater)
	assert.Equal(t, rotation.Counts{Clusters: 2, Warehouses: 1, Pipelines: 1}, *status.StartedLater)
	f.clock.Advance(6 * time.Minute)
	status = f.status(t, rotation.TargetRunning)
	assert.True(t, status.Done, "pending: %+v", status.Pending)
	assert.Empty(t, status.StillDown)
	assert.Equal(t, sql.StateRunning, f.fake.Warehouse(wsID, "wh-bi").State)
	assert.Equal(t, pipelines.PipelineStateRunning, f.fake.Pipeline(wsID, "p-stream").State)
}

// Defect 1: a start that fails is still reported as down, with the reason, not started again.
func TestACompensationStartThatFailsIsStillDownNotRetriedForever(t *testing.T) {
	f := newTimedFixture(t, 5*time.Minute)
	ctx := context.Background()
	f.stopAll(t, ctx)
	f.fake.FailClusterStart(wsID, "c-ui", "Could not launch: insufficient capacity")
	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	f.run.Restart = &restart
	f.clock.Advance(6 * time.Minute)
	f.status(t, rotation.TargetRunning) // starts the settled clusters
	f.clock.Advance(6 * time.Minute)
	status := f.status(t, rotation.TargetRunning)
	assert.True(t, status.Done)
	require.Equal(t, []string{"cluster c-ui"}, ids(status.StillDown))
	assert.Contains(t, status.StillDown[0].Reason, "insufficient capacity")
	assert.Equal(t, 2, countRequests(f.fake, http.MethodPost, "/clusters/start"), "the failed cluster is not started a second time")
}

// Defect 2: a user restarts an inventoried cluster and a warehouse auto-resumes during the stop
// wait. Both are stopped again, the PATCH waits for a check that finds nothing running, they are
// reported, and the restart at the end brings them back (they ran when the rotation began).
func TestTheStopCheckStopsAgainInventoriedComputeThatAUserStarted(t *testing.T) {
	f := newTimedFixture(t, 2*time.Minute)
	ctx := context.Background()
	f.stopAll(t, ctx)
	f.clock.Advance(3 * time.Minute)
	w := f.workspace(t)
	require.NoError(t, w.Clusters.StartByClusterId(ctx, "c-ui"), "a user re-attaches a notebook")
	_, err := w.Warehouses.Start(ctx, sql.StartRequest{Id: "wh-bi"})
	require.NoError(t, err, "a JDBC client resumes the warehouse")
	f.clock.Advance(3 * time.Minute)
	require.Equal(t, compute.StateRunning, f.fake.Cluster(wsID, "c-ui").State)

	status := f.status(t, rotation.TargetStopped)
	assert.False(t, status.Done, "what was just stopped again is still stopping")
	assert.ElementsMatch(t, []string{"cluster c-ui", "warehouse wh-bi"}, ids(status.StoppedAgain))
	assert.Empty(t, status.LateStopped)
	assert.Equal(t, compute.StateTerminating, f.fake.Cluster(wsID, "c-ui").State)
	assert.Equal(t, sql.StateStopping, f.fake.Warehouse(wsID, "wh-bi").State)

	f.clock.Advance(3 * time.Minute)
	status = f.status(t, rotation.TargetStopped)
	assert.True(t, status.Done, "pending: %+v", status.Pending)
	assert.Len(t, status.StoppedAgain, 2, "carried for the report")

	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	f.run.Restart = &restart
	assert.Equal(t, compute.StatePending, f.fake.Cluster(wsID, "c-ui").State, "it ran when the rotation began: restarted")
	assert.Equal(t, sql.StateStarting, f.fake.Warehouse(wsID, "wh-bi").State)
}

// Defect 2: the quiet window after a storage key change keeps checking and stopping, and ends when
// the single Wait it replaces would have.
func TestTheQuietWindowKeepsComputeStoppedForItsWholeDuration(t *testing.T) {
	f := newTimedFixture(t, time.Minute)
	ctx := context.Background()
	f.stopAll(t, ctx)
	f.clock.Advance(2 * time.Minute)
	f.run.QuietWindowSeconds = 1200
	start := f.clock.Now()

	status := f.status(t, rotation.TargetQuiet)
	assert.False(t, status.Done)
	require.NotNil(t, status.QuietUntil)
	assert.Equal(t, start.Add(20*time.Minute), *status.QuietUntil)
	assert.LessOrEqual(t, status.PollAfterSeconds, 1200)

	// A scheduled job starts a cluster, and a user starts an inventoried one, mid-window.
	f.fake.StartClusterBehindRotator(wsID, compute.ClusterDetails{ClusterId: "c-late", ClusterName: "scheduled", ClusterSource: compute.ClusterSourceJob})
	require.NoError(t, f.workspace(t).Clusters.StartByClusterId(ctx, "c-api"))
	f.clock.Advance(time.Duration(status.PollAfterSeconds) * time.Second)
	status = f.status(t, rotation.TargetQuiet)
	assert.Equal(t, []string{"cluster c-late"}, ids(status.LateStopped))
	assert.Equal(t, []string{"cluster c-api"}, ids(status.StoppedAgain))
	assert.Equal(t, compute.StateTerminating, f.fake.Cluster(wsID, "c-late").State)

	for !status.Done {
		left := status.QuietUntil.Sub(f.clock.Now())
		require.LessOrEqual(t, time.Duration(status.PollAfterSeconds)*time.Second, max(left, time.Second), "a wait never overshoots the window")
		f.clock.Advance(time.Duration(status.PollAfterSeconds) * time.Second)
		status = f.status(t, rotation.TargetQuiet)
	}
	assert.Equal(t, start.Add(20*time.Minute), f.clock.Now(), "the loop lasts exactly the quiet window")
	assert.Len(t, status.LateStopped, 1)
}

// Defect 5: unset pool fields stay unset; a zero that was set stays a set zero.
func TestAPoolIsRestoredWithItsUnsetFieldsUnset(t *testing.T) {
	f := newTimedFixture(t, 0)
	ctx := context.Background()
	f.fake.AddPool(wsID, compute.InstancePoolAndStats{InstancePoolId: "pool-default", InstancePoolName: "defaults", NodeTypeId: "i3.xlarge", MinIdleInstances: 3})
	f.fake.AddPool(wsID, compute.InstancePoolAndStats{InstancePoolId: "pool-eager", InstancePoolName: "eager", NodeTypeId: "i3.xlarge", MinIdleInstances: 1,
		IdleInstanceAutoterminationMinutes: 0, ForceSendFields: []string{"IdleInstanceAutoterminationMinutes"}})
	inv, err := f.tasks.Inventory(ctx, f.run)
	require.NoError(t, err)
	pools := map[string]rotation.PoolSettings{}
	for _, p := range inv.Pools {
		pools[p.ID] = p
	}
	require.Contains(t, pools, "pool-default")
	assert.Nil(t, pools["pool-default"].IdleInstanceAutoterminationMinutes, "unset is recorded as unset")
	assert.Nil(t, pools["pool-default"].MaxCapacity)
	require.NotNil(t, pools["pool-eager"].IdleInstanceAutoterminationMinutes)
	assert.Zero(t, *pools["pool-eager"].IdleInstanceAutoterminationMinutes)

	f.run.Inventory = &inv
	stop, err := f.tasks.Stop(ctx, f.run)
	require.NoError(t, err)
	f.run.Stop = &stop
	drained := f.fake.Pool(wsID, "pool-default")
	assert.Contains(t, drained.ForceSendFields, "IdleInstanceAutoterminationMinutes", "drained: idle instances removed at once")

	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	f.run.Restart = &restart
	back := f.fake.Pool(wsID, "pool-default")
	assert.Equal(t, 3, back.MinIdleInstances)
	assert.NotContains(t, back.ForceSendFields, "IdleInstanceAutoterminationMinutes", "restored unset: Databricks' default, not 0")
	assert.NotContains(t, back.ForceSendFields, "MaxCapacity")
	eager := f.fake.Pool(wsID, "pool-eager")
	assert.Contains(t, eager.ForceSendFields, "IdleInstanceAutoterminationMinutes", "a set 0 stays a set 0")

	status := f.status(t, rotation.TargetRunning)
	assert.True(t, status.Done, "pending: %+v", status.Pending)
	assert.Empty(t, status.StillDown)
}

// Defect 6: with 30 days of job history (20,000 terminated job clusters) and 50 running
// resources, every check lists only what runs.
func TestChecksCostCallsForWhatRunsNotForThirtyDaysOfHistory(t *testing.T) {
	// 50 running (the figure) and 250, past one page of every list: 100 continuous
	// pipelines take four pages at the API's default of 25 a page, one at its maximum of 100.
	for _, tc := range []struct{ clusters, warehouses, pipelines int }{{45, 3, 2}, {100, 50, 100}} {
		running := tc.clusters + tc.warehouses + tc.pipelines
		t.Run(strconv.Itoa(running)+"_running", func(t *testing.T) {
			checks, unfiltered := statusCheckReads(t, tc.clusters, tc.warehouses, tc.pipelines)
			goal := (running+99)/100 + 2
			t.Logf("reads per step with 20,000 terminated job clusters and %d running resources: %v (goal <= %d)", running, checks, goal)
			for step, n := range checks {
				assert.LessOrEqual(t, n, goal, step)
			}
			assert.Zero(t, unfiltered, "clusters/list is never called without filter_by")
		})
	}
}

// statusCheckReads runs a whole cycle in a workspace with 20,000 terminated job clusters in its
// 30-day list and the given running resources, and returns the most GETs each step made, and how
// many cluster lists went out without filter_by.
func statusCheckReads(t *testing.T, clusters, warehouses, pipes int) (map[string]int, int) {
	clock := &testClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	fake := faketest.Start(t, dbfake.Options{Now: clock.Now, TransitionDelay: time.Minute})
	ws := faketest.Workspace(fake, wsID, "job-heavy")
	fake.AddTerminatedJobClusters(wsID, 20000)
	for i := range clusters {
		fake.AddCluster(wsID, compute.ClusterDetails{ClusterName: "interactive-" + string(rune('a'+i%26)), ClusterSource: compute.ClusterSourceUi})
	}
	for range warehouses {
		fake.AddWarehouse(wsID, sql.EndpointInfo{Name: "bi"})
	}
	for range pipes {
		fake.AddPipeline(wsID, dbfake.PipelineSeed{Name: "stream", Continuous: true})
	}
	tasks := &computetask.Tasks{Clients: faketest.Factory(fake), Settings: computetask.Settings{Workers: 4, StopBudget: time.Hour, StartBudget: time.Hour}, Clock: clock.Now}
	run := rotation.WorkspaceRun{Workspace: rotation.WorkspaceTarget{WorkspaceID: "1001", DeploymentName: ws.DeploymentName, Region: faketest.Region}}
	ctx := context.Background()
	unfiltered := 0
	reads := func() int {
		n := 0
		for _, r := range fake.Requests() {
			if r.Method == http.MethodGet {
				n++
			}
			if r.Path == "/api/2.1/clusters/list" && !strings.Contains(r.RawQuery, "filter_by.cluster_states") {
				unfiltered++
			}
		}
		fake.ClearRequests()
		return n
	}

	inv, err := tasks.Inventory(ctx, run)
	require.NoError(t, err)
	require.Equal(t, clusters, len(inv.Clusters))
	run.Inventory = &inv
	t.Logf("inventory: %d reads", reads())
	stop, err := tasks.Stop(ctx, run)
	require.NoError(t, err)
	run.Stop = &stop
	reads()
	checks := map[string]int{}
	for range 2 {
		status, err := tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: run})
		require.NoError(t, err)
		run.StopStatus = &status
		checks["stop check"] = max(checks["stop check"], reads())
		clock.Advance(2 * time.Minute)
	}
	require.True(t, run.StopStatus.Done)
	restart, err := tasks.Restart(ctx, run)
	require.NoError(t, err)
	run.Restart = &restart
	checks["restart"] = reads()
	for range 2 {
		status, err := tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetRunning, Run: run})
		require.NoError(t, err)
		run.RestartStatus = &status
		checks["running check"] = max(checks["running check"], reads())
		clock.Advance(2 * time.Minute)
	}
	require.True(t, run.RestartStatus.Done, "pending: %+v", run.RestartStatus.Pending)
	return checks, unfiltered
}
