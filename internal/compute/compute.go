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
	"unicode/utf8"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/sql"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/parallel"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/polling"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
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

// clusterLiveStates is every cluster state but TERMINATED. clusters/list returns every cluster
// terminated in the last 30 days (job clusters included: tens of thousands in a job-heavy
// workspace), so each check lists only what is not at rest and reads the few terminated clusters it
// cares about one by one: the calls per check grow with what runs, not with history.
var clusterLiveStates = append(slices.Clone(clusterBusyStates), compute.StateError, compute.StateUnknown)

// lists says what a snapshot reads: clusters in the given states (never unfiltered), and whether
// to read pools, warehouses and pipelines (a check skips kinds it has nothing to look for).
type lists struct {
	clusterStates                []compute.State
	pools, warehouses, pipelines bool
}

// snapshot is the current state of a workspace's compute, read with list calls: a handful of pages
// instead of one GET per resource, which matters at thousands of clusters and 30 requests/s.
type snapshot struct {
	clusters   map[string]compute.ClusterDetails
	pools      map[string]compute.InstancePoolAndStats
	warehouses map[string]sql.EndpointInfo
	pipelines  map[string]pipelines.PipelineStateInfo
}

func (t *Tasks) snapshot(ctx context.Context, w *dbclient.Workspace, what lists) (snapshot, error) {
	snap := snapshot{clusters: map[string]compute.ClusterDetails{}, pools: map[string]compute.InstancePoolAndStats{},
		warehouses: map[string]sql.EndpointInfo{}, pipelines: map[string]pipelines.PipelineStateInfo{}}
	if len(what.clusterStates) > 0 {
		req := compute.ListClustersRequest{PageSize: 100, FilterBy: &compute.ListClustersFilterBy{ClusterStates: what.clusterStates}}
		clusters, err := w.Clusters.ListAll(ctx, req)
		if err != nil {
			return snapshot{}, fmt.Errorf("listing clusters: %w", err)
		}
		for _, c := range clusters {
			snap.clusters[c.ClusterId] = c
		}
	}
	if what.pools {
		pools, err := w.InstancePools.ListAll(ctx)
		if err != nil {
			return snapshot{}, fmt.Errorf("listing instance pools: %w", err)
		}
		for _, p := range pools {
			snap.pools[p.InstancePoolId] = p
		}
	}
	if what.warehouses {
		warehouses, err := w.Warehouses.ListAll(ctx, sql.ListWarehousesRequest{})
		if err != nil {
			return snapshot{}, fmt.Errorf("listing SQL warehouses: %w", err)
		}
		for _, wh := range warehouses {
			snap.warehouses[wh.Id] = wh
		}
	}
	if what.pipelines {
		// The API pages pipelines at 25 unless asked for its maximum of 100.
		pipes, err := w.Pipelines.ListPipelinesAll(ctx, pipelines.ListPipelinesRequest{MaxResults: 100})
		if err != nil {
			return snapshot{}, fmt.Errorf("listing pipelines: %w", err)
		}
		for _, p := range pipes {
			snap.pipelines[p.PipelineId] = p
		}
	}
	return snap, nil
}

// inventoryLists reads only the kinds an inventory holds, clusters in every state but TERMINATED.
func inventoryLists(inv rotation.Inventory) lists {
	what := lists{pools: len(inv.Pools) > 0, warehouses: len(inv.Warehouses) > 0}
	if slices.ContainsFunc(inv.Clusters, rotation.ClusterRef.Restartable) {
		what.clusterStates = clusterLiveStates
	}
	what.pipelines = slices.ContainsFunc(inv.Pipelines, func(p rotation.PipelineRef) bool { return p.Continuous })
	return what
}

// optionalInt is an optional integer field of an SDK struct as the API sent it: nil when the field
// was absent (unset, Databricks' default), which the SDK decodes as 0 without listing the field in
// ForceSendFields.
func optionalInt(v int, field string, present []string) *int {
	if v == 0 && !slices.Contains(present, field) {
		return nil
	}
	return &v
}

func sameOptional(a, b *int) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func poolSettings(p compute.InstancePoolAndStats) rotation.PoolSettings {
	f := p.ForceSendFields
	return rotation.PoolSettings{
		ID: p.InstancePoolId, Name: p.InstancePoolName, NodeTypeID: p.NodeTypeId, MinIdleInstances: p.MinIdleInstances,
		IdleInstanceAutoterminationMinutes: optionalInt(p.IdleInstanceAutoterminationMinutes, "IdleInstanceAutoterminationMinutes", f),
		MaxCapacity:                        optionalInt(p.MaxCapacity, "MaxCapacity", f),
		CustomTags:                         p.CustomTags,
		RemoteDiskThroughput:               optionalInt(p.RemoteDiskThroughput, "RemoteDiskThroughput", f),
		TotalInitialRemoteDiskSize:         optionalInt(p.TotalInitialRemoteDiskSize, "TotalInitialRemoteDiskSize", f),
	}
}

