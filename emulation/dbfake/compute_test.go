package dbfake

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClusterListPaginates(t *testing.T) {
	ctx := context.Background()
	s := startFake(t, Options{PageSize: 100})
	seedRotation(t, s)
	for i := range 250 {
		st := compute.StateRunning
		if i%5 == 0 {
			st = compute.StateTerminated
		}
		s.AddCluster(wsID, compute.ClusterDetails{ClusterId: fmt.Sprintf("c-%03d", i), State: st})
	}
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))

	t.Run("the iterator returns all 250 clusters over three pages of at most 100", func(t *testing.T) {
		s.ClearRequests()
		all, err := clusters.ListAll(ctx, compute.ListClustersRequest{PageSize: 500})
		require.NoError(t, err)
		require.Len(t, all, 250)
		assert.Equal(t, "c-000", all[0].ClusterId)
		assert.Equal(t, "c-249", all[249].ClusterId)

		var pages int
		for _, r := range s.Requests() {
			if r.Path == "/api/2.1/clusters/list" {
				pages++
				assert.Equal(t, wsID, r.WorkspaceID)
			}
		}
		assert.Equal(t, 3, pages)
	})

	t.Run("a state filter applies across pages", func(t *testing.T) {
		got, err := clusters.ListAll(ctx, compute.ListClustersRequest{
			FilterBy: &compute.ListClustersFilterBy{ClusterStates: []compute.State{compute.StateTerminated}},
			PageSize: 20,
		})
		require.NoError(t, err)
		assert.Len(t, got, 50)
		for _, c := range got {
			assert.Equal(t, compute.StateTerminated, c.State)
		}
	})

	t.Run("a source filter selects by cluster_source", func(t *testing.T) {
		s.AddCluster(wsID, compute.ClusterDetails{ClusterId: "job-1", ClusterSource: compute.ClusterSourceJob})
		got, err := clusters.ListAll(ctx, compute.ListClustersRequest{
			FilterBy: &compute.ListClustersFilterBy{ClusterSources: []compute.ClusterSource{compute.ClusterSourceJob}},
		})
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, "job-1", got[0].ClusterId)
	})
}

func TestClusterLifecycle(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := startFake(t, Options{Now: clock.Now, TransitionDelay: 30 * time.Second})
	seedRotation(t, s)
	id := s.AddCluster(wsID, compute.ClusterDetails{ClusterName: "etl"})
	jobID := s.AddCluster(wsID, compute.ClusterDetails{ClusterSource: compute.ClusterSourceJob, State: compute.StateTerminated})
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))
	state := func() compute.State {
		t.Helper()
		c, err := clusters.GetByClusterId(ctx, id)
		require.NoError(t, err)
		return c.State
	}

	_, err := clusters.GetByClusterId(ctx, "missing")
	assert.ErrorIs(t, err, apierr.ErrResourceDoesNotExist, "the SDK maps 400 'Cluster ... does not exist' to not-found")
	assert.ErrorIs(t, err, apierr.ErrNotFound)

	err = clusters.StartByClusterId(ctx, id)
	assert.ErrorIs(t, err, apierr.ErrInvalidState)
	assert.EqualError(t, err, "Cluster "+id+" is in unexpected state RUNNING.")

	require.NoError(t, clusters.DeleteByClusterId(ctx, id))
	assert.Equal(t, compute.StateTerminating, state())
	require.NoError(t, clusters.DeleteByClusterId(ctx, id), "terminating a TERMINATING cluster is a no-op")
	clock.Advance(30 * time.Second)
	c, err := clusters.GetByClusterId(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, compute.StateTerminated, c.State)
	require.NotNil(t, c.TerminationReason)
	assert.Equal(t, compute.TerminationReasonCodeUserRequest, c.TerminationReason.Code)
	require.NoError(t, clusters.DeleteByClusterId(ctx, id), "terminating a TERMINATED cluster is a no-op")

	require.NoError(t, clusters.StartByClusterId(ctx, id))
	assert.Equal(t, compute.StatePending, state())
	clock.Advance(30 * time.Second)
	assert.Equal(t, compute.StateRunning, state())

	err = clusters.StartByClusterId(ctx, jobID)
	assert.ErrorIs(t, err, apierr.ErrInvalidParameterValue)
	assert.EqualError(t, err, "Cannot start a job cluster")
}

