// Package rotation defines the documents that travel through the rotation state machine: the
// execution input an operator or the trigger writes, the plan that validation produces, and the
// per-workspace run state that every task in the workspace Map reads and extends.
//
// Every JSON name here appears in statemachine/rotation.asl.json paths. Workspace ids are strings:
// 16-digit ids do not survive a JSON number in JavaScript-based tooling (and console users paste them).
package rotation

import (
	"encoding/json"
	"strings"
	"time"
)

// Use cases as Databricks names them.
const (
	UseCaseManagedServices = "MANAGED_SERVICES"
	UseCaseStorage         = "STORAGE"
)

// Request is the execution input: what an operator types in the Step Functions console and what the
// trigger function sends.
type Request struct {
	WorkspaceIDs              []string `json:"workspace_ids"`
	KeyARN                    string   `json:"key_arn"`
	KeyAlias                  string   `json:"key_alias,omitempty"`
	UseCases                  []string `json:"use_cases,omitempty"`
	ReuseKeyForClusterVolumes *bool    `json:"reuse_key_for_cluster_volumes,omitempty"`
	DryRun                    bool     `json:"dry_run,omitempty"`
	// Trigger records what started the execution; absent for console starts.
	Trigger *Trigger `json:"trigger,omitempty"`
	// Emergency skips the maintenance window (and the approval, unless the policy requires it for
	// emergencies). Only a start by hand can set it: IAM on states:StartExecution decides who.
	Emergency bool `json:"emergency,omitempty"`

	// RollbackOf makes this request the rollback of an earlier rotation (cmkrotate rollback).
	RollbackOf *RollbackOf `json:"rollback_of,omitempty"`
}

// RollbackOf names the rotation a request rolls back. Validate refuses the rollback unless every
// workspace is still on KeyConfigID (the configuration that rotation set: otherwise a later rotation
// happened since) and PreviousKeyConfigID still names the request's key, which is then reused as it
// is rather than registered again.
type RollbackOf struct {
	Execution           string `json:"execution"`
	KeyConfigID         string `json:"key_config_id"`
	PreviousKeyConfigID string `json:"previous_key_config_id"`
}

// Trigger describes the event that started an automatic rotation.
type Trigger struct {
	EventID   string `json:"event_id"`
	EventName string `json:"event_name"`
	Actor     string `json:"actor,omitempty"`
	EventTime string `json:"event_time,omitempty"`
}

// Plan is the output of the Validate task, stored at $.plan.
type Plan struct {
	KeyARN                    string            `json:"key_arn"`
	KeyAlias                  string            `json:"key_alias,omitempty"`
	KeyRegion                 string            `json:"key_region"`
	UseCases                  []string          `json:"use_cases"`
	ReuseKeyForClusterVolumes bool              `json:"reuse_key_for_cluster_volumes"`
	DryRun                    bool              `json:"dry_run"`
	ExistingKeyConfigID       string            `json:"existing_key_config_id"`
	QuietWindowSeconds        int               `json:"quiet_window_seconds"`
	MaxConcurrency            int               `json:"max_concurrency"`
	Workspaces                []WorkspaceTarget `json:"workspaces"`
	// RollbackKeyConfigID is set for a rollback: the previous key configuration, reused as it is.
	RollbackKeyConfigID string `json:"rollback_key_config_id,omitempty"`
}

// WorkspaceTarget is one workspace as validation found it.
type WorkspaceTarget struct {
	WorkspaceID           string `json:"workspace_id"`
	WorkspaceName         string `json:"workspace_name"`
	DeploymentName        string `json:"deployment_name"`
	Region                string `json:"region"`
	PreviousManagedKeyID  string `json:"previous_managed_services_key_id"`
	PreviousManagedKeyARN string `json:"previous_managed_services_key_arn"`
	PreviousStorageKeyID  string `json:"previous_storage_key_id"`
	AddsStorageKey        bool   `json:"adds_storage_key"`
	AlreadyOnKey          bool   `json:"already_on_key"`
}

// KeyConfig is the output of the RegisterKeyConfig task, stored at $.key_config.
type KeyConfig struct {
	KeyConfigID string `json:"key_config_id"`
	Created     bool   `json:"created"`
}

