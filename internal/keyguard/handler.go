package keyguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventpub"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// PutEventsAPI publishes the critical event.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, params *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ PutEventsAPI = (*eventbridge.Client)(nil)

// SeverityCritical is the severity of every event the guard publishes.
const SeverityCritical = "CRITICAL"

// KeyInUseAtRisk is the detail of the rotation.DetailKeyInUseAtRisk event.
type KeyInUseAtRisk struct {
	Severity   string            `json:"severity"`
	KeyARN     string            `json:"key_arn"`
	EventName  string            `json:"event_name"`
	EventID    string            `json:"event_id"`
	EventTime  string            `json:"event_time,omitempty"`
	Actor      string            `json:"actor"`
	Workspaces []WorkspaceAtRisk `json:"workspaces"`
	// Undone is true when the key is Enabled again after the guard ran; UndoAction names the undo
	// the guard was configured to make ("" when undo is off or nothing can be undone).
	Undone     bool   `json:"undone"`
	UndoAction string `json:"undo_action"`
	UndoError  string `json:"undo_error"`
	// KeyState is the key state the guard last read (undo only).
	KeyState string `json:"key_state,omitempty"`
	// RestoredPolicy names the policy the guard put back after a PutKeyPolicy (undo only).
	RestoredPolicy string `json:"restored_policy,omitempty"`
	// PolicyProblem says, for a PutKeyPolicy, what the new policy no longer grants Databricks.
	PolicyProblem string `json:"policy_problem,omitempty"`
	Message       string `json:"message"`
}

// Handler is the key guard Lambda.
type Handler struct {
	Config     Config
	KMS        KeyAPI
	Account    AccountAPI
	Executions ExecutionsAPI
	Events     PutEventsAPI
	// Policies reads the key policy snapshots Validate stores, for the undo of a PutKeyPolicy; nil
	// means none are kept (the event then says the previous policy is unknown).
	Policies PolicySnapshots
	// Log receives one record per event; nil discards.
	Log *slog.Logger
	// Now is the clock for the 24-hour window; nil means time.Now.
	Now func() time.Time
}

// Handle processes one EventBridge event. It returns nil for an event it does not act on, and an
// error when a call it needs fails, so that the invocation is retried.
func (h *Handler) Handle(ctx context.Context, ev events.CloudWatchEvent) error {
	log := h.logger()
	kc, err := ParseEvent(ev, h.Config.IgnoredPrincipalARNs)
	if err == nil {
		kc.KeyARN, err = h.resolveKey(ctx, kc)
	}
	var sk *Skip
	if errors.As(err, &sk) {
		level := slog.LevelInfo
		if sk.Malformed {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "event ignored", append(changeAttrs(kc), "reason", sk.Reason)...)
		return nil
	}
	if err != nil {
		return h.failed(ctx, log, kc, "resolve the key", err)
	}

	atRisk, err := h.workspacesAtRisk(ctx, log, kc.KeyARN)
	if err != nil {
		return h.failed(ctx, log, kc, "find the workspaces that depend on the key", err)
	}
	if len(atRisk) == 0 {
		log.InfoContext(ctx, "no Databricks workspace depends on the key; nothing to do", changeAttrs(kc)...)
		return nil
	}

	detail := KeyInUseAtRisk{
		Severity: SeverityCritical, KeyARN: kc.KeyARN, EventName: kc.EventName, EventID: kc.EventID,
		EventTime: kc.EventTime, Actor: kc.Actor, Workspaces: atRisk,
	}
	if kc.Change == ChangePutKeyPolicy {
		problem := h.policyProblem(kc, atRisk)
		if problem == "" {
			log.InfoContext(ctx, "the new key policy still lets Databricks use the key; nothing to do", changeAttrs(kc)...)
			return nil
		}
		detail.PolicyProblem = problem
	}
	var undoErr error
	if h.Config.UndoKeyChanges && kc.Change != ChangeKeyDeleted {
		var u undoResult
		if kc.Change == ChangePutKeyPolicy {
			u = h.undoPolicy(ctx, kc, atRisk)
			detail.RestoredPolicy = u.restoredFrom
		} else {
			u = h.undo(ctx, kc.Change, kc.KeyARN)
		}
		detail.Undone, detail.UndoAction, detail.UndoError, detail.KeyState = u.undone, u.action, u.problem, string(u.keyState)
		if u.err != nil && retryable(u.err) {
			undoErr = u.err
		}
	}
	detail.Message = message(kc, detail)
	if err := h.publish(ctx, detail); err != nil {
		return h.failed(ctx, log, kc, "publish the Key In Use At Risk event", err)
	}
	log.ErrorContext(ctx, "key that Databricks workspaces depend on was changed", append(changeAttrs(kc),
		"workspace_ids", workspaceIDs(atRisk), "undone", detail.Undone, "undo_action", detail.UndoAction, "undo_error", detail.UndoError)...)
	if undoErr != nil {
		return h.failed(ctx, log, kc, "undo "+kc.EventName, undoErr)
	}
	return nil
}