func TestFailClusterStart(t *testing.T) {
	ctx := context.Background()
	s := startFake(t, Options{})
	seedRotation(t, s)
	id := s.AddCluster(wsID, compute.ClusterDetails{State: compute.StateTerminated})
	s.FailClusterStart(wsID, id, "KMS key is disabled")
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))

	require.NoError(t, clusters.StartByClusterId(ctx, id), "the start itself is accepted")
	c, err := clusters.GetByClusterId(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, compute.StateTerminated, c.State)
	assert.Equal(t, "KMS key is disabled", c.StateMessage)
	require.NotNil(t, c.TerminationReason)
	assert.Equal(t, compute.TerminationReasonTypeClientError, c.TerminationReason.Type)
	assert.Equal(t, "KMS key is disabled", c.TerminationReason.Parameters["databricks_error_message"])

	s.FailClusterStart(wsID, id, "")
	require.NoError(t, clusters.StartByClusterId(ctx, id))
	assert.Equal(t, compute.StateRunning, s.Cluster(wsID, id).State)
}

func TestStartClusterBehindRotator(t *testing.T) {
	s := startFake(t, Options{})
	seedRotation(t, s)
	id := s.AddCluster(wsID, compute.ClusterDetails{State: compute.StateTerminated})
	s.StartClusterBehindRotator(wsID, compute.ClusterDetails{ClusterId: id})

	_, err := patchManagedKey(context.Background(), newWorkspacesAPI(t, s), newManagedKey)
	assert.ErrorIs(t, err, apierr.ErrInvalidState)
	assert.Equal(t, compute.StateRunning, s.Cluster(wsID, id).State)
}

