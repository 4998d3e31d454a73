// Package wsupdate points a workspace at the new key configuration and verifies that it took.
//
// Databricks documents that an update "might revert silently to its original configuration", so
// RUNNING alone proves nothing: the check compares the key configuration ids the workspace reports
// with the ones we set, and gives up with WorkspaceReverted when the old ids persist past the budget.
package wsupdate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/provisioning"

	"github.com/acme/databricks-cmk-rotator/internal/polling"
	"github.com/acme/databricks-cmk-rotator/internal/rotation"
	"github.com/acme/databricks-cmk-rotator/internal/taskerr"
)

// Account is the part of the account API the update needs.
type Account interface {
	GetWorkspace(ctx context.Context, id int64) (*provisioning.Workspace, error)
	UpdateWorkspace(ctx context.Context, req provisioning.UpdateWorkspaceRequest) error
}

// Settings are the verification budgets: how long after the PATCH the new key may take to show.
type Settings struct {
	// ManagedServicesBudget applies when only the managed services key changes (usually seconds).
	ManagedServicesBudget time.Duration
	// StorageBudget applies when a storage key is added: the workspace may go PROVISIONING for up to
	// 20 minutes on a Databricks-managed VPC.
	StorageBudget time.Duration
	// Settle is how long the new ids must hold before the update counts as done. Zero by default: the
	// state machine looks again after compute is back (ConfirmKey), which catches a late revert
	// without keeping compute down; a settle window trades downtime for catching it before the restart.
	Settle time.Duration
}

// DefaultSettings are the budgets used in AWS unless configured otherwise.
var DefaultSettings = Settings{ManagedServicesBudget: 15 * time.Minute, StorageBudget: 45 * time.Minute, Settle: 0}

// Tasks holds the patch and check tasks.
type Tasks struct {
	Account  Account
	Settings Settings
	Clock    polling.Clock
}

type desired struct {
	managed, storage string
}

func want(run rotation.WorkspaceRun) desired {
	var d desired
	if rotation.HasUseCase(run.UseCases, rotation.UseCaseManagedServices) {
		d.managed = run.KeyConfigID
	}
	if run.Workspace.AddsStorageKey {
		d.storage = run.KeyConfigID
	}
	return d
}

func (d desired) satisfiedBy(ws *provisioning.Workspace) bool {
	return (d.managed == "" || ws.ManagedServicesCustomerManagedKeyId == d.managed) &&
		(d.storage == "" || ws.StorageCustomerManagedKeyId == d.storage)
}

func workspaceID(run rotation.WorkspaceRun) (int64, error) {
	id, err := strconv.ParseInt(run.Workspace.WorkspaceID, 10, 64)
	if err != nil {
		return 0, taskerr.Errorf[taskerr.InvalidInput]("workspace.workspace_id %q is not a workspace id", run.Workspace.WorkspaceID)
	}
	return id, nil
}

// Patch sends the workspace update with only the fields that change. If the workspace already
// shows the new ids (a retry after a PATCH whose response was lost), it sends nothing.
func (t *Tasks) Patch(ctx context.Context, run rotation.WorkspaceRun) (rotation.PatchResult, error) {
	if run.KeyConfigID == "" {
		return rotation.PatchResult{}, taskerr.Errorf[taskerr.InvalidInput]("PatchWorkspace needs key_config_id")
	}
	id, err := workspaceID(run)
	if err != nil {
		return rotation.PatchResult{}, err
	}
	d := want(run)
	now := t.Clock.Now()
	budget := t.Settings.ManagedServicesBudget
	if d.storage != "" {
		budget = t.Settings.StorageBudget
	}
	result := rotation.PatchResult{PatchedAt: now, VerifyDeadline: now.Add(budget), PollAfterSeconds: polling.WorkspaceUpdate.After(0)}
	if run.Patch != nil {
		result.PatchedAt, result.VerifyDeadline = run.Patch.PatchedAt, run.Patch.VerifyDeadline
	}

	current, err := t.Account.GetWorkspace(ctx, id)
	if err != nil {
		return rotation.PatchResult{}, fmt.Errorf("reading workspace %d before the update: %w", id, err)
	}
	if d.satisfiedBy(current) {
		result.AlreadyApplied = true
		return result, nil
	}
	// A fresh Workspace, never the one just read: the SDK would re-send every field it decoded.
	var body provisioning.Workspace
	var mask []string
	if d.managed != "" {
		body.ManagedServicesCustomerManagedKeyId = d.managed
		mask = append(mask, "managed_services_customer_managed_key_id")
	}
	if d.storage != "" {
		body.StorageCustomerManagedKeyId = d.storage
		mask = append(mask, "storage_customer_managed_key_id")
	}
	result.UpdateMask = strings.Join(mask, ",")
	err = t.Account.UpdateWorkspace(ctx, provisioning.UpdateWorkspaceRequest{WorkspaceId: id, CustomerFacingWorkspace: body, UpdateMask: result.UpdateMask})
	switch {
	case errors.Is(err, apierr.ErrInvalidState):
		return rotation.PatchResult{}, taskerr.Errorf[taskerr.ComputeStillRunning]("Databricks refused to update workspace %d because compute is still running: %v", id, err)
	case err != nil:
		return rotation.PatchResult{}, fmt.Errorf("updating workspace %d to key configuration %s: %w", id, run.KeyConfigID, err)
	}
	return result, nil
}

