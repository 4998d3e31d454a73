// Package compute stops a workspace's classic compute before the key update and brings it back
// afterwards, exactly as it was.
//
// "Classic compute" is everything that runs EC2 instances in the customer's VPC: clusters of every
// source (all-purpose, job, pipeline), instance pools holding idle instances, classic and pro SQL
// warehouses, and Lakeflow pipelines. A workspace PATCH is refused with INVALID_STATE while any of
// it runs. Serverless warehouses and pipelines run in Databricks' account and are left alone.
//
// Each task reads the current state before acting, so any of them can be retried (by Lambda or by
// Step Functions) and converges: a second stop stops nothing twice, a second restart starts nothing
// twice, and the inventory taken first is never replaced.
package compute

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/sql"

	"github.com/acme/databricks-cmk-rotator/internal/dbclient"
	"github.com/acme/databricks-cmk-rotator/internal/invstore"
	"github.com/acme/databricks-cmk-rotator/internal/parallel"
	"github.com/acme/databricks-cmk-rotator/internal/polling"
	"github.com/acme/databricks-cmk-rotator/internal/rotation"
	"github.com/acme/databricks-cmk-rotator/internal/taskerr"
)

// Clients returns the workspace-level APIs of a workspace.
type Clients interface {
	Workspace(ws rotation.WorkspaceTarget) (*dbclient.Workspace, error)
}

// Settings bound how long and how wide the compute tasks work.
type Settings struct {
	// Workers is the number of concurrent API calls per task; the SDK's rate limiter paces them.
	Workers int
	// StopBudget is how long compute may take to stop before the rotation gives up and restores it.
	StopBudget time.Duration
	// StartBudget is how long compute may take to come back before it is reported as still down.
	StartBudget time.Duration
	// TaskTime caps one invocation's work; what is left is returned as a continuation. Zero means
	// "until 30 seconds before the Lambda deadline".
	TaskTime time.Duration
}

// DefaultSettings are the budgets used in AWS unless configured otherwise.
var DefaultSettings = Settings{Workers: 8, StopBudget: 30 * time.Minute, StartBudget: 30 * time.Minute}

// Tasks holds the four compute tasks; each method is one Lambda handler.
type Tasks struct {
	Clients  Clients
	Settings Settings
	Store    *invstore.Store
	Clock    polling.Clock
}

// Kinds of resources in status reports.
const (
	KindCluster   = "cluster"
	KindPool      = "pool"
	KindWarehouse = "warehouse"
	KindPipeline  = "pipeline"
)

// Cluster states in which a cluster holds (or is about to hold) EC2 instances.
var (
	clusterUpStates   = []compute.State{compute.StatePending, compute.StateRunning, compute.StateRestarting, compute.StateResizing}
	clusterBusyStates = append(slices.Clone(clusterUpStates), compute.StateTerminating)
)

func pipelineActive(s pipelines.PipelineState) bool {
	switch s {
	case pipelines.PipelineStateRunning, pipelines.PipelineStateStarting, pipelines.PipelineStateDeploying,
		pipelines.PipelineStateRecovering, pipelines.PipelineStateResetting, pipelines.PipelineStateStopping:
		return true
	}
	return false
}

func warehouseUp(s sql.State) bool {
	return s == sql.StateRunning || s == sql.StateStarting || s == sql.StateStopping
}

func poolHasInstances(stats *compute.InstancePoolStats) bool {
	return stats != nil && stats.IdleCount+stats.UsedCount+stats.PendingIdleCount+stats.PendingUsedCount > 0
}

// snapshot is the current state of a workspace's compute, read with list calls: a handful of pages
// instead of one GET per resource, which matters at thousands of clusters and 30 requests/s.
type snapshot struct {
	clusters   map[string]compute.ClusterDetails
	pools      map[string]compute.InstancePoolAndStats
	warehouses map[string]sql.EndpointInfo
	pipelines  map[string]pipelines.PipelineStateInfo
}

