package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventpub"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// PolicyRejection is the detail of the Rotation Rejected event the trigger publishes when the
// rotation policy refuses an event: nothing was started, locked or read in Databricks. Its shape
// follows the state machine's rejection (outcome, message, error) and adds the rule.
type PolicyRejection struct {
	Outcome      string            `json:"outcome"`
	Message      string            `json:"message"`
	Rule         string            `json:"rule"`
	Error        rejectionError    `json:"error"`
	KeyARN       string            `json:"key_arn"`
	WorkspaceIDs []string          `json:"workspace_ids"`
	Actor        string            `json:"actor,omitempty"`
	EventID      string            `json:"event_id"`
	EventName    string            `json:"event_name"`
	Request      *rotation.Request `json:"request"`
}

type rejectionError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// stackAccount is the account of the state machine the trigger starts: this stack's account.
func (c Config) stackAccount() string {
	if parts := strings.Split(c.StateMachineARN, ":"); len(parts) > 4 {
		return parts[4]
	}
	return ""
}

// applyPolicy turns a Start decision into a refusal when the policy does not allow it, and into a
// dry run when a plan-only rule governs a workspace.
func (h *Handler) applyPolicy(d *Decision) *policy.Refusal {
	if h.Policy.PlanOnly(d.WorkspaceIDs) {
		d.Request.DryRun = true
	}
	req := policy.Request{WorkspaceIDs: d.WorkspaceIDs, KeyARN: d.KeyARN, KeyAlias: d.Request.KeyAlias,
		UseCases: d.Request.UseCases, Automatic: true, SessionIssuer: d.ActorRole, DryRun: d.Request.DryRun}
	if d.Request.Trigger != nil {
		req.Actor = d.Request.Trigger.Actor
	}
	_, err := h.Policy.Evaluate(req)
	var refusal *policy.Refusal
	if errors.As(err, &refusal) {
		return refusal
	}
	if err != nil {
		return &policy.Refusal{Rule: policy.DefaultDeny, Reason: err.Error()}
	}
	return nil
}

// reject publishes Rotation Rejected for a refused event and starts nothing.
func (h *Handler) reject(ctx context.Context, log *slog.Logger, d Decision, refusal *policy.Refusal) error {
	req := d.Request
	detail := PolicyRejection{Outcome: "REJECTED", Rule: refusal.Rule,
		Message: "Rotation refused before anything was locked or read: " + refusal.Error(),
		Error:   rejectionError{Type: taskerr.Name(&taskerr.PolicyRejected{}), Message: refusal.Error()},
		KeyARN:  d.KeyARN, WorkspaceIDs: d.WorkspaceIDs, EventID: d.EventID, EventName: d.EventName, Request: &req}
	if req.Trigger != nil {
		detail.Actor = req.Trigger.Actor
	}
	if err := eventpub.Publish(ctx, h.Events, h.Config.EventBusName, rotation.DetailRotationRejected, detail, d.KeyARN); err != nil {
		return h.failed(ctx, log, d, "publish rejection event", err)
	}
	log.WarnContext(ctx, "rotation refused by the policy", append(decisionAttrs(d), "rule", refusal.Rule, "refusal", refusal.Error())...)
	return nil
}

func foreignAccountReason(stack, account string) string {
	return fmt.Sprintf("the event comes from account %q, which is neither this stack's (%s) nor listed in the policy's accounts; nothing was read", account, stack)
}
