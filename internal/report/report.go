// Package report builds the detail of every event the state machine publishes. It is a pure
// function of the execution state, in Go rather than in ASL paths, because a failure can strike at
// any step and a JSONPath to a field that was never written would fail the very state that must
// tell the operator what happened.
package report

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// Kinds of report.
const (
	KindSucceeded = "succeeded"
	KindFailed    = "failed"
	KindPlan      = "plan"
	KindRejected  = "rejected"
	// KindSummary turns the Map's results into the execution's failure cause.
	KindSummary = "summary"
)

// maxCause keeps a failure cause under Step Functions' 32,768-character limit for Fail causes.
const maxCause = 30000

// summaryNames is how many still-down resources a summary names; the count is always exact.
const summaryNames = 2

// maxSummaryText caps a summary's message and error (statemachine/payload_test.go sums the item).
const maxSummaryText = 120

// maxSummaryLine caps one still-down line of a summary: a request holds up to
// rotation.MaxWorkspacesPerRequest summaries in its top-level state, so each item stays within
// about 1 KiB.
const maxSummaryLine = 120

// Input is what the BuildReport task receives.
type Input struct {
	Kind string                 `json:"kind"`
	Run  *rotation.WorkspaceRun `json:"run,omitempty"`
	// For a rejection: the execution input and the validation error.
	Request json.RawMessage     `json:"request,omitempty"`
	Error   *rotation.StepError `json:"error,omitempty"`
	// For a plan: whether a key configuration would be created.
	ExistingKeyConfigID string `json:"existing_key_config_id,omitempty"`
	// For a summary: the Map's results.
	Results []json.RawMessage `json:"results,omitempty"`
}

// Detail is the event detail; fields are omitted where they do not apply.
type Detail struct {
	Outcome             string   `json:"outcome"`
	Message             string   `json:"message"`
	WorkspaceID         string   `json:"workspace_id,omitempty"`
	WorkspaceName       string   `json:"workspace_name,omitempty"`
	KeyARN              string   `json:"key_arn,omitempty"`
	UseCases            []string `json:"use_cases,omitempty"`
	PreviousKeyConfigID string   `json:"previous_key_config_id,omitempty"`
	PreviousKeyARN      string   `json:"previous_key_arn,omitempty"`
	NewKeyConfigID      string   `json:"new_key_config_id,omitempty"`
	// EndedOnKeyConfigID is the managed services key configuration the workspace was last seen
	// RUNNING on, when the run knows it: the new one on success, the previous one after a revert.
	EndedOnKeyConfigID string `json:"ended_on_key_config_id,omitempty"`
	Execution          string `json:"execution,omitempty"`
	Phase              string `json:"phase,omitempty"`
	// InventoryOmitted says the inventory carries only its counts here (see bounded).
	InventoryOmitted     bool                   `json:"inventory_omitted,omitempty"`
	Error                *ErrorDetail           `json:"error,omitempty"`
	CompensationError    *ErrorDetail           `json:"compensation_error,omitempty"`
	ComputeStopped       bool                   `json:"compute_stopped"`
	Stopped              *rotation.Counts       `json:"stopped,omitempty"`
	Restarted            *rotation.Counts       `json:"restarted,omitempty"`
	NotRestarted         []rotation.ResourceRef `json:"not_restarted,omitempty"`
	NotRestartedCount    int                    `json:"not_restarted_count,omitempty"`
	StillDown            []rotation.ResourceRef `json:"still_down,omitempty"`
	StillDownCount       int                    `json:"still_down_count,omitempty"`
	StillDownUnknown     bool                   `json:"still_down_unknown,omitempty"`
	LateStopped          []rotation.ResourceRef `json:"late_stopped,omitempty"`
	StoppedAgain         []rotation.ResourceRef `json:"stopped_again,omitempty"`
	Settling             int                    `json:"settling,omitempty"`
	DowntimeSeconds      float64                `json:"downtime_seconds,omitempty"`
	QuietWindowSeconds   int                    `json:"quiet_window_seconds,omitempty"`
	WouldCreateKeyConfig bool                   `json:"would_create_key_config,omitempty"`
	Inventory            *rotation.Inventory    `json:"inventory,omitempty"`
	Request              json.RawMessage        `json:"request,omitempty"`
}

