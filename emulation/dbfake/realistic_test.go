package dbfake

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// terminationTimes terminates n clusters on a fake in realistic mode and returns how long each took.
func terminationTimes(t *testing.T, seed uint64, n int) []time.Duration {
	clock := newFakeClock()
	s := startFake(t, Options{Now: clock.Now, Realistic: &RealisticTime{Minute: time.Minute, Seed: seed}})
	seedRotation(t, s)
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))
	var ids []string
	for range n {
		ids = append(ids, s.AddCluster(wsID, compute.ClusterDetails{ClusterSource: compute.ClusterSourceJob}))
	}
	for _, id := range ids {
		require.NoError(t, clusters.DeleteByClusterId(context.Background(), id))
	}
	took := make([]time.Duration, n)
	for elapsed := time.Duration(0); elapsed <= 11*time.Minute; elapsed += 15 * time.Second {
		for i, id := range ids {
			if took[i] == 0 && s.Cluster(wsID, id).State == compute.StateTerminated {
				took[i] = elapsed
			}
		}
		clock.Advance(15 * time.Second)
	}
	return took
}

func TestRealisticTimeDrawsDatabricksLatenciesReproducibly(t *testing.T) {
	first := terminationTimes(t, 7, 20)
	assert.Equal(t, first, terminationTimes(t, 7, 20), "the same seed gives the same latencies")
	assert.NotEqual(t, first, terminationTimes(t, 8, 20), "another seed gives others")
	distinct := map[time.Duration]bool{}
	for _, d := range first {
		assert.GreaterOrEqual(t, d, time.Minute, "a termination takes 1 to 10 minutes")
		assert.LessOrEqual(t, d, 10*time.Minute+15*time.Second)
		distinct[d] = true
	}
	assert.Greater(t, len(distinct), 5, "each termination lands at its own moment: %v", first)
}

func TestRealisticTimeUsersStartComputeAgainOncePerResource(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := startFake(t, Options{Now: clock.Now, Realistic: &RealisticTime{Minute: time.Minute, Seed: 1, UserRestarts: true}})
	seedRotation(t, s)
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))
	warehouses := sql.NewWarehouses(workspaceClient(t, s, wsID))
	var ids, whs []string
	for range 20 {
		ids = append(ids, s.AddCluster(wsID, compute.ClusterDetails{ClusterSource: compute.ClusterSourceUi}))
		whs = append(whs, s.AddWarehouse(wsID, sql.EndpointInfo{}))
	}
	for i := range ids {
		require.NoError(t, clusters.DeleteByClusterId(ctx, ids[i]))
		_, err := warehouses.Stop(ctx, sql.StopRequest{Id: whs[i]})
		require.NoError(t, err)
	}
	clock.Advance(13 * time.Minute)
	restarted, resumed := 0, 0
	for i := range ids {
		if s.Cluster(wsID, ids[i]).State != compute.StateTerminated {
			restarted++
		}
		if s.Warehouse(wsID, whs[i]).State != sql.StateStopped {
			resumed++
		}
	}
	assert.Greater(t, restarted, 3, "some users start their cluster again")
	assert.Less(t, restarted, 17, "not every user does")
	assert.Greater(t, resumed, 3)

	// Stopped a second time, nothing comes back: each user acts once.
	for i := range ids {
		require.NoError(t, clusters.DeleteByClusterId(ctx, ids[i]))
		_, err := warehouses.Stop(ctx, sql.StopRequest{Id: whs[i]})
		require.NoError(t, err)
	}
	clock.Advance(30 * time.Minute)
	for i := range ids {
		assert.Equal(t, compute.StateTerminated, s.Cluster(wsID, ids[i]).State)
		assert.Equal(t, sql.StateStopped, s.Warehouse(wsID, whs[i]).State)
	}
}

func TestPoolsLeaveUnsetFieldsOutOfTheirAnswersAsTheRealAPIDoes(t *testing.T) {
	s := startFake(t, Options{})
	seedRotation(t, s)
	id := s.AddPool(wsID, compute.InstancePoolAndStats{InstancePoolName: "defaults", NodeTypeId: "i3.xlarge", MinIdleInstances: 1})
	token := testToken
	header := http.Header{workspaceIDHeader: []string{"42"}}
	_, body := rawCall(t, s, http.MethodGet, "/api/2.0/instance-pools/get?instance_pool_id="+id, token, header, "")
	assert.NotContains(t, body, "idle_instance_autotermination_minutes", "unset: absent")
	assert.NotContains(t, body, "max_capacity")

	pools := compute.NewInstancePools(workspaceClient(t, s, wsID))
	require.NoError(t, pools.Edit(context.Background(), compute.EditInstancePool{InstancePoolId: id, InstancePoolName: "defaults", NodeTypeId: "i3.xlarge",
		IdleInstanceAutoterminationMinutes: 0, ForceSendFields: []string{"IdleInstanceAutoterminationMinutes"}}))
	_, body = rawCall(t, s, http.MethodGet, "/api/2.0/instance-pools/list", token, header, "")
	assert.Contains(t, body, `"idle_instance_autotermination_minutes":0`, "a zero that was set is present")
	assert.NotContains(t, body, "min_idle_instances", "left out of the edit: unset again")
}

func TestClusterListHoldsThirtyDaysOfHistoryAndFiltersByState(t *testing.T) {
	s := startFake(t, Options{})
	seedRotation(t, s)
	s.AddTerminatedJobClusters(wsID, 500)
	running := s.AddCluster(wsID, compute.ClusterDetails{ClusterSource: compute.ClusterSourceUi})
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))
	all, err := clusters.ListAll(context.Background(), compute.ListClustersRequest{})
	require.NoError(t, err)
	assert.Len(t, all, 501, "the history is listed unless filtered")
	live, err := clusters.ListAll(context.Background(), compute.ListClustersRequest{FilterBy: &compute.ListClustersFilterBy{
		ClusterStates: []compute.State{compute.StateRunning, compute.StatePending}}})
	require.NoError(t, err)
	require.Len(t, live, 1)
	assert.Equal(t, running, live[0].ClusterId)
}
