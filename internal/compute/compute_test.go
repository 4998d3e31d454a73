package compute_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	computetask "github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

const wsID = int64(1001)

type fixture struct {
	fake  *dbfake.Server
	tasks *computetask.Tasks
	now   time.Time
	run   rotation.WorkspaceRun
}

// newFixture seeds a workspace with one of every kind of compute, running and not.
func newFixture(t *testing.T, opts dbfake.Options) *fixture {
	f := &fixture{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f.fake = faketest.Start(t, opts)
	ws := faketest.Workspace(f.fake, wsID, "prod-analytics")
	f.fake.AddCluster(wsID, compute.ClusterDetails{ClusterId: "c-ui", ClusterName: "etl-ui", State: compute.StateRunning, ClusterSource: compute.ClusterSourceUi, InstancePoolId: "pool-a"})
	f.fake.AddCluster(wsID, compute.ClusterDetails{ClusterId: "c-api", ClusterName: "adhoc-api", State: compute.StatePending, ClusterSource: compute.ClusterSourceApi})
	f.fake.AddCluster(wsID, compute.ClusterDetails{ClusterId: "c-job", ClusterName: "nightly-job", State: compute.StateRunning, ClusterSource: compute.ClusterSourceJob})
	f.fake.AddCluster(wsID, compute.ClusterDetails{ClusterId: "c-old", ClusterName: "old", State: compute.StateTerminated, ClusterSource: compute.ClusterSourceUi})
	f.fake.AddPool(wsID, compute.InstancePoolAndStats{InstancePoolId: "pool-a", InstancePoolName: "pool-a", NodeTypeId: "i3.xlarge",
		MinIdleInstances: 2, IdleInstanceAutoterminationMinutes: 30, MaxCapacity: 10, CustomTags: map[string]string{"team": "data"}})
	f.fake.AddPool(wsID, compute.InstancePoolAndStats{InstancePoolId: "pool-zero", InstancePoolName: "pool-zero", NodeTypeId: "i3.xlarge",
		ForceSendFields: []string{"IdleInstanceAutoterminationMinutes"}}) // idle instances removed at once: nothing to drain
	f.fake.AddWarehouse(wsID, sql.EndpointInfo{Id: "wh-bi", Name: "bi", State: sql.StateRunning})
	f.fake.AddWarehouse(wsID, sql.EndpointInfo{Id: "wh-sls", Name: "serverless", State: sql.StateRunning, EnableServerlessCompute: true})
	f.fake.AddWarehouse(wsID, sql.EndpointInfo{Id: "wh-off", Name: "off", State: sql.StateStopped})
	f.fake.AddPipeline(wsID, dbfake.PipelineSeed{PipelineID: "p-stream", Name: "stream", State: pipelines.PipelineStateRunning, Continuous: true})
	f.fake.AddPipeline(wsID, dbfake.PipelineSeed{PipelineID: "p-batch", Name: "batch", State: pipelines.PipelineStateRunning})
	f.fake.AddPipeline(wsID, dbfake.PipelineSeed{PipelineID: "p-idle", Name: "idle", State: pipelines.PipelineStateIdle})
	f.tasks = &computetask.Tasks{Clients: faketest.Factory(f.fake), Settings: computetask.Settings{Workers: 4, StopBudget: 10 * time.Minute, StartBudget: 10 * time.Minute},
		Clock: func() time.Time { return f.now }}
	f.run = rotation.WorkspaceRun{Workspace: rotation.WorkspaceTarget{WorkspaceID: "1001", DeploymentName: ws.DeploymentName, Region: faketest.Region}}
	return f
}

func countRequests(fake *dbfake.Server, method, pathSuffix string) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Method == method && len(r.Path) >= len(pathSuffix) && r.Path[len(r.Path)-len(pathSuffix):] == pathSuffix {
			n++
		}
	}
	return n
}

func (f *fixture) stopAll(t *testing.T, ctx context.Context) {
	t.Helper()
	inv, err := f.tasks.Inventory(ctx, f.run)
	require.NoError(t, err)
	f.run.Inventory = &inv
	stop, err := f.tasks.Stop(ctx, f.run)
	require.NoError(t, err)
	f.run.Stop = &stop
}

func TestInventoryRecordsRunningClassicComputeOnly(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	inv, err := f.tasks.Inventory(context.Background(), f.run)
	require.NoError(t, err)

	var clusterIDs []string
	for _, c := range inv.Clusters {
		clusterIDs = append(clusterIDs, c.ID)
	}
	assert.ElementsMatch(t, []string{"c-ui", "c-api", "c-job"}, clusterIDs, "terminated clusters are not inventoried")
	require.Len(t, inv.Pools, 1, "a pool with no idle instances and no settings to drain is left alone")
	assert.Equal(t, rotation.PoolSettings{ID: "pool-a", Name: "pool-a", NodeTypeID: "i3.xlarge", MinIdleInstances: 2,
		IdleInstanceAutoterminationMinutes: new(30), MaxCapacity: new(10), CustomTags: map[string]string{"team": "data"}}, inv.Pools[0])
	assert.Equal(t, []rotation.WarehouseRef{{ID: "wh-bi", Name: "bi"}}, inv.Warehouses, "serverless and stopped warehouses are left alone")
	assert.ElementsMatch(t, []rotation.PipelineRef{{ID: "p-stream", Name: "stream", Continuous: true}, {ID: "p-batch", Name: "batch"}}, inv.Pipelines)
}

