package compute_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	computetask "github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// stepFunctionsPayloadLimit is the Step Functions quota for a state's input or output.
const stepFunctionsPayloadLimit = 256 << 10

type size struct{ clusters, warehouses, pools int }

// fullSize is the large workspace; the reduced size keeps the whole stop/restart quick
// enough for every CI run (make bench runs the full size end to end).
var (
	fullSize    = size{clusters: 5000, warehouses: 1000, pools: 500}
	reducedSize = size{clusters: 600, warehouses: 120, pools: 60}
)

func seedLarge(t testing.TB, fake *dbfake.Server, ws int64, sz size) {
	faketest.Workspace(fake, ws, "huge")
	for i := range sz.pools {
		fake.AddPool(ws, compute.InstancePoolAndStats{InstancePoolId: fmt.Sprintf("pool-%04d", i), InstancePoolName: fmt.Sprintf("team-%04d-general-purpose", i),
			NodeTypeId: "i3.xlarge", MinIdleInstances: 1 + i%3, IdleInstanceAutoterminationMinutes: 15, MaxCapacity: 50, CustomTags: map[string]string{"team": strconv.Itoa(i)}})
	}
	for i := range sz.clusters {
		source := compute.ClusterSourceUi
		if i%5 == 0 {
			source = compute.ClusterSourceJob
		}
		fake.AddCluster(ws, compute.ClusterDetails{ClusterId: fmt.Sprintf("0101-120000-%08d", i), ClusterName: fmt.Sprintf("analytics-team-%04d-interactive", i),
			State: compute.StateRunning, ClusterSource: source, InstancePoolId: fmt.Sprintf("pool-%04d", i%max(1, sz.pools))})
	}
	for i := range sz.warehouses {
		fake.AddWarehouse(ws, sql.EndpointInfo{Id: fmt.Sprintf("wh%014d", i), Name: fmt.Sprintf("bi-warehouse-%04d", i), State: sql.StateRunning})
	}
}