// ErrorDetail is a step failure, with the Lambda error unwrapped into a readable message.
type ErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// PlanItem is what a dry-run iteration keeps of its Rotation Plan detail in the request's state, beside
// every other workspace's: the fields the item does not already carry (workspace, previous key), the
// message capped and the inventory as counts. The Rotation Plan event carries the whole detail.
type PlanItem struct {
	Message              string              `json:"message"`
	WouldCreateKeyConfig bool                `json:"would_create_key_config"`
	NewKeyConfigID       string              `json:"new_key_config_id,omitempty"`
	QuietWindowSeconds   int                 `json:"quiet_window_seconds"`
	Inventory            *rotation.Inventory `json:"inventory,omitempty"`
}

// Task builds reports; it has no dependencies and never fails on a well-formed input.
type Task struct{}

// Handle builds the report for the input.
func (t Task) Handle(ctx context.Context, in Input) (rotation.Report, error) {
	r, err := t.build(in)
	if err != nil || r.Detail == nil {
		return r, err
	}
	d := r.Detail.(Detail)
	if in.Kind == KindPlan {
		r.Plan = PlanItem{Message: truncate(d.Message, maxSummaryText), WouldCreateKeyConfig: d.WouldCreateKeyConfig,
			NewKeyConfigID: d.NewKeyConfigID, QuietWindowSeconds: d.QuietWindowSeconds, Inventory: countsOnly(d.Inventory)}
	} else {
		d = bounded(d)
		r.Detail = d
	}
	// The summary is the workspace's item in the Map's result, beside every other workspace's in the
	// top-level state: its texts are capped (the event carries them whole).
	r.Summary = &rotation.Summary{WorkspaceID: d.WorkspaceID, Outcome: d.Outcome, Message: truncate(d.Message, maxSummaryText),
		StillDownCount: max(d.StillDownCount, len(d.StillDown)), StillDownUnknown: d.StillDownUnknown,
		Patched: in.Run != nil && in.Run.Patch != nil}
	if d.Error != nil {
		r.Summary.Error = truncate(d.Error.Type+": "+d.Error.Message, maxSummaryText)
	}
	for i, ref := range d.StillDown {
		if i == summaryNames {
			break
		}
		r.Summary.StillDown = append(r.Summary.StillDown, truncate(fmt.Sprintf("%s %s (%s): %s", ref.Kind, ref.ID, ref.Name, ref.Reason), maxSummaryLine))
	}
	return r, nil
}

// summarise writes the execution's failure cause from the workspaces' results.
func summarise(results []json.RawMessage) rotation.Report {
	var b strings.Builder
	for _, raw := range results {
		var res struct {
			WorkspaceID string            `json:"workspace_id"`
			Outcome     string            `json:"outcome"`
			Summary     *rotation.Summary `json:"summary"`
		}
		_ = json.Unmarshal(raw, &res)
		line := fmt.Sprintf("workspace %s: %s", res.WorkspaceID, res.Outcome)
		if s := res.Summary; s != nil {
			line += ". " + s.Message
			if s.Error != "" {
				line += " Error: " + s.Error + "."
			}
			if s.StillDownCount > 0 {
				line += fmt.Sprintf(" Still down (%d): %s.", s.StillDownCount, strings.Join(s.StillDown, "; "))
			}
			if s.StillDownUnknown {
				line += " Whether its compute is running is unknown: check the inventory."
			}
		} else if res.Outcome == rotation.OutcomeFailed {
			line += ". Its report could not be built or published: check its compute."
		}
		if b.Len()+len(line)+1 > maxCause {
			b.WriteString("\n(more workspaces: see the Rotation Failed and Rotation Succeeded events)")
			break
		}
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString(line)
	}
	return rotation.Report{Cause: b.String()}
}