// WorkspaceRun is the state of one iteration of the workspace Map. The Map's ItemSelector builds the
// first six fields; each task adds its result under its own key (ResultPath) and never removes one,
// so that the inventory survives every retry and reaches the failure event whole.
type WorkspaceRun struct {
	Workspace          WorkspaceTarget `json:"workspace"`
	KeyConfigID        string          `json:"key_config_id,omitempty"`
	KeyARN             string          `json:"key_arn"`
	UseCases           []string        `json:"use_cases"`
	QuietWindowSeconds int             `json:"quiet_window_seconds"`
	DryRun             bool            `json:"dry_run"`
	Execution          string          `json:"execution,omitempty"`

	Inventory     *Inventory     `json:"inventory,omitempty"`
	Stop          *StopResult    `json:"stop,omitempty"`
	StopStatus    *ComputeStatus `json:"stop_status,omitempty"`
	Patch         *PatchResult   `json:"patch,omitempty"`
	WorkspaceStat *WorkspaceStat `json:"workspace_status,omitempty"`
	Restart       *RestartResult `json:"restart,omitempty"`
	RestartStatus *ComputeStatus `json:"restart_status,omitempty"`
	// QuietStatus is the last check of the storage quiet window loop (compute kept stopped).
	QuietStatus *ComputeStatus `json:"quiet_status,omitempty"`
	// QuietError is where Catch puts a failure of the quiet window checks; the rotation then waits out
	// a whole window without checks, and the error is kept apart from Error (nothing failed the rotation).
	QuietError *StepError `json:"quiet_error,omitempty"`
	// KeyConfirmation is the last look at the workspace's key ids, after compute is back.
	KeyConfirmation *WorkspaceStat `json:"key_confirmation,omitempty"`
	// Error is where Catch puts {Error, Cause} when a step fails.
	Error *StepError `json:"error,omitempty"`
	// CompensationError is where Catch puts a failure of the compensation path itself, so that the
	// original Error is kept.
	CompensationError *StepError `json:"compensation_error,omitempty"`
	// PatchRefused is where Catch puts the last ComputeStillRunning refusal of the PATCH, which sends
	// the run back to stop compute again rather than fail.
	PatchRefused *StepError `json:"patch_refused,omitempty"`
}

// StepError is the object Step Functions writes on Catch.
type StepError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

// Inventory is every classic compute resource that was running when the rotation began, with what
// is needed to bring it back exactly as it was.
//
// A large inventory (thousands of clusters) would not fit the 256 KiB Step Functions payload: it is
// then kept in the stack's S3 bucket, Ref names the object, and only Counts travel in the state.
type Inventory struct {
	WorkspaceID string         `json:"workspace_id"`
	TakenAt     time.Time      `json:"taken_at"`
	Counts      Counts         `json:"counts"`
	Ref         string         `json:"ref,omitempty"`
	Clusters    []ClusterRef   `json:"clusters,omitempty"`
	Pools       []PoolSettings `json:"pools,omitempty"`
	Warehouses  []WarehouseRef `json:"warehouses,omitempty"`
	Pipelines   []PipelineRef  `json:"pipelines,omitempty"`
}

// Counts summarises resources by kind.
type Counts struct {
	Clusters   int `json:"clusters"`
	Pools      int `json:"pools"`
	Warehouses int `json:"warehouses"`
	Pipelines  int `json:"pipelines"`
}

// Total is the number of resources counted.
func (c Counts) Total() int { return c.Clusters + c.Pools + c.Warehouses + c.Pipelines }

// CountOf returns the counts of an inventory's lists.
func CountOf(inv Inventory) Counts {
	return Counts{len(inv.Clusters), len(inv.Pools), len(inv.Warehouses), len(inv.Pipelines)}
}

// ClusterRef is a cluster that was running. Source decides whether it can be restarted: job and
// pipeline clusters cannot be started by hand.
type ClusterRef struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Source string `json:"source,omitempty"`
	State  string `json:"state,omitempty"`
}

// Restartable reports whether the rotator starts this cluster again after the rotation.
func (c ClusterRef) Restartable() bool {
	switch c.Source {
	case "JOB", "PIPELINE", "PIPELINE_MAINTENANCE", "SQL", "MODELS":
		return false
	}
	return true
}

// PoolSettings is the editable configuration of an instance pool as it was before draining. The
// pool edit API replaces every editable field, so all of them are kept to restore the pool exactly.
// The optional fields are pointers because "unset" (Databricks' default) and 0 differ: an unset
// idle_instance_autotermination_minutes keeps idle instances for the default time, 0 removes them at
// once. nil is unset and is restored as unset (omitted from the edit).
type PoolSettings struct {
	ID                                 string            `json:"id"`
	Name                               string            `json:"name"`
	NodeTypeID                         string            `json:"node_type_id"`
	MinIdleInstances                   int               `json:"min_idle_instances"`
	IdleInstanceAutoterminationMinutes *int              `json:"idle_instance_autotermination_minutes,omitempty"`
	MaxCapacity                        *int              `json:"max_capacity,omitempty"`
	CustomTags                         map[string]string `json:"custom_tags,omitempty"`
	RemoteDiskThroughput               *int              `json:"remote_disk_throughput,omitempty"`
	TotalInitialRemoteDiskSize         *int              `json:"total_initial_remote_disk_size,omitempty"`
}

