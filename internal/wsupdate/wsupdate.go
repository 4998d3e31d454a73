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

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/polling"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
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
	// ProvisioningGrace is how long past its budget an update that still shows PROVISIONING is
	// waited for. Starting compute while the workspace updates is what Databricks forbids, so the
	// budget running out does not restore compute: the check keeps waiting until the workspace
	// leaves PROVISIONING and then decides by the key it ended on. Past the grace it gives up with
	// compute left stopped (WorkspaceUpdateTimedOut, reported, never restarted into the update).
	ProvisioningGrace time.Duration
}

// DefaultSettings are the budgets used in AWS unless configured otherwise. Databricks documents up
// to about 20 minutes of PROVISIONING on a Databricks-managed VPC, for any key change, so even the
// managed-services budget covers that with half again as margin.
var DefaultSettings = Settings{ManagedServicesBudget: 30 * time.Minute, StorageBudget: 45 * time.Minute, Settle: 0,
	ProvisioningGrace: 60 * time.Minute}

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

	// Read first, always: this may be a retry of a PATCH that Databricks accepted but whose answer
	// was lost (a 500, a 504, a timeout). Sending it again into an update in flight would be
	// refused with INVALID_STATE, which must not be mistaken for compute still running.
	current, err := t.Account.GetWorkspace(ctx, id)
	if err != nil {
		return rotation.PatchResult{}, fmt.Errorf("reading workspace %d before the update: %w", id, err)
	}
	if d.satisfiedBy(current) {
		result.AlreadyApplied = true
		return result, nil
	}
	if inFlight, err := updateInFlight(id, current); inFlight || err != nil {
		result.UpdateInFlight = inFlight
		result.InFlightReason = "workspace is " + string(current.WorkspaceStatus) + " before the PATCH"
		return result, err
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
		return t.refused(ctx, run, id, d, result, err)
	case err != nil:
		return rotation.PatchResult{}, fmt.Errorf("updating workspace %d to key configuration %s: %w", id, run.KeyConfigID, err)
	}
	return result, nil
}

// updateInFlight reads a workspace that is not on the new ids: PROVISIONING (or any status on its
// way to RUNNING) is an update under way, most likely ours whose answer was lost; the check loop
// waits for it and judges it by the ids it ends on. FAILED or BANNED will not become RUNNING.
func updateInFlight(id int64, ws *provisioning.Workspace) (bool, error) {
	switch ws.WorkspaceStatus {
	case provisioning.WorkspaceStatusRunning:
		return false, nil
	case provisioning.WorkspaceStatusFailed, provisioning.WorkspaceStatusBanned:
		return false, taskerr.Errorf[taskerr.WorkspaceFailed]("workspace %d is %s, so it cannot be updated: %s", id, ws.WorkspaceStatus, ws.WorkspaceStatusMessage)
	}
	return true, nil
}

// refused tells the INVALID_STATE reasons apart. Databricks answers INVALID_STATE both when classic
// compute still runs ("Please terminate all pool & cluster EC2 instances ...") and when the
// workspace is not RUNNING or already has an update in progress. The workspace as it is now
// decides, not the wording: an update in flight or the new ids already set mean "wait for it";
// only a RUNNING workspace on the old ids with the compute message means compute is running.
func (t *Tasks) refused(ctx context.Context, run rotation.WorkspaceRun, id int64, d desired, result rotation.PatchResult, refusal error) (rotation.PatchResult, error) {
	now, err := t.Account.GetWorkspace(ctx, id)
	if err != nil {
		return rotation.PatchResult{}, fmt.Errorf("reading workspace %d after Databricks refused the update (%v): %w", id, refusal, err)
	}
	if d.satisfiedBy(now) {
		result.AlreadyApplied = true
		return result, nil
	}
	if inFlight, err := updateInFlight(id, now); inFlight || err != nil {
		result.UpdateInFlight = inFlight
		result.InFlightReason = fmt.Sprintf("workspace is %s after Databricks refused the PATCH: %v", now.WorkspaceStatus, refusal)
		return result, err
	}
	if !computeRunningRefusal(refusal) {
		// RUNNING with an update in progress: on a customer-managed VPC the workspace stays RUNNING
		// while an update lands. Wait for it like any update in flight; the check judges it by the
		// ids it ends on, and reports a revert if it ends on the old ones.
		result.UpdateInFlight = true
		result.InFlightReason = refusal.Error()
		return result, nil
	}
	// Compute came back between the stop check and the PATCH (a user, a schedule). The state
	// machine sends the run back to stop it again, within the stop budget that began at the first
	// stop; past it the refusal ends the rotation like a stop that never finished.
	if run.Stop != nil && !run.Stop.Deadline.IsZero() && t.Clock.Now().After(run.Stop.Deadline) {
		return rotation.PatchResult{}, taskerr.Errorf[taskerr.ComputeStopTimedOut]("Databricks still refuses to update workspace %d because compute is running, %s after the first stop: %v",
			id, run.Stop.Deadline.Sub(run.Stop.StoppedAt).Round(time.Second), refusal)
	}
	return rotation.PatchResult{}, taskerr.Errorf[taskerr.ComputeStillRunning]("Databricks refused to update workspace %d because compute is still running: %v", id, refusal)
}

// computeRunningRefusal recognises Databricks' message for a PATCH while classic compute runs.
func computeRunningRefusal(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "terminate all") || strings.Contains(msg, "ec2 instances")
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
			outlasted := ""
			if run.WorkspaceStat != nil && run.WorkspaceStat.OutlastedBudget {
				outlasted = fmt.Sprintf(" (it left %s only %s after the update)", run.WorkspaceStat.Status, now.Sub(run.Patch.PatchedAt).Round(time.Second))
			}
			return rotation.WorkspaceStat{}, taskerr.Errorf[taskerr.WorkspaceReverted](
				"workspace %d is RUNNING but on managed services key configuration %q and storage key configuration %q, not %s, %s after the update%s: %s",
				id, ws.ManagedServicesCustomerManagedKeyId, ws.StorageCustomerManagedKeyId, run.KeyConfigID, waited, outlasted, endedOn(run, ws))
		}
		// Still updating: restoring compute now would start it into the update. Wait until the
		// workspace leaves PROVISIONING, then the key it ends on decides (above, or done).
		if grace := run.Patch.VerifyDeadline.Add(t.Settings.ProvisioningGrace); now.After(grace) {
			return rotation.WorkspaceStat{}, taskerr.Errorf[taskerr.WorkspaceUpdateTimedOut](
				"workspace %d is still %s %s after the update (%s); its key configuration is unknown until the update ends, so compute was left stopped rather than started into the update",
				id, ws.WorkspaceStatus, now.Sub(run.Patch.PatchedAt).Round(time.Second), ws.WorkspaceStatusMessage)
		}
		stat.OutlastedBudget = true
	}
	stat.PollAfterSeconds = polling.WorkspaceUpdate.After(stat.Attempt)
	return stat, nil
}

// endedOn says which key configuration a workspace that is RUNNING on other ids than ours ended on.
func endedOn(run rotation.WorkspaceRun, ws *provisioning.Workspace) string {
	if prev := run.Workspace.PreviousManagedKeyID; ws.ManagedServicesCustomerManagedKeyId == prev {
		if prev == "" {
			return "the update did not take; the workspace is still without a managed services key configuration"
		}
		return "the update did not take; the workspace is on its previous key configuration " + prev
	}
	return "the update did not take; the workspace is on a key configuration this rotation did not set"
}