func (Task) build(in Input) (rotation.Report, error) {
	switch in.Kind {
	case KindSummary:
		return summarise(in.Results), nil
	case KindRejected:
		d := Detail{Outcome: "REJECTED", Error: errorDetail(in.Error), Request: in.Request}
		d.Message = "Rotation refused before anything was changed: " + d.Error.Message
		return rotation.Report{DetailType: rotation.DetailRotationRejected, Outcome: d.Outcome, Detail: d}, nil
	case KindSucceeded, KindFailed, KindPlan:
		if in.Run == nil {
			return rotation.Report{}, taskerr.Errorf[taskerr.InvalidInput]("report %q needs run", in.Kind)
		}
	default:
		return rotation.Report{}, taskerr.Errorf[taskerr.InvalidInput]("report kind must be succeeded, failed, plan or rejected, got %q", in.Kind)
	}
	run := in.Run
	d := Detail{
		WorkspaceID: run.Workspace.WorkspaceID, WorkspaceName: run.Workspace.WorkspaceName,
		KeyARN: run.KeyARN, UseCases: run.UseCases, Execution: run.Execution,
		PreviousKeyConfigID: run.Workspace.PreviousManagedKeyID, PreviousKeyARN: run.Workspace.PreviousManagedKeyARN,
		NewKeyConfigID: run.KeyConfigID, ComputeStopped: run.Stop != nil,
	}
	if run.Inventory != nil {
		counts := run.Inventory.Counts
		if counts.Total() == 0 && run.Inventory.Ref == "" {
			counts = rotation.CountOf(*run.Inventory)
		}
		d.Stopped = &counts
	}
	// Started again by users during the downtime and stopped again: before the PATCH (stop_status)
	// and during the storage quiet window (quiet_status).
	for _, st := range []*rotation.ComputeStatus{run.StopStatus, run.QuietStatus} {
		if st != nil {
			d.LateStopped = mergeRefs(d.LateStopped, st.LateStopped)
			d.StoppedAgain = mergeRefs(d.StoppedAgain, st.StoppedAgain)
		}
	}
	if run.Restart != nil {
		started := run.Restart.Started
		if run.RestartStatus != nil && run.RestartStatus.StartedLater != nil {
			// Still stopping when the restart began, started by a later check once settled.
			later := *run.RestartStatus.StartedLater
			started = rotation.Counts{Clusters: started.Clusters + later.Clusters, Pools: started.Pools + later.Pools,
				Warehouses: started.Warehouses + later.Warehouses, Pipelines: started.Pipelines + later.Pipelines}
		}
		d.Restarted = &started
		d.Settling = run.Restart.Settling
		d.NotRestarted = run.Restart.NotRestartable
		d.NotRestartedCount = run.Restart.NotRestartableCount
	}
	if run.RestartStatus != nil {
		d.StillDown = run.RestartStatus.StillDown
		d.StillDownCount = run.RestartStatus.StillDownCount
		d.DowntimeSeconds = run.RestartStatus.DowntimeSeconds
	}

	switch in.Kind {
	case KindPlan:
		d.Outcome = rotation.OutcomePlanned
		d.Inventory = run.Inventory
		d.NewKeyConfigID = in.ExistingKeyConfigID
		d.WouldCreateKeyConfig = in.ExistingKeyConfigID == ""
		d.ComputeStopped = false
		if run.Workspace.AddsStorageKey {
			d.QuietWindowSeconds = run.QuietWindowSeconds
		}
		d.Message = "Dry run: nothing was changed. This is what a rotation would stop and restart."
		if run.Workspace.AlreadyOnKey {
			d.Message = "Dry run: the workspace already uses this key; a rotation would change nothing."
		}
		return rotation.Report{DetailType: rotation.DetailRotationPlan, Outcome: d.Outcome, Detail: d}, nil
	case KindSucceeded:
		d.Outcome = rotation.OutcomeRotated
		d.EndedOnKeyConfigID = run.KeyConfigID
		d.Message = "The workspace is on the new key configuration and its compute is back."
		if len(d.StillDown) > 0 {
			d.Message = "The workspace is on the new key configuration, but some compute did not come back: see still_down."
		}
		return rotation.Report{DetailType: rotation.DetailRotationSucceeded, Outcome: d.Outcome, Detail: d}, nil
	}

	// Failed: say where, what is still down, and carry the whole inventory so nothing is lost.
	d.Outcome = rotation.OutcomeFailed
	d.Error = errorDetail(run.Error)
	if run.CompensationError != nil {
		d.CompensationError = errorDetail(run.CompensationError)
	}
	d.Inventory = run.Inventory
	d.Phase = phase(run)
	switch {
	case run.Stop == nil && run.Inventory == nil:
		d.Message = "The rotation failed before any compute was stopped; the workspace is unchanged."
	case run.RestartStatus == nil && run.Restart == nil && run.Error != nil && run.Error.Error == "WorkspaceUpdateTimedOut":
		// Deliberately not compensated: the workspace was still updating, and compute must not
		// start into an update. Everything stopped is still stopped, and the event says so.
		d.StillDownUnknown = true
		d.Message = "The workspace was still updating (PROVISIONING) past the update budget and its grace, so the compute this rotation stopped was left stopped rather than started into the update: everything in inventory is still stopped. Start it once the workspace is RUNNING, after checking which key configuration it ended on."
	case run.RestartStatus == nil:
		d.StillDownUnknown = run.Stop != nil
		d.Message = "The rotation failed and restoring compute could not be confirmed: treat everything in inventory as possibly stopped."
		if run.CompensationError != nil {
			d.Message = "The rotation failed, and so did restarting the compute it had stopped (see compensation_error): everything in inventory may still be stopped. Start it by hand, or run the rotation again once Databricks answers."
		}
		if run.Stop == nil {
			d.Message = "The rotation failed before compute was stopped; the workspace is unchanged."
		}
	case len(d.StillDown) > 0:
		d.Message = "The rotation failed and some compute is still down: see still_down."
	default:
		d.Message = "The rotation failed; everything that was stopped is running again."
	}
	if d.Phase == "confirm-key" {
		d.Message += " The workspace showed the new key configuration, then Databricks reverted it: it is on its previous key configuration."
	} else if run.WorkspaceStat != nil && run.WorkspaceStat.Done {
		d.Message += " The workspace did move to the new key configuration."
	} else if run.Patch != nil && run.Error != nil && run.Error.Error == "WorkspaceReverted" {
		d.Message += " The update did not take: the workspace is RUNNING on its previous key configuration (see error)."
		d.EndedOnKeyConfigID = run.Workspace.PreviousManagedKeyID
	} else if run.Patch == nil && d.Phase == "patch-workspace" && mayHaveSentPatch(run.Error) {
		// A PATCH whose answer was lost may still have been applied: do not claim the old key.
		d.Message += " A PATCH may have reached Databricks before the failure, so the workspace may be on the new key configuration; check managed_services_customer_managed_key_id."
	} else if run.Patch != nil {
		d.Message += " The workspace is not confirmed on the new key configuration; check managed_services_customer_managed_key_id."
	}
	return rotation.Report{DetailType: rotation.DetailRotationFailed, Outcome: d.Outcome, Detail: d}, nil
}

