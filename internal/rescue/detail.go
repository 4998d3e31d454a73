package rescue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// Why the rescue published an event (Detail.Rescue).
const (
	// RescueComputeDown: the iteration had stopped compute (or StopCompute had started) and did not
	// finish; nothing restored it.
	RescueComputeDown = "compute-possibly-down"
	// RescueNothingStopped: the execution ended before the workspace's compute was touched.
	RescueNothingStopped = "nothing-stopped"
	// RescueUnreportedFailure: the iteration failed and could not publish its own Rotation Failed.
	RescueUnreportedFailure = "unreported-failure"
)

// Phases of the events for an execution that ended without finishing a workspace, by status.
const (
	PhaseAborted      = "aborted"
	PhaseTimedOut     = "timed-out"
	PhaseRuntimeError = "runtime-error"
)

// Detail is the detail of a Rotation Failed event published by the rescue: the detail every
// Rotation Failed event has (report.Detail), and what a consumer needs to tell the rescue's events
// apart and deduplicate them.
type Detail struct {
	report.Detail
	// EventID is the same for every delivery of one execution's status change, per workspace:
	// consumers deduplicate on it.
	EventID         string `json:"event_id"`
	ExecutionARN    string `json:"execution_arn"`
	ExecutionStatus string `json:"execution_status"`
	// Rescue says why the rescue published (RescueComputeDown, ...).
	Rescue string `json:"rescue"`
	// LastState is the last state the workspace's iteration entered, if it started.
	LastState string `json:"last_state,omitempty"`
}

// ending is how the execution ended, for the events.
type ending struct {
	executionARN string
	name         string
	status       string
	err, cause   string
	redriveCount int
}

func (e ending) phase() string {
	switch e.status {
	case StatusAborted:
		return PhaseAborted
	case StatusTimedOut:
		return PhaseTimedOut
	}
	return PhaseRuntimeError
}

// errorDetail is the execution's error and cause, or what the status says when it has none (an
// execution stopped without an error and a cause).
func (e ending) errorDetail() *report.ErrorDetail {
	d := &report.ErrorDetail{Type: e.err, Message: e.cause}
	if d.Type == "" {
		switch e.status {
		case StatusAborted:
			d.Type = "ExecutionAborted"
		case StatusTimedOut:
			d.Type = "States.Timeout"
		default:
			d.Type = "Unknown"
		}
	}
	if d.Message == "" {
		switch e.status {
		case StatusAborted:
			d.Message = "The execution was stopped (StopExecution) without a cause."
		case StatusTimedOut:
			d.Message = "The execution ran past the state machine's TimeoutSeconds."
		default:
			d.Message = "The execution failed without a cause."
		}
	}
	return d
}

// sentence opens every message: which execution, and how it ended.
func (e ending) sentence() string {
	switch e.status {
	case StatusAborted:
		return fmt.Sprintf("Rotation execution %s was stopped (ABORTED)", e.name)
	case StatusTimedOut:
		return fmt.Sprintf("Rotation execution %s timed out", e.name)
	}
	return fmt.Sprintf("Rotation execution %s failed with %s", e.name, e.errorDetail().Type)
}

// eventID is derived from what identifies one rescue of one workspace: a redelivered status change
// gives the same id, a later failure of a redriven execution a new one.
func (e ending) eventID(workspaceID string) string {
	sum := sha256.Sum256([]byte(e.executionARN + "\n" + strconv.Itoa(e.redriveCount) + "\n" + workspaceID))
	return "rescue-" + hex.EncodeToString(sum[:16])
}

// request is what the rescue needs of the execution input.
type request struct {
	ids      []string
	dryRun   bool
	keyARN   string
	useCases []string
	// problem says why no request could be read, when none could.
	problem string
}

// requestOf reads the first input that is there: the execution input comes from DescribeExecution,
// the event, and the history's ExecutionStarted, which all carry the same document.
func requestOf(inputs ...string) request {
	for _, in := range inputs {
		if strings.TrimSpace(in) == "" {
			continue
		}
		r, err := rotation.ParseRequest([]byte(in))
		if err != nil {
			return request{problem: err.Error()}
		}
		return request{ids: r.WorkspaceIDs, dryRun: r.DryRun, keyARN: r.KeyARN, useCases: r.UseCases}
	}
	return request{problem: "the execution input is not available"}
}

// childRequestOf reads a child execution's input (statemachine/workspace-rotation.asl.json): the
// workspace's run as the request's execution built it. Its execution field names the request's
// execution, which owns the workspace's lock.
func childRequestOf(input string) (request, string) {
	run := decodeRun(input, "")
	if run == nil || run.Workspace.WorkspaceID == "" || run.Execution == "" {
		return request{problem: "the child execution's input names no workspace or request execution"}, ""
	}
	return request{ids: []string{run.Workspace.WorkspaceID}, dryRun: run.DryRun, keyARN: run.KeyARN, useCases: run.UseCases}, run.Execution
}

// finding is one workspace the rescue publishes an event for.
type finding struct {
	rescue      string
	workspaceID string
	// it and run are nil when the workspace's iteration never started.
	it  *iteration
	run *rotation.WorkspaceRun
}