// poolMatches reports whether a pool has the recorded idle settings (the ones a drain changes).
func poolMatches(current compute.InstancePoolAndStats, want rotation.PoolSettings) bool {
	got := poolSettings(current)
	return got.MinIdleInstances == want.MinIdleInstances &&
		sameOptional(got.IdleInstanceAutoterminationMinutes, want.IdleInstanceAutoterminationMinutes) &&
		sameOptional(got.MaxCapacity, want.MaxCapacity)
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
	snap, err := t.snapshot(ctx, w, lists{clusterStates: clusterUpStates, pools: true, warehouses: true, pipelines: true})
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
		// cluster releases them (idle autotermination, unset meaning Databricks' default): terminating
		// our clusters hands their instances back to the pool, where they would keep the PATCH refused.
		settings := poolSettings(p)
		autoterm := settings.IdleInstanceAutoterminationMinutes
		if p.MinIdleInstances == 0 && autoterm != nil && *autoterm == 0 && !poolHasInstances(p.Stats) {
			continue
		}
		inv.Pools = append(inv.Pools, settings)
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
		drained.MinIdleInstances, drained.IdleInstanceAutoterminationMinutes = 0, new(int)
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

// poolEdit builds a full-replace edit of a pool from recorded settings. A set field is forced onto
// the wire even when it is 0 (omitted, it would be dropped); an unset one is omitted, so the pool
// gets Databricks' default back rather than a 0 that means something else.
func poolEdit(p rotation.PoolSettings) compute.EditInstancePool {
	e := compute.EditInstancePool{
		InstancePoolId: p.ID, InstancePoolName: p.Name, NodeTypeId: p.NodeTypeID,
		MinIdleInstances: p.MinIdleInstances, CustomTags: p.CustomTags,
		ForceSendFields: []string{"MinIdleInstances"},
	}
	for _, f := range []struct {
		dst   *int
		v     *int
		field string
	}{
		{&e.IdleInstanceAutoterminationMinutes, p.IdleInstanceAutoterminationMinutes, "IdleInstanceAutoterminationMinutes"},
		{&e.MaxCapacity, p.MaxCapacity, "MaxCapacity"},
		{&e.RemoteDiskThroughput, p.RemoteDiskThroughput, "RemoteDiskThroughput"},
		{&e.TotalInitialRemoteDiskSize, p.TotalInitialRemoteDiskSize, "TotalInitialRemoteDiskSize"},
	} {
		if f.v != nil {
			*f.dst = *f.v
			e.ForceSendFields = append(e.ForceSendFields, f.field)
		}
	}
	return e
}

// Status checks one step of a wait loop: for TargetStopped, whether any classic compute still runs
// anywhere in the workspace (whatever started again is stopped again, and reported); for
// TargetQuiet, the same until the storage quiet window has passed; for TargetRunning, whether
// everything the rotator restarts is back.
func (t *Tasks) Status(ctx context.Context, in rotation.ComputeStatusInput) (rotation.ComputeStatus, error) {
	switch in.Target {
	case rotation.TargetStopped:
		return t.stoppedStatus(ctx, in.Run)
	case rotation.TargetQuiet:
		return t.quietStatus(ctx, in.Run)
	case rotation.TargetRunning:
		return t.runningStatus(ctx, in.Run)
	}
	return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.InvalidInput]("target must be %s, %s or %s, got %q",
		rotation.TargetStopped, rotation.TargetQuiet, rotation.TargetRunning, in.Target)
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

// addOnce appends ref to a bounded report list unless it is already named there: a resource that is
// started again and again is reported once.
func addOnce(list []rotation.ResourceRef, ref rotation.ResourceRef) []rotation.ResourceRef {
	if len(list) >= rotation.MaxListed || slices.ContainsFunc(list, func(r rotation.ResourceRef) bool { return r.Kind == ref.Kind && r.ID == ref.ID }) {
		return list
	}
	return append(list, ref)
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
	status, err := t.keepStopped(ctx, w, inv, run.StopStatus, now)
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	if !status.Done && now.After(run.Stop.Deadline) {
		return rotation.ComputeStatus{}, taskerr.Errorf[taskerr.ComputeStopTimedOut]("compute in workspace %s did not stop within %s: %d still running: %s",
			run.Workspace.WorkspaceID, run.Stop.Deadline.Sub(run.Stop.StoppedAt).Round(time.Second), status.PendingCount, describe(status.Pending))
	}
	status.PollAfterSeconds = polling.ComputeStop.After(status.Attempt)
	return status, nil
}

// quietStatus keeps compute stopped during the storage quiet window that follows a storage key
// change (Databricks forbids cluster starts there). The window ends QuietWindowSeconds after the
// first check, which runs right after the new key was confirmed, as the single Wait it replaces did;
// each check waits at most until the window ends, so the total time is the same.
func (t *Tasks) quietStatus(ctx context.Context, run rotation.WorkspaceRun) (rotation.ComputeStatus, error) {
	inv, w, err := t.open(ctx, run, "the quiet window check")
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	now := t.Clock.Now()
	until := now.Add(time.Duration(run.QuietWindowSeconds) * time.Second)
	if run.QuietStatus != nil && run.QuietStatus.QuietUntil != nil {
		until = *run.QuietStatus.QuietUntil
	}
	status, err := t.keepStopped(ctx, w, inv, run.QuietStatus, now)
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	status.QuietUntil = &until
	left := until.Sub(now)
	status.Done = left <= 0
	status.PollAfterSeconds = max(1, min(polling.ComputeStop.After(status.Attempt), int((left+time.Second-1)/time.Second)))
	return status, nil
}

// keepStopped is one look at everything classic in the workspace, inventoried or not: what runs is
// stopped (again), and what holds instances is pending. Done means a fresh list found nothing
// running, so the PATCH that follows meets a workspace at rest.
//
// Started again during the rotation (a notebook re-attached, a JDBC client resuming a warehouse, a
// job run): an inventoried resource is reported in StoppedAgain and restarted at the end, since it
// ran when the rotation began; anything else is reported in LateStopped and left stopped.
// Job schedules are not paused: a run that starts during the downtime has its cluster stopped, and
// the event names it so its owner can repair the run (see README, "Jobs and pipelines during the
// downtime").
func (t *Tasks) keepStopped(ctx context.Context, w *dbclient.Workspace, inv rotation.Inventory, prev *rotation.ComputeStatus, now time.Time) (rotation.ComputeStatus, error) {
	status := rotation.ComputeStatus{Attempt: nextAttempt(prev), CheckedAt: now}
	if prev != nil {
		status.LateStopped, status.StoppedAgain = prev.LateStopped, prev.StoppedAgain
	}
	known := inventoryIDs(inv)
	// Pools are read only when the inventory drained some: a pool left alone keeps no idle instances
	// (min_idle 0, idle autotermination 0), and its used instances belong to clusters listed here.
	snap, err := t.snapshot(ctx, w, lists{clusterStates: clusterBusyStates, pools: len(inv.Pools) > 0, warehouses: true, pipelines: true})
	if err != nil {
		return rotation.ComputeStatus{}, err
	}
	// toStop is everything classic that runs; refs names it for the status, where the inventory
	// decides between StoppedAgain and LateStopped.
	var toStop rotation.Inventory
	var refs []rotation.ResourceRef
	for _, p := range sortedValues(snap.pipelines) {
		if !pipelineActive(p.State) {
			continue
		}
		if !known[KindPipeline+p.PipelineId] {
			// The list has no spec: read it to leave serverless pipelines alone.
			detail, err := w.Pipelines.Get(ctx, pipelines.GetPipelineRequest{PipelineId: p.PipelineId})
			if isGone(err) {
				continue
			}
			if err != nil {
				return rotation.ComputeStatus{}, fmt.Errorf("reading pipeline %s: %w", p.PipelineId, err)
			}
			if detail.Spec != nil && detail.Spec.Serverless {
				continue
			}
		}
		addPending(&status, rotation.ResourceRef{Kind: KindPipeline, ID: p.PipelineId, Name: p.Name, State: string(p.State)})
		if p.State == pipelines.PipelineStateStopping {
			continue
		}
		toStop.Pipelines = append(toStop.Pipelines, rotation.PipelineRef{ID: p.PipelineId, Name: p.Name})
		refs = append(refs, rotation.ResourceRef{Kind: KindPipeline, ID: p.PipelineId, Name: p.Name, State: string(p.State)})
	}
	for _, c := range sortedValues(snap.clusters) {
		if !slices.Contains(clusterBusyStates, c.State) {
			continue
		}
		addPending(&status, rotation.ResourceRef{Kind: KindCluster, ID: c.ClusterId, Name: c.ClusterName, State: string(c.State)})
		if c.State == compute.StateTerminating {
			continue
		}
		toStop.Clusters = append(toStop.Clusters, rotation.ClusterRef{ID: c.ClusterId, Name: c.ClusterName, Source: string(c.ClusterSource), State: string(c.State)})
		refs = append(refs, rotation.ResourceRef{Kind: KindCluster, ID: c.ClusterId, Name: c.ClusterName, State: string(c.State)})
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
		if wh.State == sql.StateStopping {
			continue
		}
		toStop.Warehouses = append(toStop.Warehouses, rotation.WarehouseRef{ID: wh.Id, Name: wh.Name})
		refs = append(refs, rotation.ResourceRef{Kind: KindWarehouse, ID: wh.Id, Name: wh.Name, State: string(wh.State)})
	}
	if len(refs) == 0 {
		status.Done = status.PendingCount == 0
		return status, nil
	}
	if _, _, err := t.runPhases(ctx, stopPhases(w, toStop), 0); err != nil {
		return rotation.ComputeStatus{}, fmt.Errorf("stopping compute started during the rotation: %w", err)
	}
	for _, ref := range refs {
		if known[ref.Kind+ref.ID] {
			status.StoppedAgain = addOnce(status.StoppedAgain, ref)
		} else {
			status.LateStopped = addOnce(status.LateStopped, ref)
		}
	}
	// What was just stopped is still stopping: the next check must see it at rest.
	status.Done = false
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
	for _, p := range inv.Pipelines {
		ids[KindPipeline+p.ID] = true
	}
	return ids
}

// Restart brings back what the inventory recorded: restartable clusters are started, pools get
// their exact settings back, warehouses and continuous pipelines are started. Job and pipeline
// clusters cannot be started by hand: they are reported. It reads the current state first (list
// calls) and acts only where needed, so a retry, a continuation, or the compensation path after a
// partial stop converges without starting anything twice.
//
// A resource still stopping (a cluster TERMINATING, a warehouse or pipeline STOPPING, as right after
// a partial stop) cannot be started yet, and is not "up or on its way" either: it is counted as
// Settling, and the restart check starts it once it has settled.
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
			res.Started, res.Failed, res.Settling = run.Restart.Started, run.Restart.Failed, run.Restart.Settling
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

	snap, err := t.snapshot(ctx, w, inventoryLists(inv))
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
	settling := func() error {
		mu.Lock()
		defer mu.Unlock()
		res.Settling++
		return nil
	}
	res.Cursor, res.More, err = t.runPhases(ctx, restartPhases(w, inv, snap, record, settling), cursor)
	if err != nil {
		return rotation.RestartResult{}, fmt.Errorf("restarting compute in workspace %s: %w", run.Workspace.WorkspaceID, err)
	}
	if !res.More {
		res.Cursor = 0
	}
	sortRefs(res.Failed)
	return res, nil
}

