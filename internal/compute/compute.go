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
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/sql"

	"github.com/acme/databricks-cmk-rotator/internal/dbclient"
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
}

// DefaultSettings are the budgets used in AWS unless configured otherwise.
var DefaultSettings = Settings{Workers: 8, StopBudget: 30 * time.Minute, StartBudget: 30 * time.Minute}

// Tasks holds the four compute tasks; each method is one Lambda handler.
type Tasks struct {
	Clients  Clients
	Settings Settings
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
	inv := rotation.Inventory{
		WorkspaceID: run.Workspace.WorkspaceID, TakenAt: t.Clock.Now(),
		Clusters: []rotation.ClusterRef{}, Pools: []rotation.PoolSettings{},
		Warehouses: []rotation.WarehouseRef{}, Pipelines: []rotation.PipelineRef{},
	}

	clusters, err := w.Clusters.ListAll(ctx, compute.ListClustersRequest{
		FilterBy: &compute.ListClustersFilterBy{ClusterStates: clusterUpStates}, PageSize: 100,
	})
	if err != nil {
		return rotation.Inventory{}, fmt.Errorf("listing clusters of workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	for _, c := range clusters {
		if !slices.Contains(clusterUpStates, c.State) {
			continue // the API filter is authoritative in AWS, but a stale page must not add noise
		}
		inv.Clusters = append(inv.Clusters, rotation.ClusterRef{ID: c.ClusterId, Name: c.ClusterName, Source: string(c.ClusterSource), State: string(c.State)})
	}

	pools, err := w.InstancePools.ListAll(ctx)
	if err != nil {
		return rotation.Inventory{}, fmt.Errorf("listing instance pools of workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	for _, p := range pools {
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

	warehouses, err := w.Warehouses.ListAll(ctx, sql.ListWarehousesRequest{})
	if err != nil {
		return rotation.Inventory{}, fmt.Errorf("listing SQL warehouses of workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	for _, wh := range warehouses {
		if wh.EnableServerlessCompute || (wh.State != sql.StateRunning && wh.State != sql.StateStarting) {
			continue
		}
		inv.Warehouses = append(inv.Warehouses, rotation.WarehouseRef{ID: wh.Id, Name: wh.Name})
	}

	pipes, err := w.Pipelines.ListPipelinesAll(ctx, pipelines.ListPipelinesRequest{})
	if err != nil {
		return rotation.Inventory{}, fmt.Errorf("listing pipelines of workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	for _, p := range pipes {
		if !pipelineActive(p.State) || p.State == pipelines.PipelineStateStopping {
			continue
		}
		detail, err := w.Pipelines.Get(ctx, pipelines.GetPipelineRequest{PipelineId: p.PipelineId})
		if err != nil {
			return rotation.Inventory{}, fmt.Errorf("reading pipeline %s of workspace %s: %w", p.PipelineId, run.Workspace.WorkspaceID, err)
		}
		if detail.Spec != nil && detail.Spec.Serverless {
			continue
		}
		inv.Pipelines = append(inv.Pipelines, rotation.PipelineRef{ID: p.PipelineId, Name: p.Name, Continuous: detail.Spec != nil && detail.Spec.Continuous})
	}
	return inv, nil
}

// Stop stops everything in the inventory. Each call is a no-op on a resource that is already
// stopping or stopped, so a retry converges. The stop time and deadline of the first attempt are kept.
func (t *Tasks) Stop(ctx context.Context, run rotation.WorkspaceRun) (rotation.StopResult, error) {
	if run.Inventory == nil {
		return rotation.StopResult{}, taskerr.Errorf[taskerr.InvalidInput]("StopCompute needs $.inventory; run TakeInventory first")
	}
	w, err := t.Clients.Workspace(run.Workspace)
	if err != nil {
		return rotation.StopResult{}, err
	}
	now := t.Clock.Now()
	result := rotation.StopResult{StoppedAt: now, Deadline: now.Add(t.Settings.StopBudget), PollAfterSeconds: polling.ComputeStop.After(0)}
	if run.Stop != nil {
		result.StoppedAt, result.Deadline = run.Stop.StoppedAt, run.Stop.Deadline
	}
	if err := t.stopAll(ctx, w, *run.Inventory); err != nil {
		return rotation.StopResult{}, fmt.Errorf("stopping compute in workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	return result, nil
}

func (t *Tasks) stopAll(ctx context.Context, w *dbclient.Workspace, inv rotation.Inventory) error {
	// Pipelines first: a continuous pipeline whose cluster is killed under it starts a new one.
	errs := parallel.Each(ctx, t.Settings.Workers, inv.Pipelines, func(ctx context.Context, p rotation.PipelineRef) error {
		_, err := w.Pipelines.Stop(ctx, pipelines.StopRequest{PipelineId: p.ID})
		return ignoreGone(err)
	})
	if err := firstError(errs); err != nil {
		return err
	}
	errs = parallel.Each(ctx, t.Settings.Workers, inv.Clusters, func(ctx context.Context, c rotation.ClusterRef) error {
		return ignoreGone(w.Clusters.DeleteByClusterId(ctx, c.ID))
	})
	if err := firstError(errs); err != nil {
		return err
	}
	errs = parallel.Each(ctx, t.Settings.Workers, inv.Pools, func(ctx context.Context, p rotation.PoolSettings) error {
		drained := p
		drained.MinIdleInstances, drained.IdleInstanceAutoterminationMinutes = 0, 0
		return ignoreGone(w.InstancePools.Edit(ctx, poolEdit(drained)))
	})
	if err := firstError(errs); err != nil {
		return err
	}
	errs = parallel.Each(ctx, t.Settings.Workers, inv.Warehouses, func(ctx context.Context, wh rotation.WarehouseRef) error {
		_, err := w.Warehouses.Stop(ctx, sql.StopRequest{Id: wh.ID})
		return ignoreGone(err)
	})
	return firstError(errs)
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

func (t *Tasks) stoppedStatus(ctx context.Context, run rotation.WorkspaceRun) (rotation.ComputeStatus, error) {
	if run.Inventory == nil || run.Stop == nil {
		return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.InvalidInput]("the stop check needs $.inventory and $.stop")
	}
	w, err := t.Clients.Workspace(run.Workspace)
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	now := t.Clock.Now()
	status := rotation.ComputeStatus{Attempt: nextAttempt(run.StopStatus), CheckedAt: now}
	if run.StopStatus != nil {
		status.LateStopped = run.StopStatus.LateStopped
	}
	known := inventoryIDs(*run.Inventory)

	clusters, err := w.Clusters.ListAll(ctx, compute.ListClustersRequest{
		FilterBy: &compute.ListClustersFilterBy{ClusterStates: clusterBusyStates}, PageSize: 100,
	})
	if err != nil {
		return rotation.ComputeStatus{}, fmt.Errorf("listing clusters: %w", err)
	}
	var late rotation.Inventory
	for _, c := range clusters {
		if !slices.Contains(clusterBusyStates, c.State) {
			continue
		}
		status.Pending = append(status.Pending, rotation.ResourceRef{Kind: KindCluster, ID: c.ClusterId, Name: c.ClusterName, State: string(c.State)})
		if c.State != compute.StateTerminating && !known[KindCluster+c.ClusterId] {
			late.Clusters = append(late.Clusters, rotation.ClusterRef{ID: c.ClusterId, Name: c.ClusterName, Source: string(c.ClusterSource), State: string(c.State)})
		}
	}
	pools, err := w.InstancePools.ListAll(ctx)
	if err != nil {
		return rotation.ComputeStatus{}, fmt.Errorf("listing instance pools: %w", err)
	}
	for _, p := range pools {
		if poolHasInstances(p.Stats) {
			status.Pending = append(status.Pending, rotation.ResourceRef{Kind: KindPool, ID: p.InstancePoolId, Name: p.InstancePoolName,
				State: fmt.Sprintf("%d idle, %d used", p.Stats.IdleCount+p.Stats.PendingIdleCount, p.Stats.UsedCount+p.Stats.PendingUsedCount)})
		}
	}
	warehouses, err := w.Warehouses.ListAll(ctx, sql.ListWarehousesRequest{})
	if err != nil {
		return rotation.ComputeStatus{}, fmt.Errorf("listing SQL warehouses: %w", err)
	}
	for _, wh := range warehouses {
		if wh.EnableServerlessCompute || !warehouseUp(wh.State) {
			continue
		}
		status.Pending = append(status.Pending, rotation.ResourceRef{Kind: KindWarehouse, ID: wh.Id, Name: wh.Name, State: string(wh.State)})
		if wh.State != sql.StateStopping && !known[KindWarehouse+wh.Id] {
			late.Warehouses = append(late.Warehouses, rotation.WarehouseRef{ID: wh.Id, Name: wh.Name})
		}
	}

	// Something started after the inventory (a scheduled job, a user): stop it as well, or the PATCH
	// will be refused. It is reported, not restarted: it was not running when the rotation began.
	if len(late.Clusters)+len(late.Warehouses) > 0 {
		if err := t.stopAll(ctx, w, late); err != nil {
			return rotation.ComputeStatus{}, fmt.Errorf("stopping compute started during the rotation: %w", err)
		}
		for _, c := range late.Clusters {
			status.LateStopped = append(status.LateStopped, rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name, State: c.State})
		}
		for _, wh := range late.Warehouses {
			status.LateStopped = append(status.LateStopped, rotation.ResourceRef{Kind: KindWarehouse, ID: wh.ID, Name: wh.Name})
		}
	}

	status.Done = len(status.Pending) == 0
	if !status.Done && now.After(run.Stop.Deadline) {
		return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.ComputeStopTimedOut]("compute in workspace %s did not stop within %s: still running: %s",
			run.Workspace.WorkspaceID, run.Stop.Deadline.Sub(run.Stop.StoppedAt).Round(time.Second), describe(status.Pending))
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
// clusters cannot be started by hand: they are reported. It reads each resource first and acts only
// where needed, so a retry (or the compensation path after a partial stop) converges.
func (t *Tasks) Restart(ctx context.Context, run rotation.WorkspaceRun) (rotation.RestartResult, error) {
	if run.Inventory == nil {
		return rotation.RestartResult{}, taskerr.Errorf[taskerr.InvalidInput]("RestartCompute needs $.inventory")
	}
	w, err := t.Clients.Workspace(run.Workspace)
	if err != nil {
		return rotation.RestartResult{}, err
	}
	now := t.Clock.Now()
	res := rotation.RestartResult{RequestedAt: now, Deadline: now.Add(t.Settings.StartBudget), PollAfterSeconds: polling.ComputeStart.After(0), Started: []rotation.ResourceRef{}}
	if run.Restart != nil {
		res.RequestedAt, res.Deadline = run.Restart.RequestedAt, run.Restart.Deadline
	}
	inv := *run.Inventory
	outcomes := make(chan outcome, len(inv.Clusters)+len(inv.Pools)+len(inv.Warehouses)+len(inv.Pipelines))

	var clusters []rotation.ClusterRef
	for _, c := range inv.Clusters {
		if !c.Restartable() {
			res.NotRestartable = append(res.NotRestartable, rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name,
				Reason: fmt.Sprintf("%s clusters are started by their job or pipeline, not by hand", c.Source)})
			continue
		}
		clusters = append(clusters, c)
	}
	errs := parallel.Each(ctx, t.Settings.Workers, clusters, func(ctx context.Context, c rotation.ClusterRef) error {
		ref := rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name}
		d, err := w.Clusters.GetByClusterId(ctx, c.ID)
		if err != nil {
			return reportStartError(outcomes, ref, err)
		}
		if d.State != compute.StateTerminated {
			ref.State = string(d.State)
			outcomes <- outcome{ref: ref, started: true} // already up or on its way; the check follows it
			return nil
		}
		return reportStartError(outcomes, ref, w.Clusters.StartByClusterId(ctx, c.ID))
	})
	if err := firstError(errs); err != nil {
		return rotation.RestartResult{}, err
	}
	errs = parallel.Each(ctx, t.Settings.Workers, inv.Pools, func(ctx context.Context, p rotation.PoolSettings) error {
		ref := rotation.ResourceRef{Kind: KindPool, ID: p.ID, Name: p.Name}
		current, err := w.InstancePools.GetByInstancePoolId(ctx, p.ID)
		if err != nil {
			return reportStartError(outcomes, ref, err)
		}
		if current.MinIdleInstances == p.MinIdleInstances && current.IdleInstanceAutoterminationMinutes == p.IdleInstanceAutoterminationMinutes {
			outcomes <- outcome{ref: ref, started: true}
			return nil
		}
		return reportStartError(outcomes, ref, w.InstancePools.Edit(ctx, poolEdit(p)))
	})
	if err := firstError(errs); err != nil {
		return rotation.RestartResult{}, err
	}
	errs = parallel.Each(ctx, t.Settings.Workers, inv.Warehouses, func(ctx context.Context, wh rotation.WarehouseRef) error {
		ref := rotation.ResourceRef{Kind: KindWarehouse, ID: wh.ID, Name: wh.Name}
		current, err := w.Warehouses.GetById(ctx, wh.ID)
		if err != nil {
			return reportStartError(outcomes, ref, err)
		}
		if current.State != sql.StateStopped {
			ref.State = string(current.State)
			outcomes <- outcome{ref: ref, started: true}
			return nil
		}
		_, err = w.Warehouses.Start(ctx, sql.StartRequest{Id: wh.ID})
		return reportStartError(outcomes, ref, err)
	})
	if err := firstError(errs); err != nil {
		return rotation.RestartResult{}, err
	}
	for _, p := range inv.Pipelines {
		ref := rotation.ResourceRef{Kind: KindPipeline, ID: p.ID, Name: p.Name}
		if !p.Continuous {
			ref.Reason = "triggered pipeline: its next scheduled update starts it"
			res.NotRestartable = append(res.NotRestartable, ref)
			continue
		}
		current, err := w.Pipelines.Get(ctx, pipelines.GetPipelineRequest{PipelineId: p.ID})
		if err != nil {
			if err := reportStartError(outcomes, ref, err); err != nil {
				return rotation.RestartResult{}, err
			}
			continue
		}
		if pipelineActive(current.State) {
			outcomes <- outcome{ref: ref, started: true}
			continue
		}
		_, err = w.Pipelines.StartUpdate(ctx, pipelines.StartUpdate{PipelineId: p.ID})
		if err := reportStartError(outcomes, ref, err); err != nil {
			return rotation.RestartResult{}, err
		}
	}
	close(outcomes)
	for o := range outcomes {
		if o.started {
			res.Started = append(res.Started, o.ref)
		} else {
			res.Failed = append(res.Failed, o.ref)
		}
	}
	sortRefs(res.Started)
	sortRefs(res.Failed)
	return res, nil
}

type outcome struct {
	ref     rotation.ResourceRef
	started bool
}

// reportStartError files a start outcome. Transient errors are returned so that Step Functions
// retries the whole (idempotent) task; permanent ones (the resource was deleted, Databricks refuses
// to start it) are recorded as failed so the rest still comes back and the report names them.
func reportStartError(outcomes chan<- outcome, ref rotation.ResourceRef, err error) error {
	if err == nil {
		outcomes <- outcome{ref: ref, started: true}
		return nil
	}
	if _, transient := taskerr.AtBoundary(err).(*taskerr.DatabricksUnavailable); transient {
		return err
	}
	ref.Reason = err.Error()
	outcomes <- outcome{ref: ref}
	return nil
}

func (t *Tasks) runningStatus(ctx context.Context, run rotation.WorkspaceRun) (rotation.ComputeStatus, error) {
	if run.Restart == nil {
		return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.InvalidInput]("the restart check needs $.restart")
	}
	w, err := t.Clients.Workspace(run.Workspace)
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	now := t.Clock.Now()
	status := rotation.ComputeStatus{Attempt: nextAttempt(run.RestartStatus), CheckedAt: now, StillDown: slices.Clone(run.Restart.Failed)}
	for _, ref := range run.Restart.Started {
		state, failure, err := t.currentState(ctx, w, ref)
		if err != nil {
			return rotation.ComputeStatus{}, err
		}
		ref.State = state
		switch {
		case failure != "":
			ref.Reason = failure
			status.StillDown = append(status.StillDown, ref)
		case state != "RUNNING":
			status.Pending = append(status.Pending, ref)
		}
	}
	status.Done = len(status.Pending) == 0
	if !status.Done && now.After(run.Restart.Deadline) {
		for _, ref := range status.Pending {
			ref.Reason = fmt.Sprintf("not RUNNING within %s of the restart (last state %s)", run.Restart.Deadline.Sub(run.Restart.RequestedAt).Round(time.Second), ref.State)
			status.StillDown = append(status.StillDown, ref)
		}
		status.Pending, status.Done = nil, true
	}
	if status.Done && run.Stop != nil {
		status.DowntimeSeconds = now.Sub(run.Stop.StoppedAt).Seconds()
	}
	status.PollAfterSeconds = polling.ComputeStart.After(status.Attempt)
	return status, nil
}

// currentState returns a resource's state, normalised so that "RUNNING" means back in service, and
// a failure reason when it will not get there by itself.
func (t *Tasks) currentState(ctx context.Context, w *dbclient.Workspace, ref rotation.ResourceRef) (string, string, error) {
	switch ref.Kind {
	case KindCluster:
		d, err := w.Clusters.GetByClusterId(ctx, ref.ID)
		if isGone(err) {
			return "DELETED", "cluster was deleted during the rotation", nil
		} else if err != nil {
			return "", "", err
		}
		if d.State == compute.StateTerminated || d.State == compute.StateError {
			reason := d.StateMessage
			if d.TerminationReason != nil && d.TerminationReason.Code != "" {
				reason = fmt.Sprintf("%s: %s", d.TerminationReason.Code, d.StateMessage)
			}
			return string(d.State), "cluster did not start: " + reason, nil
		}
		return string(d.State), "", nil
	case KindPool:
		// A pool is back once its settings are; refilling idle instances is Databricks' job.
		return "RUNNING", "", nil
	case KindWarehouse:
		d, err := w.Warehouses.GetById(ctx, ref.ID)
		if isGone(err) {
			return "DELETED", "warehouse was deleted during the rotation", nil
		} else if err != nil {
			return "", "", err
		}
		if d.State == sql.StateStopped || d.State == sql.StateDeleted {
			return string(d.State), "warehouse did not start", nil
		}
		return string(d.State), "", nil
	case KindPipeline:
		d, err := w.Pipelines.Get(ctx, pipelines.GetPipelineRequest{PipelineId: ref.ID})
		if isGone(err) {
			return "DELETED", "pipeline was deleted during the rotation", nil
		} else if err != nil {
			return "", "", err
		}
		if d.State == pipelines.PipelineStateFailed {
			return string(d.State), "pipeline failed to start", nil
		}
		return string(d.State), "", nil
	}
	return "", "", taskerr.Errorf[taskerr.InvalidInput]("unknown resource kind %q", ref.Kind)
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

func firstError(errs []error) error {
	return errors.Join(errs...)
}

func describe(refs []rotation.ResourceRef) string {
	out := ""
	for i, r := range refs {
		if i == 10 {
			return out + fmt.Sprintf(" and %d more", len(refs)-10)
		}
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s %s (%s, %s)", r.Kind, r.ID, r.Name, r.State)
	}
	return out
}

func sortRefs(refs []rotation.ResourceRef) {
	slices.SortFunc(refs, func(a, b rotation.ResourceRef) int {
		if a.Kind != b.Kind {
			if a.Kind < b.Kind {
				return -1
			}
			return 1
		}
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}