func TestPoolEdit(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := startFake(t, Options{Now: clock.Now, TransitionDelay: time.Minute})
	seedRotation(t, s)
	poolID := s.AddPool(wsID, compute.InstancePoolAndStats{
		InstancePoolName: "warm", NodeTypeId: "i3.xlarge", MinIdleInstances: 2, MaxCapacity: 10,
		IdleInstanceAutoterminationMinutes: 30, CustomTags: map[string]string{"team": "data"},
	})
	clusterID := s.AddCluster(wsID, compute.ClusterDetails{InstancePoolId: poolID})
	pools := compute.NewInstancePools(workspaceClient(t, s, wsID))

	got, err := pools.GetByInstancePoolId(ctx, poolID)
	require.NoError(t, err)
	require.NotNil(t, got.Stats)
	assert.Equal(t, 2, got.Stats.IdleCount)
	assert.Equal(t, 1, got.Stats.UsedCount, "used_count counts the running cluster on the pool")

	drain := compute.EditInstancePool{
		InstancePoolId: poolID, InstancePoolName: "warm", NodeTypeId: "i3.xlarge", MaxCapacity: 10,
		CustomTags:       map[string]string{"team": "data"},
		MinIdleInstances: 0, IdleInstanceAutoterminationMinutes: 0,
		ForceSendFields: []string{"MinIdleInstances", "IdleInstanceAutoterminationMinutes"},
	}
	require.NoError(t, pools.Edit(ctx, drain))
	reqs := s.Requests()
	assert.Contains(t, reqs[len(reqs)-1].Body, `"min_idle_instances":0`, "ForceSendFields puts the zero on the wire")

	got, err = pools.GetByInstancePoolId(ctx, poolID)
	require.NoError(t, err)
	assert.Equal(t, 2, got.Stats.IdleCount, "idle instances drain after TransitionDelay")
	assert.Equal(t, 0, got.MinIdleInstances)

	clock.Advance(time.Minute)
	require.NoError(t, compute.NewClusters(workspaceClient(t, s, wsID)).DeleteByClusterId(ctx, clusterID))
	clock.Advance(time.Minute)
	all, err := pools.ListAll(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.NotNil(t, all[0].Stats)
	assert.Equal(t, 0, all[0].Stats.IdleCount)
	assert.Equal(t, 0, all[0].Stats.UsedCount)
	assert.Equal(t, map[string]string{"team": "data"}, all[0].CustomTags)

	t.Run("changing node_type_id is refused", func(t *testing.T) {
		bad := drain
		bad.NodeTypeId = "m5.large"
		err := pools.Edit(ctx, bad)
		assert.ErrorIs(t, err, apierr.ErrInvalidParameterValue)
		assert.EqualError(t, err, "node_type_id cannot be changed")
	})
	t.Run("a missing required field is refused", func(t *testing.T) {
		bad := drain
		bad.InstancePoolName = ""
		assert.ErrorIs(t, pools.Edit(ctx, bad), apierr.ErrInvalidParameterValue)
	})
	t.Run("omitted optional fields are cleared, as edit replaces them", func(t *testing.T) {
		require.NoError(t, pools.Edit(ctx, compute.EditInstancePool{InstancePoolId: poolID, InstancePoolName: "warm", NodeTypeId: "i3.xlarge"}))
		p := s.Pool(wsID, poolID)
		assert.Empty(t, p.CustomTags)
		assert.Zero(t, p.MaxCapacity)
	})
	t.Run("raising min_idle_instances shows pending instances first", func(t *testing.T) {
		require.NoError(t, pools.Edit(ctx, compute.EditInstancePool{InstancePoolId: poolID, InstancePoolName: "warm", NodeTypeId: "i3.xlarge", MinIdleInstances: 3}))
		st := s.Pool(wsID, poolID).Stats
		assert.Equal(t, 0, st.IdleCount)
		assert.Equal(t, 3, st.PendingIdleCount)
		clock.Advance(time.Minute)
		st = s.Pool(wsID, poolID).Stats
		assert.Equal(t, 3, st.IdleCount)
		assert.Equal(t, 0, st.PendingIdleCount)
	})
	t.Run("an unknown pool is not found", func(t *testing.T) {
		_, err := pools.GetByInstancePoolId(ctx, "nope")
		assert.ErrorIs(t, err, apierr.ErrNotFound)
	})
}

func TestWarehouseStopStart(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := startFake(t, Options{Now: clock.Now, TransitionDelay: 2 * time.Minute})
	seedRotation(t, s)
	id := s.AddWarehouse(wsID, sql.EndpointInfo{Name: "bi", MinNumClusters: 2, WarehouseType: sql.EndpointInfoWarehouseTypePro})
	warehouses := sql.NewWarehouses(workspaceClient(t, s, wsID))
	get := func() *sql.GetWarehouseResponse {
		t.Helper()
		w, err := warehouses.GetById(ctx, id)
		require.NoError(t, err)
		return w
	}

	assert.Equal(t, 2, get().NumClusters)
	_, err := warehouses.Stop(ctx, sql.StopRequest{Id: id})
	require.NoError(t, err)
	assert.Equal(t, sql.StateStopping, get().State)
	clock.Advance(2 * time.Minute)
	w := get()
	assert.Equal(t, sql.StateStopped, w.State)
	assert.Equal(t, 0, w.NumClusters)

	_, err = warehouses.Stop(ctx, sql.StopRequest{Id: id})
	require.NoError(t, err, "stopping a stopped warehouse is a no-op")
	assert.Equal(t, sql.StateStopped, get().State)

	_, err = warehouses.Start(ctx, sql.StartRequest{Id: id})
	require.NoError(t, err)
	assert.Equal(t, sql.StateStarting, get().State)
	clock.Advance(2 * time.Minute)
	assert.Equal(t, sql.StateRunning, get().State)

	_, err = warehouses.GetById(ctx, "nope")
	assert.ErrorIs(t, err, apierr.ErrResourceDoesNotExist)
}

func TestWarehouseStopWithRealTime(t *testing.T) {
	ctx := context.Background()
	s := startFake(t, Options{TransitionDelay: 40 * time.Millisecond})
	seedRotation(t, s)
	id := s.AddWarehouse(wsID, sql.EndpointInfo{Name: "bi"})
	warehouses := sql.NewWarehouses(workspaceClient(t, s, wsID))

	_, err := warehouses.Stop(ctx, sql.StopRequest{Id: id})
	require.NoError(t, err)
	assert.Equal(t, sql.StateStopping, s.Warehouse(wsID, id).State)
	assert.Eventually(t, func() bool { return s.Warehouse(wsID, id).State == sql.StateStopped },
		2*time.Second, 10*time.Millisecond)
}

func TestWarehouseListPaginates(t *testing.T) {
	s := startFake(t, Options{PageSize: 2})
	seedRotation(t, s)
	for i := range 5 {
		s.AddWarehouse(wsID, sql.EndpointInfo{Id: fmt.Sprintf("w%d", i)})
	}
	all, err := sql.NewWarehouses(workspaceClient(t, s, wsID)).ListAll(context.Background(), sql.ListWarehousesRequest{})
	require.NoError(t, err)
	assert.Len(t, all, 5)
}

func TestPipelines(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := startFake(t, Options{Now: clock.Now, TransitionDelay: time.Minute, PageSize: 2})
	seedRotation(t, s)
	clusterID := s.AddCluster(wsID, compute.ClusterDetails{ClusterSource: compute.ClusterSourcePipeline})
	streamID := s.AddPipeline(wsID, PipelineSeed{Name: "stream", Continuous: true, ClusterID: clusterID})
	for i := range 3 {
		s.AddPipeline(wsID, PipelineSeed{Name: fmt.Sprintf("nightly-%d", i)})
	}
	api := pipelines.NewPipelines(workspaceClient(t, s, wsID))

	all, err := api.ListPipelinesAll(ctx, pipelines.ListPipelinesRequest{})
	require.NoError(t, err)
	require.Len(t, all, 4, "four pipelines over pages of two")
	assert.Equal(t, pipelines.PipelineStateRunning, all[0].State)
	assert.Equal(t, clusterID, all[0].ClusterId)

	p, err := api.GetByPipelineId(ctx, streamID)
	require.NoError(t, err)
	require.NotNil(t, p.Spec)
	assert.True(t, p.Spec.Continuous)

	_, err = api.Stop(ctx, pipelines.StopRequest{PipelineId: streamID})
	require.NoError(t, err)
	p, err = api.GetByPipelineId(ctx, streamID)
	require.NoError(t, err)
	assert.Equal(t, pipelines.PipelineStateStopping, p.State)
	assert.Equal(t, compute.StateTerminating, s.Cluster(wsID, clusterID).State)

	clock.Advance(time.Minute)
	p, err = api.GetByPipelineId(ctx, streamID)
	require.NoError(t, err)
	assert.Equal(t, pipelines.PipelineStateIdle, p.State)
	assert.Equal(t, compute.StateTerminated, s.Cluster(wsID, clusterID).State)

	upd, err := api.StartUpdate(ctx, pipelines.StartUpdate{PipelineId: streamID})
	require.NoError(t, err)
	assert.NotEmpty(t, upd.UpdateId)
	_, err = api.StartUpdate(ctx, pipelines.StartUpdate{PipelineId: streamID})
	assert.ErrorIs(t, err, apierr.ErrResourceConflict, "an active update already exists")
	clock.Advance(time.Minute)
	p, err = api.GetByPipelineId(ctx, streamID)
	require.NoError(t, err)
	assert.Equal(t, pipelines.PipelineStateRunning, p.State)
	require.NotEmpty(t, p.LatestUpdates)
	assert.Equal(t, upd.UpdateId, p.LatestUpdates[0].UpdateId)
	assert.Equal(t, compute.StateRunning, s.Cluster(wsID, clusterID).State)

	_, err = api.GetByPipelineId(ctx, "nope")
	assert.ErrorIs(t, err, apierr.ErrResourceDoesNotExist)
	assert.True(t, strings.Contains(err.Error(), "nope"))
}

// The pipelines list pages at 25 unless asked for more, and refuses more than 100 a page.
func TestPipelinesListPagesAtTwentyFiveByDefault(t *testing.T) {
	ctx := context.Background()
	s := startFake(t, Options{})
	seedRotation(t, s)
	for i := range 60 {
		s.AddPipeline(wsID, PipelineSeed{Name: fmt.Sprintf("stream-%d", i), Continuous: true})
	}
	api := pipelines.NewPipelines(workspaceClient(t, s, wsID))
	pages := func(req pipelines.ListPipelinesRequest) int {
		s.ClearRequests()
		all, err := api.ListPipelinesAll(ctx, req)
		require.NoError(t, err)
		require.Len(t, all, 60)
		return len(s.Requests())
	}
	assert.Equal(t, 3, pages(pipelines.ListPipelinesRequest{}), "60 pipelines at the default 25 a page")
	assert.Equal(t, 1, pages(pipelines.ListPipelinesRequest{MaxResults: 100}))

	_, err := api.ListPipelinesAll(ctx, pipelines.ListPipelinesRequest{MaxResults: 101})
	var apiErr *apierr.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 400, apiErr.StatusCode)
	assert.Contains(t, apiErr.Message, "max_results")
}