func restartPhases(w *dbclient.Workspace, inv rotation.Inventory, snap snapshot, record func(rotation.ResourceRef, error) error, settling func() error) [][]action {
	var clusters, pools, warehouses, pipes []action
	for _, c := range inv.Clusters {
		if !c.Restartable() {
			continue
		}
		ref := rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name}
		clusters = append(clusters, func(ctx context.Context) error {
			current, listed := snap.clusters[c.ID]
			switch {
			case listed && current.State == compute.StateTerminating:
				return settling()
			case listed && (current.State == compute.StateError || current.State == compute.StateUnknown):
				return record(ref, fmt.Errorf("cluster is in state %s", current.State))
			case listed:
				return record(ref, nil) // already up or on its way; the check follows it
			}
			// Not among the live clusters: TERMINATED (or deleted). Starting it directly saves a read
			// per cluster; a cluster that moved meanwhile answers INVALID_STATE and the check follows it.
			err := w.Clusters.StartByClusterId(ctx, c.ID)
			switch {
			case isGone(err):
				return record(ref, errors.New("cluster no longer exists"))
			case errors.Is(err, apierr.ErrInvalidState):
				return settling()
			}
			return record(ref, err)
		})
	}
	for _, p := range inv.Pools {
		ref := rotation.ResourceRef{Kind: KindPool, ID: p.ID, Name: p.Name}
		pools = append(pools, func(ctx context.Context) error {
			current, ok := snap.pools[p.ID]
			switch {
			case !ok:
				return record(ref, errors.New("instance pool no longer exists"))
			case poolMatches(current, p):
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
			case !ok || current.State == sql.StateDeleted || current.State == sql.StateDeleting:
				return record(ref, errors.New("SQL warehouse no longer exists"))
			case current.State == sql.StateStopping:
				return settling()
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
			case current.State == pipelines.PipelineStateStopping:
				return settling()
			case pipelineActive(current.State):
				return record(ref, nil)
			}
			_, err := w.Pipelines.StartUpdate(ctx, pipelines.StartUpdate{PipelineId: p.ID})
			if errors.Is(err, apierr.ErrResourceConflict) {
				return record(ref, nil) // an update started meanwhile
			}
			return record(ref, err)
		})
	}
	return [][]action{clusters, pools, warehouses, pipes}
}