// mayHaveSentPatch is false for the PatchWorkspace errors that come before or instead of an
// applied PATCH (a refusal, bad input, a failed workspace), true for the rest: a 5xx, a timeout or a
// crash can follow a PATCH that Databricks applied.
func mayHaveSentPatch(e *rotation.StepError) bool {
	if e == nil {
		return true
	}
	switch e.Error {
	case "ComputeStillRunning", "ComputeStopTimedOut", "InvalidInput", "WorkspaceFailed":
		return false
	}
	return true
}

// phase names the step that failed: the furthest step the run had reached. Compensation only adds
// restart fields, so it does not move the phase.
func phase(run *rotation.WorkspaceRun) string {
	switch {
	case run.RestartStatus != nil && run.RestartStatus.Done && run.WorkspaceStat != nil && run.WorkspaceStat.Done && run.Error != nil && run.Error.Error == "WorkspaceReverted":
		return "confirm-key"
	case run.WorkspaceStat != nil && run.WorkspaceStat.Done:
		return "restart-compute"
	case run.Patch != nil:
		return "verify-workspace"
	case run.StopStatus != nil && run.StopStatus.Done:
		return "patch-workspace"
	case run.Stop != nil:
		return "wait-for-stop"
	case run.Inventory != nil:
		return "stop-compute"
	}
	return "inventory"
}