// WarehouseRef is a classic or pro (non-serverless) SQL warehouse that was running.
type WarehouseRef struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// PipelineRef is a Lakeflow/DLT pipeline that was running. Only continuous pipelines are restarted:
// restarting a triggered one would run an update nobody asked for.
type PipelineRef struct {
	ID         string `json:"id"`
	Name       string `json:"name,omitempty"`
	Continuous bool   `json:"continuous"`
}

// StopResult is the output of StopCompute, stored at $.stop. More is set when the task ran out of
// time: the state machine calls it again, and it resumes at Cursor.
type StopResult struct {
	StoppedAt        time.Time `json:"stopped_at"`
	Deadline         time.Time `json:"deadline"`
	PollAfterSeconds int       `json:"poll_after_seconds"`
	More             bool      `json:"more"`
	Cursor           int       `json:"cursor,omitempty"`
}

// Target states for ComputeStatus.
const (
	TargetStopped = "STOPPED"
	TargetRunning = "RUNNING"
	// TargetQuiet keeps compute stopped until the storage quiet window after the key change ends.
	TargetQuiet = "QUIET"
)

// ComputeStatusInput is what the ComputeStatus task receives: the run and which state to wait for.
type ComputeStatusInput struct {
	Target string       `json:"target"`
	Run    WorkspaceRun `json:"run"`
}

// ComputeStatus is one check of a wait loop (stop or restart), stored at $.stop_status or $.restart_status.
type ComputeStatus struct {
	Done             bool      `json:"done"`
	Attempt          int       `json:"attempt"`
	CheckedAt        time.Time `json:"checked_at"`
	PollAfterSeconds int       `json:"poll_after_seconds"`
	// Pending names up to MaxListed resources not yet in the target state; PendingCount counts all.
	Pending      []ResourceRef `json:"pending,omitempty"`
	PendingCount int           `json:"pending_count"`
	// StillDown lists what is not running at the end of a restart (failed to start, or past the budget).
	StillDown      []ResourceRef `json:"still_down,omitempty"`
	StillDownCount int           `json:"still_down_count"`
	// LateStopped lists compute that started after the inventory and was stopped before the PATCH.
	LateStopped []ResourceRef `json:"late_stopped,omitempty"`
	// StoppedAgain lists inventoried compute that someone started again during the rotation and that
	// was stopped again before the PATCH or during the quiet window; it is restarted at the end.
	StoppedAgain []ResourceRef `json:"stopped_again,omitempty"`
	// StartedLater counts what the restart checks started once it had settled (it was still
	// stopping when the restart began), cumulated over the checks.
	StartedLater *Counts `json:"started_later,omitempty"`
	// QuietUntil is when the storage quiet window ends (set by the quiet window checks only).
	QuietUntil      *time.Time `json:"quiet_until,omitempty"`
	DowntimeSeconds float64    `json:"downtime_seconds,omitempty"`
}

