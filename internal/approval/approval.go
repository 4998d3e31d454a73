// Package approval is the approval gate of the rotation state machine: the AwaitApproval state
// invokes Request with a Step Functions task token, Request publishes "Rotation Awaiting Approval"
// with the plan, and the execution waits until an approver answers the token (cmkrotate approve or
// reject, internal/operator) or the policy's approval timeout rejects it.
//
// The token is the approval capability. It is never put in the event or a log; an approver reads it
// from the execution history (the AwaitApproval TaskScheduled event), which IAM restricts with
// states:GetExecutionHistory on this state machine's executions. states:SendTaskSuccess itself cannot
// be scoped to a resource, so the README's threat model says how to confine it to the approvers.
package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventpub"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// DetailAwaitingApproval is the event published while a rotation waits for an approval.
const DetailAwaitingApproval = "Rotation Awaiting Approval"

// PutEventsAPI publishes the event.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, params *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ PutEventsAPI = (*eventbridge.Client)(nil)

// Input is the AwaitApproval state's Payload.
type Input struct {
	TaskToken    string             `json:"task_token"`
	Execution    string             `json:"execution"`
	ExecutionARN string             `json:"execution_arn"`
	Request      json.RawMessage    `json:"request"`
	Policy       policy.TaskOutput  `json:"policy"`
	Plan         rotation.Plan      `json:"plan"`
	Inventories  []PlannedWorkspace `json:"inventories"`
}

// PlannedWorkspace is one iteration's result of the approval inventory Map: like every workspace
// iteration it ends in a Pass state with workspace_id and an outcome (the rescue reads those), and it
// carries the read-only inventory.
type PlannedWorkspace struct {
	WorkspaceID string              `json:"workspace_id"`
	Outcome     string              `json:"outcome"`
	Inventory   *rotation.Inventory `json:"inventory,omitempty"`
	// Error is set (outcome PLAN_FAILED) when the workspace's compute could not be read.
	Error *rotation.StepError `json:"error,omitempty"`
}

// Detail is the Rotation Awaiting Approval event: what the rotation will do, so that an approver
// decides on the plan and not on a key ARN.
type Detail struct {
	Outcome            string          `json:"outcome"`
	Message            string          `json:"message"`
	Execution          string          `json:"execution"`
	ExecutionARN       string          `json:"execution_arn"`
	KeyARN             string          `json:"key_arn"`
	UseCases           []string        `json:"use_cases"`
	Rules              []string        `json:"rules"`
	Emergency          bool            `json:"emergency"`
	WaitingFor         string          `json:"waiting_for"`
	Until              string          `json:"until"`
	MaxDowntimeSeconds int             `json:"max_downtime_seconds"`
	Window             string          `json:"window,omitempty"`
	Workspaces         []WorkspacePlan `json:"workspaces"`
	Approve            string          `json:"approve"`
	Reject             string          `json:"reject"`
}

// WorkspacePlan is one workspace's part of the plan.
type WorkspacePlan struct {
	WorkspaceID    string          `json:"workspace_id"`
	WorkspaceName  string          `json:"workspace_name"`
	AlreadyOnKey   bool            `json:"already_on_key"`
	AddsStorageKey bool            `json:"adds_storage_key"`
	WillStop       rotation.Counts `json:"will_stop"`
	// PlanError says why will_stop is unknown: the workspace's compute could not be read. The
	// rotation reads it again after the lock, so an approval still stops what runs then.
	PlanError string `json:"plan_error,omitempty"`
}

// Task is the RequestApproval Lambda.
type Task struct {
	Events       PutEventsAPI
	EventBusName string
	Now          func() time.Time
	Log          *slog.Logger
}

// Handle publishes the request for approval. Its return value is not the state's result: the state
// waits for the token's answer.
func (t Task) Handle(ctx context.Context, in Input) (struct{}, error) {
	if in.TaskToken == "" || in.Execution == "" {
		return struct{}{}, taskerr.Errorf[taskerr.InvalidInput]("approval request needs task_token and execution")
	}
	timeout := time.Duration(in.Policy.ApprovalTimeoutSeconds) * time.Second
	d := Detail{Outcome: "AWAITING_APPROVAL", Execution: in.Execution, ExecutionARN: in.ExecutionARN,
		KeyARN: in.Plan.KeyARN, UseCases: in.Plan.UseCases, Rules: in.Policy.Rules, Emergency: in.Policy.Emergency,
		WaitingFor: "approval", Until: t.Now().UTC().Add(timeout).Format(time.RFC3339),
		MaxDowntimeSeconds: in.Policy.BudgetSeconds, Window: in.Policy.Window,
		Approve: "cmkrotate approve " + in.Execution, Reject: "cmkrotate reject " + in.Execution + " --reason '...'"}
	stops := map[string]rotation.Counts{}
	planErrors := map[string]string{}
	for _, run := range in.Inventories {
		if run.Error != nil {
			// The approval Map's items carry the error name only (bounded; the cause is in the history).
			planErrors[run.WorkspaceID] = run.Error.Error
			if run.Error.Cause != "" {
				planErrors[run.WorkspaceID] += ": " + run.Error.Cause
			}
		}
		if run.Inventory != nil {
			c := run.Inventory.Counts
			if c.Total() == 0 && run.Inventory.Ref == "" {
				c = rotation.CountOf(*run.Inventory)
			}
			stops[run.WorkspaceID] = c
		}
	}
	for _, w := range in.Plan.Workspaces {
		d.Workspaces = append(d.Workspaces, WorkspacePlan{WorkspaceID: w.WorkspaceID, WorkspaceName: w.WorkspaceName,
			AlreadyOnKey: w.AlreadyOnKey, AddsStorageKey: w.AddsStorageKey, WillStop: stops[w.WorkspaceID],
			PlanError: planErrors[w.WorkspaceID]})
	}
	d.Message = fmt.Sprintf("Rotation of %d workspace(s) onto %s waits for an approval until %s (rules %v): up to %s of compute downtime per workspace. Nothing is locked or stopped until then; no answer rejects it.",
		len(d.Workspaces), d.KeyARN, d.Until, d.Rules, time.Duration(d.MaxDowntimeSeconds)*time.Second)
	err := eventpub.Publish(ctx, t.Events, t.EventBusName, DetailAwaitingApproval, d, in.ExecutionARN)
	var refused *eventpub.EntryError
	if errors.As(err, &refused) {
		return struct{}{}, taskerr.Errorf[taskerr.AWSUnavailable]("PutEvents refused the approval event: %s", refused.Message)
	}
	if err != nil {
		return struct{}{}, fmt.Errorf("publish approval event: %w", err)
	}
	if t.Log != nil {
		t.Log.InfoContext(ctx, "approval requested", "execution", in.Execution, "until", d.Until)
	}
	return struct{}{}, nil
}