func (t *Tasks) snapshot(ctx context.Context, w *dbclient.Workspace, states []compute.State) (snapshot, error) {
	snap := snapshot{clusters: map[string]compute.ClusterDetails{}, pools: map[string]compute.InstancePoolAndStats{},
		warehouses: map[string]sql.EndpointInfo{}, pipelines: map[string]pipelines.PipelineStateInfo{}}
	req := compute.ListClustersRequest{PageSize: 100}
	if states != nil {
		req.FilterBy = &compute.ListClustersFilterBy{ClusterStates: states}
	}
	clusters, err := w.Clusters.ListAll(ctx, req)
	if err != nil {
		return snapshot{}, fmt.Errorf("listing clusters: %w", err)
	}
	for _, c := range clusters {
		snap.clusters[c.ClusterId] = c
	}
	pools, err := w.InstancePools.ListAll(ctx)
	if err != nil {
		return snapshot{}, fmt.Errorf("listing instance pools: %w", err)
	}
	for _, p := range pools {
		snap.pools[p.InstancePoolId] = p
	}
	warehouses, err := w.Warehouses.ListAll(ctx, sql.ListWarehousesRequest{})
	if err != nil {
		return snapshot{}, fmt.Errorf("listing SQL warehouses: %w", err)
	}
	for _, wh := range warehouses {
		snap.warehouses[wh.Id] = wh
	}
	pipes, err := w.Pipelines.ListPipelinesAll(ctx, pipelines.ListPipelinesRequest{})
	if err != nil {
		return snapshot{}, fmt.Errorf("listing pipelines: %w", err)
	}
	for _, p := range pipes {
		snap.pipelines[p.PipelineId] = p
	}
	return snap, nil
}