// errorDetail unwraps the Cause that Step Functions stores for a Lambda error, which is itself a
// JSON document {"errorMessage", "errorType"}.
func errorDetail(e *rotation.StepError) *ErrorDetail {
	if e == nil {
		return &ErrorDetail{Type: "Unknown", Message: "no error recorded"}
	}
	out := &ErrorDetail{Type: e.Error, Message: e.Cause}
	var lambdaErr struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if strings.HasPrefix(strings.TrimSpace(e.Cause), "{") && json.Unmarshal([]byte(e.Cause), &lambdaErr) == nil && lambdaErr.ErrorMessage != "" {
		out.Message = lambdaErr.ErrorMessage
	}
	return out
}

// mergeRefs appends the resources of more that list does not name yet.
func mergeRefs(list, more []rotation.ResourceRef) []rotation.ResourceRef {
	for _, r := range more {
		if !slices.ContainsFunc(list, func(x rotation.ResourceRef) bool { return x.Kind == r.Kind && x.ID == r.ID }) {
			list = append(list, r)
		}
	}
	return list
}

// DetailBudget bounds the detail of a success or failure report. The report step's state holds the
// run (an inline inventory of up to 64 KiB and up to rotation.MaxFailuresListed still-down entries)
// and the report; with this budget the sum stays under the 256 KiB payload limit, whose
// States.DataLimitExceeded no Catch can handle (internal/report/bounds_test.go builds the worst case).
const DetailBudget = 64 << 10

// Caps on the free text of one still-down entry in a report: Databricks state messages have no
// documented maximum.
const (
	maxNameBytes   = 128
	maxReasonBytes = 256
)

// bounded caps the detail by construction: every still-down text is truncated, and when the
// inventory's lists and the still-down list together would pass DetailBudget, the inventory travels
// as its counts (and reference, if any): the execution history holds it whole as the input of this
// state, and what is still down is what a person acts on first.
func bounded(d Detail) Detail {
	if len(d.StillDown) > 0 {
		capped := make([]rotation.ResourceRef, len(d.StillDown))
		for i, ref := range d.StillDown {
			ref.Name = truncate(ref.Name, maxNameBytes)
			ref.Reason = truncate(ref.Reason, maxReasonBytes)
			capped[i] = ref
		}
		d.StillDown = capped
	}
	if b, err := json.Marshal(d); err == nil && len(b) > DetailBudget && d.Inventory != nil && d.Inventory.Ref == "" {
		d.Inventory = countsOnly(d.Inventory)
		d.InventoryOmitted = true
		d.Message += fmt.Sprintf(" The inventory (%d resources) is too large to travel with the still-down list in this event: its counts are here, and the whole inventory is the input of this report's state in the execution history.", d.Inventory.Counts.Total())
	}
	return d
}

// countsOnly is an inventory without its lists.
func countsOnly(inv *rotation.Inventory) *rotation.Inventory {
	if inv == nil {
		return nil
	}
	counts := inv.Counts
	if counts.Total() == 0 && inv.Ref == "" {
		counts = rotation.CountOf(*inv)
	}
	return &rotation.Inventory{WorkspaceID: inv.WorkspaceID, TakenAt: inv.TakenAt, Counts: counts, Ref: inv.Ref}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