// assess decides, per workspace of the request (and of the history), whether an event is due.
func assess(h *history, req request) (findings []finding, dryRun bool) {
	ids := slices.Clone(req.ids)
	for _, id := range h.order {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	runs := map[string]*rotation.WorkspaceRun{}
	for _, id := range ids {
		if it := h.iterations[id]; it != nil {
			if run := decodeRun(it.run, id); run != nil {
				runs[id] = run
				dryRun = dryRun || run.DryRun
			}
		}
	}
	// A dry run stops nothing: whatever way it ended, nothing is down and nothing needs telling.
	if req.dryRun || dryRun {
		return nil, true
	}
	for _, id := range ids {
		it, run := h.iterations[id], runs[id]
		f := finding{workspaceID: id, it: it, run: run}
		switch {
		case it != nil && it.outcome != "":
			// The iteration ended. Its own event says how, unless it failed and could not publish it.
			if it.outcome == rotation.OutcomeFailed && !it.reported && run != nil {
				f.rescue = RescueUnreportedFailure
			}
		case h.delegated(id):
			// Its child execution was started and had not ended: the child reports for itself, or its
			// own rescue does (the Step Functions .sync integration stops it with this execution).
		case it != nil && it.reported:
			// Published its event, then the execution ended before the iteration's last state.
		case run != nil && (run.Stop != nil || it.entered[stateStopCompute]):
			f.rescue = RescueComputeDown
		case h.rejectionReported:
			// Rotation Rejected already said that the request was refused before anything changed.
		default:
			f.rescue = RescueNothingStopped
		}
		if f.rescue != "" {
			findings = append(findings, f)
		}
	}
	return findings, false
}

// decodeRun reads a workspace's run. A field of an unexpected type is left out rather than losing
// the rest of the run.
func decodeRun(doc, workspaceID string) *rotation.WorkspaceRun {
	if doc == "" {
		return nil
	}
	var run rotation.WorkspaceRun
	if err := json.Unmarshal([]byte(doc), &run); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return nil
		}
	}
	if run.Workspace.WorkspaceID == "" {
		run.Workspace.WorkspaceID = workspaceID
	}
	return &run
}

// baseDetail is what the state machine's own failure report would say about the run: report
// builds it, so the rescue's events read like the others (workspace, keys, stopped, restarted,
// still_down, late_stopped, inventory).
func baseDetail(ctx context.Context, f finding, end ending, req request) report.Detail {
	if f.run != nil {
		rep, err := report.Task{}.Handle(ctx, report.Input{Kind: report.KindFailed, Run: f.run})
		if d, ok := rep.Detail.(report.Detail); ok && err == nil {
			if d.Execution == "" {
				d.Execution = end.name
			}
			return d
		}
	}
	return report.Detail{Outcome: rotation.OutcomeFailed, WorkspaceID: f.workspaceID, Execution: end.name,
		KeyARN: req.keyARN, UseCases: req.useCases}
}

// computeDownMessage says what the execution left behind and what to do about it.
func computeDownMessage(end ending, f finding, d Detail, stepErr *report.ErrorDetail, stillDownKnown, inventoryByRef bool) string {
	run, it := f.run, f.it
	var b strings.Builder
	b.WriteString(end.sentence())
	switch {
	case run.Stop != nil:
		fmt.Fprintf(&b, " while the workspace was at %s, after its compute had been stopped,", it.lastState)
	case it.lastState == stateStopCompute:
		b.WriteString(" while StopCompute was stopping the workspace's compute,")
	default:
		fmt.Fprintf(&b, " while the workspace was at %s, after StopCompute had started (its result was never recorded),", it.lastState)
	}
	b.WriteString(" and nothing restored the compute. ")
	switch {
	case !stillDownKnown:
		b.WriteString("Treat everything in inventory as possibly stopped. ")
	case len(d.StillDown) > 0 || d.StillDownCount > 0:
		b.WriteString("A restart had completed before the end: still_down names what did not come back. ")
	default:
		b.WriteString("A restart had completed before the end, and everything it restarted was running at its last check. ")
	}
	if stepErr != nil {
		fmt.Fprintf(&b, "The iteration was already restoring compute after %s: %s. ", stepErr.Type, stepErr.Message)
	}
	switch {
	case run.WorkspaceStat != nil && run.WorkspaceStat.Done:
		b.WriteString("The workspace did move to the new key configuration. ")
	case run.Patch != nil || it.entered[statePatchWorkspace]:
		b.WriteString("The PATCH to the new key configuration had been sent: check the workspace's managed_services_customer_managed_key_id, it may be on either key configuration. ")
	default:
		b.WriteString("No PATCH had been sent: the workspace is on its previous key configuration. ")
	}
	switch {
	case run.Inventory == nil:
		b.WriteString("No inventory was recorded: look for the workspace's clusters, pools, SQL warehouses and pipelines stopped since the execution started. ")
	case inventoryByRef:
		b.WriteString("The whole inventory is stored at inventory.ref; stopped has its counts. ")
	}
	if len(d.LateStopped) > 0 {
		b.WriteString("late_stopped lists compute that started during the rotation and was stopped; it was not running when the rotation began. ")
	}
	b.WriteString("Start by hand what is still stopped before rotating this workspace again: a new rotation restarts only compute that is running when it begins. " +
		"The workspace's rotation lock is released, so a new rotation is not refused as busy.")
	return b.String()
}

func nothingStoppedMessage(end ending, f finding) string {
	where := " (its iteration had not started)"
	if f.it != nil && f.it.lastState != "" {
		where = " (its iteration was at " + f.it.lastState + ")"
	}
	return end.sentence() + " before any compute of this workspace was stopped" + where +
		": the workspace is unchanged, on its previous key configuration. Its rotation lock is released; start the rotation again once the cause is fixed."
}

func unreportedMessage(end ending, base string) string {
	return base + " The execution could not publish this event itself; the rescue function published it after the execution ended (" +
		strings.TrimPrefix(end.sentence(), "Rotation ") + ")."
}