// Check reads the workspace once: done when it is RUNNING on the new key configuration ids.
func (t *Tasks) Check(ctx context.Context, run rotation.WorkspaceRun) (rotation.WorkspaceStat, error) {
	if run.Patch == nil {
		return rotation.WorkspaceStat{}, taskerr.Errorf[taskerr.InvalidInput]("the workspace check needs $.patch")
	}
	id, err := workspaceID(run)
	if err != nil {
		return rotation.WorkspaceStat{}, err
	}
	now := t.Clock.Now()
	ws, err := t.Account.GetWorkspace(ctx, id)
	if err != nil {
		return rotation.WorkspaceStat{}, fmt.Errorf("reading workspace %d: %w", id, err)
	}
	stat := rotation.WorkspaceStat{Attempt: 1, Status: string(ws.WorkspaceStatus), CheckedAt: now,
		ManagedKeyID: ws.ManagedServicesCustomerManagedKeyId, StorageKeyID: ws.StorageCustomerManagedKeyId}
	if run.WorkspaceStat != nil {
		stat.Attempt = run.WorkspaceStat.Attempt + 1
	}
	d := want(run)
	var seenAt *time.Time
	if run.WorkspaceStat != nil {
		seenAt = run.WorkspaceStat.NewKeySeenAt
	}
	switch ws.WorkspaceStatus {
	case provisioning.WorkspaceStatusFailed, provisioning.WorkspaceStatusBanned:
		return rotation.WorkspaceStat{}, taskerr.Errorf[taskerr.WorkspaceFailed]("workspace %d went %s after the update: %s", id, ws.WorkspaceStatus, ws.WorkspaceStatusMessage)
	case provisioning.WorkspaceStatusRunning:
		if d.satisfiedBy(ws) {
			if seenAt == nil {
				seenAt = &now
			}
			stat.NewKeySeenAt = seenAt
			if now.Sub(*seenAt) >= t.Settings.Settle {
				stat.Done = true
				return stat, nil
			}
			stat.PollAfterSeconds = max(1, min(polling.WorkspaceUpdate.After(stat.Attempt), int((t.Settings.Settle-now.Sub(*seenAt)+time.Second-1)/time.Second)))
			return stat, nil
		}
	}
	if seenAt != nil {
		return rotation.WorkspaceStat{}, taskerr.Errorf[taskerr.WorkspaceReverted](
			"workspace %d showed key configuration %s at %s but is now %s on managed services key configuration %q and storage key configuration %q: Databricks reverted the update",
			id, run.KeyConfigID, seenAt.Format(time.RFC3339), ws.WorkspaceStatus, ws.ManagedServicesCustomerManagedKeyId, ws.StorageCustomerManagedKeyId)
	}
	if now.After(run.Patch.VerifyDeadline) {
		waited := run.Patch.VerifyDeadline.Sub(run.Patch.PatchedAt).Round(time.Second)
		if ws.WorkspaceStatus == provisioning.WorkspaceStatusRunning {
			return rotation.WorkspaceStat{}, taskerr.Errorf[taskerr.WorkspaceReverted](
				"workspace %d is RUNNING but on managed services key configuration %q and storage key configuration %q, not %s, %s after the update: Databricks reverted it silently",
				id, ws.ManagedServicesCustomerManagedKeyId, ws.StorageCustomerManagedKeyId, run.KeyConfigID, waited)
		}
		return rotation.WorkspaceStat{}, taskerr.Errorf[taskerr.WorkspaceUpdateTimedOut]("workspace %d is still %s %s after the update (%s)", id, ws.WorkspaceStatus, waited, ws.WorkspaceStatusMessage)
	}
	stat.PollAfterSeconds = polling.WorkspaceUpdate.After(stat.Attempt)
	return stat, nil
}