func newStore(t testing.TB) (*invstore.Store, *awsfake.Server) {
	srv, err := awsfake.Start(awsfake.Config{Region: "us-west-2"})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	srv.CreateBucket("inventories")
	client := s3.New(s3.Options{Region: "us-west-2", BaseEndpoint: aws.String(srv.URL()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("x", "y", "")})
	return &invstore.Store{S3: client, Bucket: "inventories"}, srv
}

func stateSize(t testing.TB, run rotation.WorkspaceRun) int {
	doc, err := json.Marshal(run)
	require.NoError(t, err)
	return len(doc)
}

func TestAFullSizeInventoryIsKeptByReferenceBecauseInlineItWouldNotFit(t *testing.T) {
	fake := faketest.Start(t, dbfake.Options{PageSize: 100})
	seedLarge(t, fake, 7001, fullSize)
	store, s3srv := newStore(t)
	tasks := &computetask.Tasks{Clients: faketest.Factory(fake), Settings: computetask.DefaultSettings, Store: store}
	run := rotation.WorkspaceRun{Workspace: rotation.WorkspaceTarget{WorkspaceID: "7001", DeploymentName: "huge"}, Execution: "exec-huge"}

	inv, err := tasks.Inventory(context.Background(), run)
	require.NoError(t, err)
	require.NotEmpty(t, inv.Ref, "the inventory is stored by reference")
	assert.Equal(t, rotation.Counts{Clusters: fullSize.clusters, Pools: fullSize.pools, Warehouses: fullSize.warehouses}, inv.Counts)
	run.Inventory = &inv
	assert.Less(t, stateSize(t, run), 4<<10, "the state carries counts and a reference, not the lists")

	stored, ok := s3srv.Object("inventories", "inventories/exec-huge/7001.json")
	require.True(t, ok)
	assert.Greater(t, len(stored), stepFunctionsPayloadLimit, "inline, this inventory alone would exceed the Step Functions payload limit")
	full, err := store.Load(context.Background(), inv)
	require.NoError(t, err)
	assert.Len(t, full.Clusters, fullSize.clusters)
	t.Logf("inventory of %d clusters, %d warehouses, %d pools: %d bytes in S3, %d bytes in the state", fullSize.clusters, fullSize.warehouses, fullSize.pools, len(stored), stateSize(t, run))
}

// TestALargeWorkspaceStopsAndRestartsThroughContinuationsWithinThePayloadLimit runs the whole
// compute cycle on a large workspace with a task time so short that every task must continue
// several times, checking after every step that the state stays within the payload limit.
func TestALargeWorkspaceStopsAndRestartsThroughContinuationsWithinThePayloadLimit(t *testing.T) {
	sz := reducedSize
	if os.Getenv("ROTATOR_FULL_SCALE") == "1" {
		sz = fullSize
	}
	// A little latency per call, as a real API has, so that the short task time runs out mid-way.
	fake := faketest.Start(t, dbfake.Options{PageSize: 100, Latency: 3 * time.Millisecond})
	seedLarge(t, fake, 7002, sz)
	store, _ := newStore(t)
	store.InlineLimit = 16 << 10
	tasks := &computetask.Tasks{Clients: faketest.Factory(fake), Store: store,
		Settings: computetask.Settings{Workers: 8, StopBudget: time.Hour, StartBudget: time.Hour, TaskTime: 100 * time.Millisecond}}
	ctx := context.Background()
	run := rotation.WorkspaceRun{Workspace: rotation.WorkspaceTarget{WorkspaceID: "7002", DeploymentName: "huge"}, Execution: "exec-large"}
	check := func(step string) {
		t.Helper()
		n := stateSize(t, run)
		require.Less(t, n, stepFunctionsPayloadLimit, "state after %s is %d bytes", step, n)
	}

	inv, err := tasks.Inventory(ctx, run)
	require.NoError(t, err)
	run.Inventory = &inv
	check("inventory")

	invocations := 0
	for {
		stop, err := tasks.Stop(ctx, run)
		require.NoError(t, err)
		run.Stop = &stop
		invocations++
		check("stop")
		if !stop.More {
			break
		}
		require.Less(t, invocations, 1000, "the stop never finishes")
	}
	assert.Greater(t, invocations, 1, "a short task time forces continuations")
	status, err := tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: run})
	require.NoError(t, err)
	run.StopStatus = &status
	check("stop check")
	require.True(t, status.Done, "still running: %d", status.PendingCount)

	restarts := 0
	for {
		restart, err := tasks.Restart(ctx, run)
		require.NoError(t, err)
		run.Restart = &restart
		restarts++
		check("restart")
		if !restart.More {
			break
		}
		require.Less(t, restarts, 1000, "the restart never finishes")
	}
	assert.Greater(t, restarts, 1)
	assert.Equal(t, sz.clusters-sz.clusters/5, run.Restart.Started.Clusters, "every interactive cluster, each once")
	assert.Equal(t, sz.clusters/5, run.Restart.NotRestartableCount, "every job cluster is reported")
	assert.LessOrEqual(t, len(run.Restart.NotRestartable), rotation.MaxListed)

	status, err = tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetRunning, Run: run})
	require.NoError(t, err)
	run.RestartStatus = &status
	check("restart check")
	assert.True(t, status.Done)
	assert.Zero(t, status.StillDownCount)

	starts := 0
	for _, r := range fake.Requests() {
		if r.Method == "POST" && r.Path == "/api/2.1/clusters/start" {
			starts++
		}
	}
	assert.Equal(t, sz.clusters-sz.clusters/5, starts, "continuations start no cluster twice")
	for i := range sz.pools {
		p := fake.Pool(7002, fmt.Sprintf("pool-%04d", i))
		require.Equal(t, 1+i%3, p.MinIdleInstances, "pool %d restored exactly", i)
		require.Equal(t, 15, p.IdleInstanceAutoterminationMinutes)
	}
	t.Logf("%d clusters, %d warehouses, %d pools: %d stop invocations, %d restart invocations", sz.clusters, sz.warehouses, sz.pools, invocations, restarts)
}