func TestInventoryOnARetryReturnsTheFirstInventory(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	ctx := context.Background()
	f.stopAll(t, ctx)

	again, err := f.tasks.Inventory(ctx, f.run)
	require.NoError(t, err)
	assert.Equal(t, *f.run.Inventory, again, "after the stop, a fresh look would find nothing running and lose what to restart")
}

func TestStopStopsEverythingAndARetryConverges(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	ctx := context.Background()
	f.stopAll(t, ctx)

	for _, id := range []string{"c-ui", "c-api", "c-job"} {
		assert.Contains(t, []compute.State{compute.StateTerminated, compute.StateTerminating}, f.fake.Cluster(wsID, id).State, id)
	}
	pool := f.fake.Pool(wsID, "pool-a")
	assert.Zero(t, pool.MinIdleInstances)
	assert.Zero(t, pool.IdleInstanceAutoterminationMinutes)
	assert.Equal(t, "pool-a", pool.InstancePoolName, "the edit re-sends the pool's name")
	assert.Equal(t, 10, pool.MaxCapacity, "the edit keeps max capacity")
	assert.Equal(t, sql.StateStopped, f.fake.Warehouse(wsID, "wh-bi").State)
	assert.Equal(t, sql.StateRunning, f.fake.Warehouse(wsID, "wh-sls").State, "serverless warehouses keep running")
	assert.Equal(t, pipelines.PipelineStateIdle, f.fake.Pipeline(wsID, "p-stream").State)

	first := *f.run.Stop
	f.now = f.now.Add(time.Minute)
	again, err := f.tasks.Stop(ctx, f.run)
	require.NoError(t, err)
	assert.Equal(t, first.StoppedAt, again.StoppedAt, "a retry keeps the time compute went down")
	assert.Equal(t, first.Deadline, again.Deadline, "a retry does not extend the budget")

	status, err := f.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: f.run})
	require.NoError(t, err)
	assert.True(t, status.Done, "pending: %+v", status.Pending)
	assert.Empty(t, status.LateStopped)
}

func TestStopCheckStopsComputeStartedAfterTheInventory(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	ctx := context.Background()
	f.stopAll(t, ctx)
	f.fake.StartClusterBehindRotator(wsID, compute.ClusterDetails{ClusterId: "c-late", ClusterName: "scheduled-job", ClusterSource: compute.ClusterSourceJob})

	status, err := f.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: f.run})
	require.NoError(t, err)
	assert.False(t, status.Done, "the late cluster was running at the check")
	require.Len(t, status.LateStopped, 1)
	assert.Equal(t, "c-late", status.LateStopped[0].ID)
	assert.Contains(t, []compute.State{compute.StateTerminated, compute.StateTerminating}, f.fake.Cluster(wsID, "c-late").State)

	f.run.StopStatus = &status
	status, err = f.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: f.run})
	require.NoError(t, err)
	assert.True(t, status.Done)
	assert.Equal(t, 2, status.Attempt)
	assert.Len(t, status.LateStopped, 1, "late arrivals are carried across checks for the report")
}

func TestStopCheckPastItsBudgetFailsWithWhatIsStillRunning(t *testing.T) {
	f := newFixture(t, dbfake.Options{TransitionDelay: time.Hour})
	ctx := context.Background()
	f.stopAll(t, ctx)
	f.now = f.run.Stop.Deadline.Add(time.Second)

	_, err := f.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: f.run})
	var timedOut *taskerr.ComputeStopTimedOut
	require.True(t, errors.As(err, &timedOut), "got %v", err)
	assert.Contains(t, timedOut.Reason, "c-ui")
}

