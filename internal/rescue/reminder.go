package rescue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// StartExecutionAPI starts the retirement reminder.
type StartExecutionAPI interface {
	StartExecution(ctx context.Context, params *sfn.StartExecutionInput, optFns ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
}

var _ StartExecutionAPI = (*sfn.Client)(nil)

// ReminderName is the name ScheduleRetirementReminder gives the reminder of a rotation execution:
// States.Format('retire-{}', States.Hash($$.Execution.Name, 'SHA-256')). The rescue uses the same
// name, so that whichever of the two starts it first, the other's start is refused as a duplicate
// and one reminder runs (TestTheRescueNamesTheReminderAsTheDefinitionDoes pins the expression).
func ReminderName(executionName string) string {
	sum := sha256.Sum256([]byte(executionName))
	return "retire-" + hex.EncodeToString(sum[:])
}

// reminderInput is the input ScheduleRetirementReminder gives the reminder; the key guard and the
// key configuration hygiene read it.
type reminderInput struct {
	Execution   string            `json:"execution"`
	KeyARN      string            `json:"key_arn"`
	KeyConfigID string            `json:"key_config_id"`
	Workspaces  []json.RawMessage `json:"workspaces"`
}

// reminderResult is the element the rescue puts in the reminder's workspaces for an iteration the
// execution ended after its PATCH was sent: the shape of the iteration's own end states.
type reminderResult struct {
	WorkspaceID         string `json:"workspace_id"`
	WorkspaceName       string `json:"workspace_name"`
	Outcome             string `json:"outcome"`
	Patched             bool   `json:"patched"`
	PreviousKeyConfigID string `json:"previous_key_config_id"`
	PreviousKeyARN      string `json:"previous_key_arn"`
}

// reminderOf builds the reminder the execution did not get to schedule, or nil when none is due.
// A PATCH that Databricks accepted leaves the previous key in use for 24 hours whatever happens
// next, so the reminder (which keeps the key guard watching that key) is due when any workspace
// was patched: an iteration that ended ROTATED, ROTATED_COMPUTE_DOWN or patched before the
// execution ended, or one the execution ended after PatchWorkspace had started (its PATCH may have
// taken, whether or not its result was recorded: RESCUED_AFTER_PATCH). Iterations that ended are
// listed as the Map would have listed them; one that ended before its PATCH is left out, since
// its previous key is the one it still uses.
func reminderOf(h *history, req request, dryRun bool) *reminderInput {
	if req.dryRun || dryRun {
		return nil
	}
	in := &reminderInput{Execution: h.execution, KeyARN: firstNonEmpty(h.keyARN, req.keyARN), KeyConfigID: h.keyConfigID}
	due := false
	for _, id := range h.order {
		it := h.iterations[id]
		run := decodeRun(it.run, id)
		if in.KeyConfigID == "" && run != nil {
			in.KeyConfigID = run.KeyConfigID
		}
		if it.outcome != "" && len(it.result) > 0 {
			in.Workspaces = append(in.Workspaces, it.result)
			due = due || endedPatched(it.outcome, it.result)
			continue
		}
		if run == nil || (run.Patch == nil && !it.entered[statePatchWorkspace]) {
			continue
		}
		doc, err := json.Marshal(reminderResult{WorkspaceID: id, WorkspaceName: run.Workspace.WorkspaceName,
			Outcome: rotation.OutcomeRescued, Patched: true,
			PreviousKeyConfigID: run.Workspace.PreviousManagedKeyID, PreviousKeyARN: run.Workspace.PreviousManagedKeyARN})
		if err != nil {
			continue
		}
		in.Workspaces = append(in.Workspaces, doc)
		due = true
	}
	if !due {
		return nil
	}
	return in
}

// endedPatched is the definition's AnyRotated? for one ended iteration: rotated, rotated with
// compute down, or patched.
func endedPatched(outcome string, result json.RawMessage) bool {
	if outcome == rotation.OutcomeRotated || outcome == rotation.OutcomeRotatedComputeDown {
		return true
	}
	var r struct {
		Patched bool `json:"patched"`
	}
	_ = json.Unmarshal(result, &r)
	return r.Patched
}

// scheduleReminder starts the retirement reminder the execution did not reach. A reminder of that
// name that exists already (the execution scheduled it before it ended, or an earlier delivery of
// this event did) is success, as in the definition's Catch.
func (h *Handler) scheduleReminder(ctx context.Context, in *reminderInput) (name string, err error) {
	doc, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("encode the reminder input: %w", err)
	}
	name = ReminderName(in.Execution)
	_, err = h.Reminders.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(h.Config.ReminderStateMachineARN),
		Name:            aws.String(name),
		Input:           aws.String(string(doc)),
	})
	var exists *sfntypes.ExecutionAlreadyExists
	if errors.As(err, &exists) {
		return name, nil
	}
	return name, err
}