// ResourceRef names one compute resource in a status or event.
type ResourceRef struct {
	Kind   string `json:"kind"` // cluster | pool | warehouse | pipeline
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	State  string `json:"state,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// PatchResult is the output of PatchWorkspace, stored at $.patch.
type PatchResult struct {
	PatchedAt        time.Time `json:"patched_at"`
	AlreadyApplied   bool      `json:"already_applied"`
	UpdateMask       string    `json:"update_mask"`
	VerifyDeadline   time.Time `json:"verify_deadline"`
	PollAfterSeconds int       `json:"poll_after_seconds"`
	// UpdateInFlight is set when no PATCH was sent (or Databricks refused it) because an update is
	// already under way, most likely an earlier attempt whose answer was lost: the check loop
	// waits for it. InFlightReason says what was seen.
	UpdateInFlight bool   `json:"update_in_flight,omitempty"`
	InFlightReason string `json:"in_flight_reason,omitempty"`
}

// WorkspaceStat is one check of the post-PATCH wait loop, stored at $.workspace_status.
type WorkspaceStat struct {
	Done         bool   `json:"done"`
	Attempt      int    `json:"attempt"`
	Status       string `json:"status"`
	ManagedKeyID string `json:"managed_services_key_id,omitempty"`
	StorageKeyID string `json:"storage_key_id,omitempty"`
	// NewKeySeenAt is when a check first saw the new ids; done once they have held for the settle window.
	NewKeySeenAt     *time.Time `json:"new_key_seen_at,omitempty"`
	CheckedAt        time.Time  `json:"checked_at"`
	PollAfterSeconds int        `json:"poll_after_seconds"`
	// OutlastedBudget is set while the update budget has run out but the workspace still shows
	// PROVISIONING: compute must not start into the update, so the check keeps waiting. Never
	// omitted: the OnNewKey? Choice reads it, and a missing path fails the execution.
	OutlastedBudget bool `json:"outlasted_budget"`
}

// RestartResult is the output of RestartCompute, stored at $.restart. Started counts what was started
// or found already up; Failed names what could not be started (it is reported, never dropped).
// More and Cursor continue a restart that ran out of time, as for StopResult.
type RestartResult struct {
	RequestedAt         time.Time     `json:"requested_at"`
	Deadline            time.Time     `json:"deadline"`
	PollAfterSeconds    int           `json:"poll_after_seconds"`
	Started             Counts        `json:"started"`
	NotRestartable      []ResourceRef `json:"not_restartable,omitempty"`
	NotRestartableCount int           `json:"not_restartable_count"`
	Failed              []ResourceRef `json:"failed,omitempty"`
	// Settling counts what was still stopping when the restart began (TERMINATING, STOPPING): it is
	// started by the restart checks once it has settled, and kept pending until then.
	Settling int  `json:"settling,omitempty"`
	More     bool `json:"more"`
	Cursor   int  `json:"cursor,omitempty"`
}

// MaxListed caps the resources named in a progress list of the state (pending, late stopped, not
// restartable); the counts next to it are always complete.
const MaxListed = 25

// MaxFailuresListed caps failure lists (Failed, StillDown). Each failure needs an operator, so the
// cap is high, but a disaster on a workspace with thousands of clusters must not push the state past
// the 256 KiB payload limit and fail the very execution that has to report it; StillDownCount is exact.
const MaxFailuresListed = 100

// Report is the output of the BuildReport task: the detail of the event the state machine publishes,
// and a compact summary that the workspace's Map result carries, so that the execution's own
// failure cause still names what is down when the event cannot be published.
type Report struct {
	DetailType string   `json:"detail_type,omitempty"`
	Outcome    string   `json:"outcome,omitempty"`
	Detail     any      `json:"detail,omitempty"`
	Summary    *Summary `json:"summary,omitempty"`
	// Cause is set by the "summary" kind: the text of the execution's failure cause.
	Cause string `json:"cause,omitempty"`
	// Plan is set by the "plan" kind: the detail without the inventory's lists, which is what a
	// dry-run iteration outputs, so that the Map's result does not grow with every inventory.
	Plan any `json:"plan,omitempty"`
}

// Summary is one workspace's outcome in a few hundred bytes.
type Summary struct {
	WorkspaceID      string   `json:"workspace_id"`
	Outcome          string   `json:"outcome"`
	Message          string   `json:"message"`
	Error            string   `json:"error,omitempty"`
	StillDown        []string `json:"still_down,omitempty"`
	StillDownCount   int      `json:"still_down_count"`
	StillDownUnknown bool     `json:"still_down_unknown"`
	// Patched says the workspace PATCH was sent: from then on the previous key may still be needed
	// for 24 hours whatever the outcome (the key guard and the retirement reminder read it).
	Patched bool `json:"patched"`
}

// Outcomes of one workspace iteration.
const (
	OutcomeRotated = "ROTATED"
	// OutcomeRotatedComputeDown: the workspace is on the new key but some compute did not restart.
	OutcomeRotatedComputeDown = "ROTATED_COMPUTE_DOWN"
	OutcomeUnchanged          = "UNCHANGED"
	OutcomeFailed             = "FAILED"
	OutcomePlanned            = "PLANNED"
	// OutcomeRescued: the execution ended without its own report (aborted, timed out, runtime
	// error) after the workspace PATCH was sent; the rescue schedules the retirement reminder.
	OutcomeRescued = "RESCUED_AFTER_PATCH"
)

// Event detail types published to EventBridge, all with Source EventSource.
const (
	EventSource              = "databricks-cmk-rotator"
	DetailRotationSucceeded  = "Rotation Succeeded"
	DetailRotationFailed     = "Rotation Failed"
	DetailRotationRejected   = "Rotation Rejected"
	DetailRotationPlan       = "Rotation Plan"
	DetailKeyMaterialRotated = "Key Material Rotated"
	DetailPreviousKeyRetire  = "Previous Key Retirable"
	DetailKeyInUseAtRisk     = "Key In Use At Risk"
)

// IDString reads a workspace id written as a JSON string or number (console inputs and the
// account API write both); it is empty for anything else.
func IDString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}