// Inventory records every classic compute resource that is running, with what is needed to restore
// it. It only reads. On a re-run it returns the inventory already taken: after StopCompute has begun,
// a fresh look would find everything stopped and the rotation would forget what to restart.
func (t *Tasks) Inventory(ctx context.Context, run rotation.WorkspaceRun) (rotation.Inventory, error) {
	if run.Inventory != nil {
		return *run.Inventory, nil
	}
	w, err := t.Clients.Workspace(run.Workspace)
	if err != nil {
		return rotation.Inventory{}, err
	}
	snap, err := t.snapshot(ctx, w, clusterUpStates)
	if err != nil {
		return rotation.Inventory{}, fmt.Errorf("taking the inventory of workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	inv := rotation.Inventory{WorkspaceID: run.Workspace.WorkspaceID, TakenAt: t.Clock.Now()}
	for _, c := range snap.clusters {
		if !slices.Contains(clusterUpStates, c.State) {
			continue // the API filter is authoritative in AWS, but a stale page must not add noise
		}
		inv.Clusters = append(inv.Clusters, rotation.ClusterRef{ID: c.ClusterId, Name: c.ClusterName, Source: string(c.ClusterSource), State: string(c.State)})
	}
	for _, p := range snap.pools {
		// A pool must be drained if it keeps idle instances (min_idle) or lets instances linger after a
		// cluster releases them (idle autotermination): terminating our clusters hands their instances
		// back to the pool, where they would keep the PATCH refused.
		if p.MinIdleInstances == 0 && p.IdleInstanceAutoterminationMinutes == 0 && !poolHasInstances(p.Stats) {
			continue
		}
		inv.Pools = append(inv.Pools, rotation.PoolSettings{
			ID: p.InstancePoolId, Name: p.InstancePoolName, NodeTypeID: p.NodeTypeId,
			MinIdleInstances: p.MinIdleInstances, IdleInstanceAutoterminationMinutes: p.IdleInstanceAutoterminationMinutes,
			MaxCapacity: p.MaxCapacity, CustomTags: p.CustomTags,
			RemoteDiskThroughput: p.RemoteDiskThroughput, TotalInitialRemoteDiskSize: p.TotalInitialRemoteDiskSize,
		})
	}
	for _, wh := range snap.warehouses {
		if wh.EnableServerlessCompute || (wh.State != sql.StateRunning && wh.State != sql.StateStarting) {
			continue
		}
		inv.Warehouses = append(inv.Warehouses, rotation.WarehouseRef{ID: wh.Id, Name: wh.Name})
	}
	for _, p := range snap.pipelines {
		if !pipelineActive(p.State) || p.State == pipelines.PipelineStateStopping {
			continue
		}
		// The list has no spec: read it to know whether the pipeline is serverless or continuous.
		detail, err := w.Pipelines.Get(ctx, pipelines.GetPipelineRequest{PipelineId: p.PipelineId})
		if err != nil {
			return rotation.Inventory{}, fmt.Errorf("reading pipeline %s of workspace %s: %w", p.PipelineId, run.Workspace.WorkspaceID, err)
		}
		if detail.Spec != nil && detail.Spec.Serverless {
			continue
		}
		inv.Pipelines = append(inv.Pipelines, rotation.PipelineRef{ID: p.PipelineId, Name: p.Name, Continuous: detail.Spec != nil && detail.Spec.Continuous})
	}
	// A stable order makes continuation cursors and reports reproducible.
	slices.SortFunc(inv.Clusters, func(a, b rotation.ClusterRef) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(inv.Pools, func(a, b rotation.PoolSettings) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(inv.Warehouses, func(a, b rotation.WarehouseRef) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(inv.Pipelines, func(a, b rotation.PipelineRef) int { return strings.Compare(a.ID, b.ID) })
	return t.Store.Save(ctx, run.Execution, inv)
}

// open loads the run's whole inventory (from S3 when it is a reference) and the workspace's clients:
// what every task after TakeInventory starts with.
func (t *Tasks) open(ctx context.Context, run rotation.WorkspaceRun, task string) (rotation.Inventory, *dbclient.Workspace, error) {
	if run.Inventory == nil {
		return rotation.Inventory{}, nil, taskerr.Errorf[taskerr.InvalidInput]("%s needs $.inventory; run TakeInventory first", task)
	}
	inv, err := t.Store.Load(ctx, *run.Inventory)
	if err != nil {
		return rotation.Inventory{}, nil, err
	}
	w, err := t.Clients.Workspace(run.Workspace)
	return inv, w, err
}

// action is one API call of a stop or a restart.
type action func(ctx context.Context) error

// workUntil returns when this invocation must stop starting new calls: 30 seconds before the
// Lambda deadline, or a fifth of the remaining time when the function is short-lived, so that calls
// in flight can finish and the continuation can be returned.
func (t *Tasks) workUntil(ctx context.Context) time.Time {
	now := time.Now()
	until := now.Add(14 * time.Minute)
	if d, ok := ctx.Deadline(); ok {
		until = d.Add(-min(30*time.Second, d.Sub(now)/5))
	}
	if t.Settings.TaskTime > 0 {
		if capped := now.Add(t.Settings.TaskTime); capped.Before(until) {
			until = capped
		}
	}
	return until
}

// runPhases runs the phases in order from cursor (a global index over all actions), each phase with
// bounded concurrency and finished before the next begins. It returns the cursor to resume from and
// whether anything is left; an action that fails makes it return that error (the task is retried,
// and every action is idempotent).
func (t *Tasks) runPhases(ctx context.Context, phases [][]action, cursor int) (int, bool, error) {
	until := t.workUntil(ctx)
	offset := 0
	for _, phase := range phases {
		if cursor >= offset+len(phase) {
			offset += len(phase)
			continue
		}
		from := max(0, cursor-offset)
		errs := parallel.Each(ctx, t.Settings.Workers, phase[from:], func(ctx context.Context, a action) error {
			return a(ctx)
		}, func(i int) bool {
			// Every invocation makes progress: the first action always runs, so a continuation
			// can never loop without advancing its cursor.
			return offset+from+i == cursor || time.Now().Before(until)
		})
		var failures []error
		for i, err := range errs {
			switch {
			case errors.Is(err, parallel.ErrNotStarted):
				if len(failures) > 0 {
					return 0, false, errors.Join(failures...)
				}
				return offset + from + i, true, nil
			case err != nil:
				failures = append(failures, err)
			}
		}
		if len(failures) > 0 {
			return 0, false, errors.Join(failures...)
		}
		offset += len(phase)
	}
	return offset, false, nil
}

// Stop stops everything in the inventory. Each call is a no-op on a resource that is already
// stopping or stopped, so a retry converges. The stop time and deadline of the first attempt are
// kept; a continuation resumes where the previous invocation ran out of time.
func (t *Tasks) Stop(ctx context.Context, run rotation.WorkspaceRun) (rotation.StopResult, error) {
	inv, w, err := t.open(ctx, run, "StopCompute")
	if err != nil {
		return rotation.StopResult{}, err
	}
	now := t.Clock.Now()
	result := rotation.StopResult{StoppedAt: now, Deadline: now.Add(t.Settings.StopBudget), PollAfterSeconds: polling.ComputeStop.After(0)}
	cursor := 0
	if run.Stop != nil {
		result.StoppedAt, result.Deadline = run.Stop.StoppedAt, run.Stop.Deadline
		if run.Stop.More {
			cursor = run.Stop.Cursor
		}
	}
	result.Cursor, result.More, err = t.runPhases(ctx, stopPhases(w, inv), cursor)
	if err != nil {
		return rotation.StopResult{}, fmt.Errorf("stopping compute in workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	if !result.More {
		result.Cursor = 0
	}
	return result, nil
}

func stopPhases(w *dbclient.Workspace, inv rotation.Inventory) [][]action {
	var pipes, clusters, pools, warehouses []action
	// Pipelines first: a continuous pipeline whose cluster is killed under it starts a new one.
	for _, p := range inv.Pipelines {
		pipes = append(pipes, func(ctx context.Context) error {
			_, err := w.Pipelines.Stop(ctx, pipelines.StopRequest{PipelineId: p.ID})
			return ignoreGone(err)
		})
	}
	for _, c := range inv.Clusters {
		clusters = append(clusters, func(ctx context.Context) error { return ignoreGone(w.Clusters.DeleteByClusterId(ctx, c.ID)) })
	}
	for _, p := range inv.Pools {
		drained := p
		drained.MinIdleInstances, drained.IdleInstanceAutoterminationMinutes = 0, 0
		pools = append(pools, func(ctx context.Context) error { return ignoreGone(w.InstancePools.Edit(ctx, poolEdit(drained))) })
	}
	for _, wh := range inv.Warehouses {
		warehouses = append(warehouses, func(ctx context.Context) error {
			_, err := w.Warehouses.Stop(ctx, sql.StopRequest{Id: wh.ID})
			return ignoreGone(err)
		})
	}
	return [][]action{pipes, clusters, pools, warehouses}
}

// poolEdit builds a full-replace edit of a pool from recorded settings. Zeros must be forced onto
// the wire: omitted, they would be dropped and the pool would keep (or lose) its old values.
func poolEdit(p rotation.PoolSettings) compute.EditInstancePool {
	return compute.EditInstancePool{
		InstancePoolId: p.ID, InstancePoolName: p.Name, NodeTypeId: p.NodeTypeID,
		MinIdleInstances: p.MinIdleInstances, IdleInstanceAutoterminationMinutes: p.IdleInstanceAutoterminationMinutes,
		MaxCapacity: p.MaxCapacity, CustomTags: p.CustomTags,
		RemoteDiskThroughput: p.RemoteDiskThroughput, TotalInitialRemoteDiskSize: p.TotalInitialRemoteDiskSize,
		ForceSendFields: []string{"MinIdleInstances", "IdleInstanceAutoterminationMinutes"},
	}
}

// Status checks one step of a wait loop: for TargetStopped, whether any classic compute still runs
// anywhere in the workspace (anything started after the inventory is stopped too, and reported); for
// TargetRunning, whether everything the rotator restarted is back.
func (t *Tasks) Status(ctx context.Context, in rotation.ComputeStatusInput) (rotation.ComputeStatus, error) {
	switch in.Target {
	case rotation.TargetStopped:
		return t.stoppedStatus(ctx, in.Run)
	case rotation.TargetRunning:
		return t.runningStatus(ctx, in.Run)
	}
	return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.InvalidInput]("target must be %s or %s, got %q", rotation.TargetStopped, rotation.TargetRunning, in.Target)
}

func nextAttempt(prev *rotation.ComputeStatus) int {
	if prev == nil {
		return 1
	}
	return prev.Attempt + 1
}

// addPending counts a resource and names it while the list is short.
func addPending(status *rotation.ComputeStatus, ref rotation.ResourceRef) {
	status.PendingCount++
	if len(status.Pending) < rotation.MaxListed {
		status.Pending = append(status.Pending, ref)
	}
}

func (t *Tasks) stoppedStatus(ctx context.Context, run rotation.WorkspaceRun) (rotation.ComputeStatus, error) {
	if run.Stop == nil {
		return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.InvalidInput]("the stop check needs $.stop")
	}
	inv, w, err := t.open(ctx, run, "the stop check")
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	now := t.Clock.Now()
	status := rotation.ComputeStatus{Attempt: nextAttempt(run.StopStatus), CheckedAt: now}
	if run.StopStatus != nil {
		status.LateStopped = run.StopStatus.LateStopped
	}
	known := inventoryIDs(inv)
	snap, err := t.snapshot(ctx, w, clusterBusyStates)
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	var late rotation.Inventory
	for _, c := range sortedValues(snap.clusters) {
		if !slices.Contains(clusterBusyStates, c.State) {
			continue
		}
		addPending(&status, rotation.ResourceRef{Kind: KindCluster, ID: c.ClusterId, Name: c.ClusterName, State: string(c.State)})
		if c.State != compute.StateTerminating && !known[KindCluster+c.ClusterId] {
			late.Clusters = append(late.Clusters, rotation.ClusterRef{ID: c.ClusterId, Name: c.ClusterName, Source: string(c.ClusterSource), State: string(c.State)})
		}
	}
	for _, p := range sortedValues(snap.pools) {
		if poolHasInstances(p.Stats) {
			addPending(&status, rotation.ResourceRef{Kind: KindPool, ID: p.InstancePoolId, Name: p.InstancePoolName,
				State: fmt.Sprintf("%d idle, %d used", p.Stats.IdleCount+p.Stats.PendingIdleCount, p.Stats.UsedCount+p.Stats.PendingUsedCount)})
		}
	}
	for _, wh := range sortedValues(snap.warehouses) {
		if wh.EnableServerlessCompute || !warehouseUp(wh.State) {
			continue
		}
		addPending(&status, rotation.ResourceRef{Kind: KindWarehouse, ID: wh.Id, Name: wh.Name, State: string(wh.State)})
		if wh.State != sql.StateStopping && !known[KindWarehouse+wh.Id] {
			late.Warehouses = append(late.Warehouses, rotation.WarehouseRef{ID: wh.Id, Name: wh.Name})
		}
	}

	// Something started after the inventory (a scheduled job, a user): stop it as well, or the PATCH
	// will be refused. It is reported, not restarted: it was not running when the rotation began.
	if len(late.Clusters)+len(late.Warehouses) > 0 {
		if _, _, err := t.runPhases(ctx, stopPhases(w, late), 0); err != nil {
			return rotation.ComputeStatus{}, fmt.Errorf("stopping compute started during the rotation: %w", err)
		}
		for _, c := range late.Clusters {
			if len(status.LateStopped) < rotation.MaxListed {
				status.LateStopped = append(status.LateStopped, rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name, State: c.State})
			}
		}
		for _, wh := range late.Warehouses {
			if len(status.LateStopped) < rotation.MaxListed {
				status.LateStopped = append(status.LateStopped, rotation.ResourceRef{Kind: KindWarehouse, ID: wh.ID, Name: wh.Name})
			}
		}
	}

	status.Done = status.PendingCount == 0
	if !status.Done && now.After(run.Stop.Deadline) {
		return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.ComputeStopTimedOut]("compute in workspace %s did not stop within %s: %d still running: %s",
			run.Workspace.WorkspaceID, run.Stop.Deadline.Sub(run.Stop.StoppedAt).Round(time.Second), status.PendingCount, describe(status.Pending))
	}
	status.PollAfterSeconds = polling.ComputeStop.After(status.Attempt)
	return status, nil
}

func inventoryIDs(inv rotation.Inventory) map[string]bool {
	ids := map[string]bool{}
	for _, c := range inv.Clusters {
		ids[KindCluster+c.ID] = true
	}
	for _, w := range inv.Warehouses {
		ids[KindWarehouse+w.ID] = true
	}
	return ids
}

// Restart brings back what the inventory recorded: restartable clusters are started, pools get
// their exact settings back, warehouses and continuous pipelines are started. Job and pipeline
// clusters cannot be started by hand: they are reported. It reads the current state first (list
// calls) and acts only where needed, so a retry, a continuation, or the compensation path after a
// partial stop converges without starting anything twice.
func (t *Tasks) Restart(ctx context.Context, run rotation.WorkspaceRun) (rotation.RestartResult, error) {
	inv, w, err := t.open(ctx, run, "RestartCompute")
	if err != nil {
		return rotation.RestartResult{}, err
	}
	now := t.Clock.Now()
	res := rotation.RestartResult{RequestedAt: now, Deadline: now.Add(t.Settings.StartBudget), PollAfterSeconds: polling.ComputeStart.After(0)}
	cursor := 0
	if run.Restart != nil {
		res.RequestedAt, res.Deadline = run.Restart.RequestedAt, run.Restart.Deadline
		if run.Restart.More {
			cursor = run.Restart.Cursor
			res.Started, res.Failed = run.Restart.Started, run.Restart.Failed
		}
	}
	for _, c := range inv.Clusters {
		if !c.Restartable() {
			res.NotRestartableCount++
			if len(res.NotRestartable) < rotation.MaxListed {
				res.NotRestartable = append(res.NotRestartable, rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name,
					Reason: fmt.Sprintf("%s clusters are started by their job or pipeline, not by hand", c.Source)})
			}
		}
	}
	for _, p := range inv.Pipelines {
		if !p.Continuous {
			res.NotRestartableCount++
			if len(res.NotRestartable) < rotation.MaxListed {
				res.NotRestartable = append(res.NotRestartable, rotation.ResourceRef{Kind: KindPipeline, ID: p.ID, Name: p.Name,
					Reason: "triggered pipeline: its next scheduled update starts it"})
			}
		}
	}

	snap, err := t.snapshot(ctx, w, nil)
	if err != nil {
		return rotation.RestartResult{}, fmt.Errorf("reading compute before the restart: %w", err)
	}
	var mu sync.Mutex
	record := func(ref rotation.ResourceRef, err error) error {
		if err != nil {
			if _, transient := taskerr.AtBoundary(err).(*taskerr.DatabricksUnavailable); transient {
				return err // retried by Step Functions; every start below reads state first
			}
			// Permanent (deleted, refused): reported, so the rest still comes back and the report names it.
			ref.Reason = err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if len(res.Failed) < rotation.MaxFailuresListed {
				res.Failed = append(res.Failed, ref)
			}
			return nil
		}
		switch ref.Kind {
		case KindCluster:
			res.Started.Clusters++
		case KindPool:
			res.Started.Pools++
		case KindWarehouse:
			res.Started.Warehouses++
		case KindPipeline:
			res.Started.Pipelines++
		}
		return nil
	}
	res.Cursor, res.More, err = t.runPhases(ctx, restartPhases(w, inv, snap, record), cursor)
	if err != nil {
		return rotation.RestartResult{}, fmt.Errorf("restarting compute in workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	if !res.More {
		res.Cursor = 0
	}
	sortRefs(res.Failed)
	return res, nil
}

func restartPhases(w *dbclient.Workspace, inv rotation.Inventory, snap snapshot, record func(rotation.ResourceRef, error) error) [][]action {
	var clusters, pools, warehouses, pipes []action
	for _, c := range inv.Clusters {
		if !c.Restartable() {
			continue
		}
		ref := rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name}
		clusters = append(clusters, func(ctx context.Context) error {
			current, ok := snap.clusters[c.ID]
			switch {
			case !ok:
				return record(ref, errors.New("cluster no longer exists"))
			case current.State != compute.StateTerminated:
				return record(ref, nil) // already up or on its way; the check follows it
			}
			return record(ref, w.Clusters.StartByClusterId(ctx, c.ID))
		})
	}
	for _, p := range inv.Pools {
		ref := rotation.ResourceRef{Kind: KindPool, ID: p.ID, Name: p.Name}
		pools = append(pools, func(ctx context.Context) error {
			current, ok := snap.pools[p.ID]
			switch {
			case !ok:
				return record(ref, errors.New("instance pool no longer exists"))
			case current.MinIdleInstances == p.MinIdleInstances && current.IdleInstanceAutoterminationMinutes == p.IdleInstanceAutoterminationMinutes:
				return record(ref, nil)
			}
			return record(ref, w.InstancePools.Edit(ctx, poolEdit(p)))
		})
	}
	for _, wh := range inv.Warehouses {
		ref := rotation.ResourceRef{Kind: KindWarehouse, ID: wh.ID, Name: wh.Name}
		warehouses = append(warehouses, func(ctx context.Context) error {
			current, ok := snap.warehouses[wh.ID]
			switch {
			case !ok:
				return record(ref, errors.New("SQL warehouse no longer exists"))
			case current.State != sql.StateStopped:
				return record(ref, nil)
			}
			_, err := w.Warehouses.Start(ctx, sql.StartRequest{Id: wh.ID})
			return record(ref, err)
		})
	}
	for _, p := range inv.Pipelines {
		if !p.Continuous {
			continue
		}
		ref := rotation.ResourceRef{Kind: KindPipeline, ID: p.ID, Name: p.Name}
		pipes = append(pipes, func(ctx context.Context) error {
			current, ok := snap.pipelines[p.ID]
			switch {
			case !ok:
				return record(ref, errors.New("pipeline no longer exists"))
			case pipelineActive(current.State):
				return record(ref, nil)
			}
			_, err := w.Pipelines.StartUpdate(ctx, pipelines.StartUpdate{PipelineId: p.ID})
			return record(ref, err)
		})
	}
	return [][]action{clusters, pools, warehouses, pipes}
}

func (t *Tasks) runningStatus(ctx context.Context, run rotation.WorkspaceRun) (rotation.ComputeStatus, error) {
	if run.Restart == nil {
		return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.InvalidInput]("the restart check needs $.restart")
	}
	inv, w, err := t.open(ctx, run, "the restart check")
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	now := t.Clock.Now()
	status := rotation.ComputeStatus{Attempt: nextAttempt(run.RestartStatus), CheckedAt: now}
	failed := map[string]bool{}
	var stillDown []rotation.ResourceRef
	for _, f := range run.Restart.Failed {
		failed[f.Kind+f.ID] = true
		stillDown = append(stillDown, f)
	}
	snap, err := t.snapshot(ctx, w, nil)
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	var pending []rotation.ResourceRef
	check := func(ref rotation.ResourceRef, state, failure string) {
		ref.State = state
		switch {
		case failed[ref.Kind+ref.ID]:
		case failure != "":
			ref.Reason = failure
			stillDown = append(stillDown, ref)
		case state != "RUNNING":
			pending = append(pending, ref)
		}
	}
	for _, c := range inv.Clusters {
		if !c.Restartable() {
			continue
		}
		ref := rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name}
		d, ok := snap.clusters[c.ID]
		switch {
		case !ok:
			check(ref, "DELETED", "cluster was deleted during the rotation")
		case d.State == compute.StateTerminated || d.State == compute.StateError:
			reason := d.StateMessage
			if d.TerminationReason != nil && d.TerminationReason.Code != "" {
				reason = fmt.Sprintf("%s: %s", d.TerminationReason.Code, d.StateMessage)
			}
			check(ref, string(d.State), "cluster did not start: "+reason)
		default:
			check(ref, string(d.State), "")
		}
	}
	for _, p := range inv.Pools {
		// A pool is back once its settings are; refilling idle instances is Databricks' job.
		ref := rotation.ResourceRef{Kind: KindPool, ID: p.ID, Name: p.Name}
		d, ok := snap.pools[p.ID]
		switch {
		case !ok:
			check(ref, "DELETED", "instance pool was deleted during the rotation")
		case d.MinIdleInstances != p.MinIdleInstances || d.IdleInstanceAutoterminationMinutes != p.IdleInstanceAutoterminationMinutes:
			check(ref, "DRAINED", "pool settings were not restored")
		default:
			check(ref, "RUNNING", "")
		}
	}
	for _, wh := range inv.Warehouses {
		ref := rotation.ResourceRef{Kind: KindWarehouse, ID: wh.ID, Name: wh.Name}
		d, ok := snap.warehouses[wh.ID]
		switch {
		case !ok || d.State == sql.StateDeleted:
			check(ref, "DELETED", "warehouse was deleted during the rotation")
		case d.State == sql.StateStopped:
			check(ref, string(d.State), "warehouse did not start")
		default:
			check(ref, string(d.State), "")
		}
	}
	for _, p := range inv.Pipelines {
		if !p.Continuous {
			continue
		}
		ref := rotation.ResourceRef{Kind: KindPipeline, ID: p.ID, Name: p.Name}
		d, ok := snap.pipelines[p.ID]
		switch {
		case !ok:
			check(ref, "DELETED", "pipeline was deleted during the rotation")
		case d.State == pipelines.PipelineStateFailed:
			check(ref, string(d.State), "pipeline failed to start")
		default:
			check(ref, string(d.State), "")
		}
	}
	for _, ref := range pending {
		addPending(&status, ref)
	}
	status.Done = status.PendingCount == 0
	if !status.Done && now.After(run.Restart.Deadline) {
		for _, ref := range pending {
			ref.Reason = fmt.Sprintf("not RUNNING within %s of the restart (last state %s)", run.Restart.Deadline.Sub(run.Restart.RequestedAt).Round(time.Second), ref.State)
			stillDown = append(stillDown, ref)
		}
		status.Pending, status.PendingCount, status.Done = nil, 0, true
	}
	sortRefs(stillDown)
	status.StillDownCount = len(stillDown)
	if len(stillDown) > rotation.MaxFailuresListed {
		stillDown = stillDown[:rotation.MaxFailuresListed]
	}
	status.StillDown = stillDown
	if status.Done && run.Stop != nil {
		status.DowntimeSeconds = now.Sub(run.Stop.StoppedAt).Seconds()
	}
	status.PollAfterSeconds = polling.ComputeStart.After(status.Attempt)
	return status, nil
}

func isGone(err error) bool {
	return errors.Is(err, apierr.ErrNotFound) || errors.Is(err, apierr.ErrResourceDoesNotExist)
}

func ignoreGone(err error) error {
	if isGone(err) {
		return nil
	}
	return err
}

func describe(refs []rotation.ResourceRef) string {
	parts := make([]string, 0, len(refs))
	for _, r := range refs {
		parts = append(parts, fmt.Sprintf("%s %s (%s, %s)", r.Kind, r.ID, r.Name, r.State))
	}
	return strings.Join(parts, ", ")
}

func sortedValues[V any](m map[string]V) []V {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]V, 0, len(m))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

func sortRefs(refs []rotation.ResourceRef) {
	slices.SortFunc(refs, func(a, b rotation.ResourceRef) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