func TestRestartBringsBackExactlyWhatWasRunningAndARetryStartsNothingTwice(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	ctx := context.Background()
	f.stopAll(t, ctx)
	f.now = f.now.Add(3 * time.Minute)

	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	f.run.Restart = &restart
	assert.Empty(t, restart.Failed)
	var notRestarted []string
	for _, r := range restart.NotRestartable {
		notRestarted = append(notRestarted, r.ID)
	}
	assert.ElementsMatch(t, []string{"c-job", "p-batch"}, notRestarted, "job clusters and triggered pipelines are reported, not started")

	assert.Contains(t, []compute.State{compute.StatePending, compute.StateRunning}, f.fake.Cluster(wsID, "c-ui").State)
	assert.Contains(t, []compute.State{compute.StatePending, compute.StateRunning}, f.fake.Cluster(wsID, "c-api").State)
	assert.Equal(t, compute.StateTerminated, f.fake.Cluster(wsID, "c-job").State)
	assert.Equal(t, compute.StateTerminated, f.fake.Cluster(wsID, "c-old").State, "a cluster that was not running stays off")
	pool := f.fake.Pool(wsID, "pool-a")
	assert.Equal(t, 2, pool.MinIdleInstances)
	assert.Equal(t, 30, pool.IdleInstanceAutoterminationMinutes)
	assert.Equal(t, map[string]string{"team": "data"}, pool.CustomTags)
	assert.Contains(t, []sql.State{sql.StateStarting, sql.StateRunning}, f.fake.Warehouse(wsID, "wh-bi").State)
	assert.Equal(t, sql.StateStopped, f.fake.Warehouse(wsID, "wh-off").State)
	assert.Equal(t, pipelines.PipelineStateIdle, f.fake.Pipeline(wsID, "p-batch").State)

	starts := countRequests(f.fake, "POST", "/clusters/start")
	edits := countRequests(f.fake, "POST", "/instance-pools/edit")
	again, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	assert.Equal(t, starts, countRequests(f.fake, "POST", "/clusters/start"), "a retry starts no cluster twice")
	assert.Equal(t, edits, countRequests(f.fake, "POST", "/instance-pools/edit"), "a retry edits no pool twice")
	assert.Equal(t, restart.RequestedAt, again.RequestedAt)

	f.now = f.now.Add(2 * time.Minute)
	status, err := f.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetRunning, Run: f.run})
	require.NoError(t, err)
	assert.True(t, status.Done, "pending: %+v", status.Pending)
	assert.Empty(t, status.StillDown)
	assert.InDelta(t, 300, status.DowntimeSeconds, 0.001, "from the first stop to the check that saw everything back")
}

func TestACLusterThatFailsToStartIsReportedAsStillDown(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	ctx := context.Background()
	f.stopAll(t, ctx)
	f.fake.FailClusterStart(wsID, "c-ui", "Could not launch: insufficient capacity")

	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	f.run.Restart = &restart
	status, err := f.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetRunning, Run: f.run})
	require.NoError(t, err)
	assert.True(t, status.Done)
	require.Len(t, status.StillDown, 1)
	assert.Equal(t, "c-ui", status.StillDown[0].ID)
	assert.Contains(t, status.StillDown[0].Reason, "insufficient capacity")
}

// Issue 9, item 3: a still-down reason is Databricks' state message, which has no length limit; the
// list stays in the state for the rest of the run, so each reason is clipped.
func TestAStillDownReasonIsClippedForTheState(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	ctx := context.Background()
	f.stopAll(t, ctx)
	f.fake.FailClusterStart(wsID, "c-ui", "Could not launch: "+strings.Repeat("é", 5000))

	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	f.run.Restart = &restart
	status, err := f.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetRunning, Run: f.run})
	require.NoError(t, err)
	require.Len(t, status.StillDown, 1)
	reason := status.StillDown[0].Reason
	assert.LessOrEqual(t, len(reason), 512)
	assert.True(t, utf8.ValidString(reason), "cut on a rune boundary")
	assert.Contains(t, reason, "cluster did not start: ")
	assert.Contains(t, reason, "Could not launch")
}

func TestRestartAfterAPartialStopStartsOnlyWhatWasStopped(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	ctx := context.Background()
	inv, err := f.tasks.Inventory(ctx, f.run)
	require.NoError(t, err)
	f.run.Inventory = &inv
	// The stop died after terminating one cluster: compensation runs with no $.stop.
	w, err := faketest.Factory(f.fake).Workspace(f.run.Workspace)
	require.NoError(t, err)
	require.NoError(t, w.Clusters.DeleteByClusterId(ctx, "c-ui"))

	restart, err := f.tasks.Restart(ctx, f.run)
	require.NoError(t, err)
	assert.Contains(t, []compute.State{compute.StatePending, compute.StateRunning}, f.fake.Cluster(wsID, "c-ui").State)
	assert.Equal(t, 1, countRequests(f.fake, "POST", "/clusters/start"), "only the stopped cluster is started")
	assert.Empty(t, restart.Failed)
}

func TestTransientErrorsAreReturnedForStepFunctionsToRetry(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.fake.InjectFault(dbfake.Fault{Path: "/api/2.1/clusters/list", Status: 500, ErrorCode: "INTERNAL_ERROR", Message: "boom"})
	_, err := f.tasks.Inventory(context.Background(), f.run)
	require.Error(t, err)
	assert.IsType(t, &taskerr.DatabricksUnavailable{}, taskerr.AtBoundary(err))
}