// resolveKey returns the key ARN, resolving a key id or alias with DescribeKey.
func (h *Handler) resolveKey(ctx context.Context, kc KeyChange) (string, error) {
	if kc.KeyARN != "" {
		return kc.KeyARN, nil
	}
	out, err := h.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(kc.KeyRef)})
	switch errorCode(err) {
	case "NotFoundException", "InvalidArnException", "ValidationException":
		return "", malformed("%s %s names no key that KMS knows: %v", kc.EventName, quote(kc.KeyRef), err)
	}
	if err != nil {
		return "", fmt.Errorf("describe key %s: %w", kc.KeyRef, err)
	}
	if out.KeyMetadata == nil || aws.ToString(out.KeyMetadata.Arn) == "" {
		return "", fmt.Errorf("describe key %s: KMS returned no key ARN", kc.KeyRef)
	}
	return aws.ToString(out.KeyMetadata.Arn), nil
}

func (h *Handler) publish(ctx context.Context, detail KeyInUseAtRisk) error {
	return eventpub.Publish(ctx, h.Events, h.Config.EventBusName, rotation.DetailKeyInUseAtRisk, detail, detail.KeyARN)
}

// Consequences, by use, for the message.
const (
	managedServicesConsequence = "it encrypts the workspace's managed services data (notebooks, secrets, SQL queries and query history): once the key is disabled or deleted, that data becomes unreadable as soon as Databricks' cached data key expires, and the workspace cannot be rotated off a key Databricks can no longer use"
	storageConsequence         = "it encrypts the workspace's storage (the DBFS root bucket and, when reuse is on, cluster EBS volumes): DBFS data becomes unreadable and new clusters fail to start"
	previousKeyConsequence     = "a rotation moved the workspace off the key less than 24 hours ago, and Databricks may still need the previous key until retirable_at"
)

// message explains the change and its consequence for the operator who reads the event.
func message(kc KeyChange, d KeyInUseAtRisk) string {
	var b strings.Builder
	switch kc.Change {
	case ChangeScheduleKeyDeletion:
		b.WriteString("Deletion of the KMS key was scheduled; a key pending deletion cannot be used, and once the waiting period ends the key and everything encrypted under it are lost for good (CancelKeyDeletion recovers it until then). ")
	case ChangeDisableKey:
		b.WriteString("The KMS key was disabled, so Databricks can no longer use it (EnableKey restores it). ")
	case ChangeKeyDeleted:
		b.WriteString("The KMS key was deleted and cannot be recovered: data encrypted under it is lost. ")
	case ChangePutKeyPolicy:
		fmt.Fprintf(&b, "The key policy was replaced and no longer lets Databricks use the key (%s). ", d.PolicyProblem)
	}
	uses := map[Use][]string{}
	for _, w := range d.Workspaces {
		uses[w.Use] = append(uses[w.Use], w.WorkspaceID)
	}
	for _, u := range []struct {
		use  Use
		text string
	}{{UseManagedServices, managedServicesConsequence}, {UseStorage, storageConsequence}, {UsePreviousKey, previousKeyConsequence}} {
		if ids := slices.Compact(uses[u.use]); len(ids) > 0 {
			fmt.Fprintf(&b, "Workspace(s) %s (%s): %s. ", strings.Join(ids, ", "), u.use, u.text)
		}
	}
	switch {
	case kc.Change == ChangeKeyDeleted:
		b.WriteString("Nothing can be undone.")
	case kc.Change == ChangePutKeyPolicy && d.Undone:
		fmt.Fprintf(&b, "The key guard put back %s; anything else the new policy changed is undone too: re-apply it with the Databricks statements kept.", d.RestoredPolicy)
	case kc.Change == ChangePutKeyPolicy:
		// KMS keeps no policy history and the CloudTrail record carries only the new policy.
		reason := "UNDO_KEY_CHANGES is off"
		if d.UndoAction != "" {
			reason = "the key guard could not restore the previous policy: " + d.UndoError
		}
		b.WriteString(reason + ". Put back the Databricks statements (from your infrastructure code, or from the key's earlier PutKeyPolicy or CreateKey record in CloudTrail).")
	case d.UndoAction == "":
		b.WriteString("UNDO_KEY_CHANGES is off: the change stands until an operator reverts it.")
	case d.Undone:
		fmt.Fprintf(&b, "The key guard undid the change (%s); the key is Enabled again.", d.UndoAction)
	default:
		fmt.Fprintf(&b, "The key guard could not undo the change (%s): %s.", d.UndoAction, d.UndoError)
	}
	return b.String()
}