// stoppedByRequest reports whether a TERMINATED cluster was stopped on purpose (by the rotator, a
// user, or inactivity) rather than by a failed start: such a cluster has simply not had its start yet.
func stoppedByRequest(d compute.ClusterDetails) bool {
	return d.TerminationReason == nil || d.TerminationReason.Type == "" || d.TerminationReason.Type == compute.TerminationReasonTypeSuccess
}

// startedSince reports whether a cluster was started (or restarted) after t.
func startedSince(d compute.ClusterDetails, t time.Time) bool {
	return max(d.StartTime, d.LastRestartedTime) > t.UnixMilli()
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
	startedLater := rotation.Counts{}
	if run.RestartStatus != nil && run.RestartStatus.StartedLater != nil {
		startedLater = *run.RestartStatus.StartedLater
	}
	failed := map[string]bool{}
	var stillDown []rotation.ResourceRef
	for _, f := range run.Restart.Failed {
		failed[f.Kind+f.ID] = true
		stillDown = append(stillDown, f)
	}
	snap, err := t.snapshot(ctx, w, inventoryLists(inv))
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
	// start starts what had settled since the restart (or was stopped again by someone): it ran when
	// the rotation began, so it is started and kept pending, not reported as down.
	start := func(ref rotation.ResourceRef, call func() error, counter *int) {
		if failed[ref.Kind+ref.ID] {
			return
		}
		err := call()
		switch {
		case err == nil:
			*counter++
			check(ref, "STARTING", "")
		case isGone(err):
			check(ref, "DELETED", ref.Kind+" was deleted during the rotation")
		case errors.Is(err, apierr.ErrInvalidState) || errors.Is(err, apierr.ErrResourceConflict):
			check(ref, "CHANGING", "") // it moved since the list: the next check sees where it went
		default:
			if _, transient := taskerr.AtBoundary(err).(*taskerr.DatabricksUnavailable); transient {
				check(ref, "STARTING", "") // retried at the next check
				return
			}
			check(ref, "STOPPED", ref.Kind+" could not be started: "+err.Error())
		}
	}
	for _, c := range inv.Clusters {
		if !c.Restartable() {
			continue
		}
		ref := rotation.ResourceRef{Kind: KindCluster, ID: c.ID, Name: c.Name}
		d, listed := snap.clusters[c.ID]
		if !listed && !failed[ref.Kind+ref.ID] {
			// Not live: TERMINATED or deleted. One read per such cluster; after the restart they are few.
			got, err := w.Clusters.GetByClusterId(ctx, c.ID)
			switch {
			case isGone(err):
				check(ref, "DELETED", "cluster was deleted during the rotation")
				continue
			case err != nil:
				return rotation.ComputeStatus{}, fmt.Errorf("reading cluster %s: %w", c.ID, err)
			}
			d = *got
		}
		switch {
		case failed[ref.Kind+ref.ID]:
		case d.State == compute.StateTerminated && stoppedByRequest(d) && !startedSince(d, run.Restart.RequestedAt):
			start(ref, func() error { return w.Clusters.StartByClusterId(ctx, c.ID) }, &startedLater.Clusters)
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
		case !poolMatches(d, p):
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
			// Stopped when the restart looked (it was STOPPING), or stopped since: start it.
			start(ref, func() error {
				_, err := w.Warehouses.Start(ctx, sql.StartRequest{Id: wh.ID})
				return err
			}, &startedLater.Warehouses)
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
		case !pipelineActive(d.State):
			start(ref, func() error {
				_, err := w.Pipelines.StartUpdate(ctx, pipelines.StartUpdate{PipelineId: p.ID})
				return err
			}, &startedLater.Pipelines)
		default:
			check(ref, string(d.State), "")
		}
	}
	if startedLater.Total() > 0 {
		status.StartedLater = &startedLater
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
	// Databricks' state messages have no length limit, and this list stays in the state for the
	// rest of the run (256 KiB in all): each reason keeps its first maxStateReason bytes.
	for i := range stillDown {
		stillDown[i].Reason = clip(stillDown[i].Reason, maxStateReason)
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

// maxStateReason bounds a still-down reason in the state (the code and the start of the message).
const maxStateReason = 256

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