// EntryError is a PutEvents entry that EventBridge refused although the call succeeded.
type EntryError = eventpub.EntryError

// failed logs a failed call and returns it, so that the invocation is retried (or, past the
// retries, reaches the function's failure destination).
func (h *Handler) failed(ctx context.Context, log *slog.Logger, kc KeyChange, op string, err error) error {
	attrs := append(changeAttrs(kc), "operation", op, "error", err.Error(), "retryable", retryable(err))
	if retryable(err) {
		log.WarnContext(ctx, "transient failure; the invocation will be retried", attrs...)
	} else {
		log.ErrorContext(ctx, "call failed; an operator must fix the cause", attrs...)
	}
	return fmt.Errorf("%s for event %s: %w", op, kc.EventID, err)
}

// retryable tells a failure that a retry may cure (throttling, 5xx, network) from one that needs an
// operator.
func retryable(err error) bool {
	if transient, refused := eventpub.Transient(err); refused {
		return transient
	}
	if taskerr.TransientAWS(err) {
		return true
	}
	switch taskerr.AtBoundary(err).(type) {
	case *taskerr.DatabricksUnavailable, *taskerr.AWSUnavailable:
		return true
	}
	return false
}

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

func (h *Handler) logger() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func changeAttrs(kc KeyChange) []any {
	attrs := []any{"event_id", kc.EventID, "event_name", kc.EventName}
	if kc.KeyARN != "" {
		attrs = append(attrs, "key_arn", kc.KeyARN)
	} else if kc.KeyRef != "" {
		attrs = append(attrs, "key_ref", kc.KeyRef)
	}
	if kc.Actor != "" {
		attrs = append(attrs, "actor", kc.Actor)
	}
	return attrs
}

func workspaceIDs(ws []WorkspaceAtRisk) []string {
	ids := make([]string, 0, len(ws))
	for _, w := range ws {
		ids = append(ids, w.WorkspaceID)
	}
	return slices.Compact(ids)
}

// policyProblem checks the policy a PutKeyPolicy put on a key in use against what its workspaces
// need: "" when Databricks keeps its grant, else why not. A previous key (within 24 h) needs at
// least the managed services grant. The account condition is not required here: the question is
// whether Databricks can still use the key, not how tightly the grant is scoped.
func (h *Handler) policyProblem(kc KeyChange, atRisk []WorkspaceAtRisk) string {
	if kc.PolicyMissing {
		return "the CloudTrail record does not carry the new policy, so it cannot be checked"
	}
	useCases := []string{rotation.UseCaseManagedServices}
	for _, w := range atRisk {
		if w.Use == UseStorage {
			useCases = []string{rotation.UseCaseManagedServices, rotation.UseCaseStorage}
		}
	}
	partition := "aws"
	if k, err := kmscheck.ParseKeyARN(kc.KeyARN); err == nil {
		partition = k.Partition
	}
	err := keypolicy.Check(kc.Policy, keypolicy.Requirement{
		DatabricksAccountID: h.Config.DatabricksAccountID, Partition: partition, UseCases: useCases,
		AllowMissingAccountCondition: true, KeyARN: kc.KeyARN, GovCloudShard: h.Config.GovCloudShard,
	})
	if err == nil {
		return ""
	}
	var rejected *taskerr.KeyPolicyRejected
	if errors.As(err, &rejected) {
		return rejected.Reason
	}
	return err.Error()
}
