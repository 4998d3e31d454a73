package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/smithy-go"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventpub"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// StartExecutionAPI starts the rotation state machine.
type StartExecutionAPI interface {
	StartExecution(ctx context.Context, params *sfn.StartExecutionInput, optFns ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
}

// ListResourceTagsAPI reads a key's tags.
type ListResourceTagsAPI interface {
	ListResourceTags(ctx context.Context, params *kms.ListResourceTagsInput, optFns ...func(*kms.Options)) (*kms.ListResourceTagsOutput, error)
}

// PutEventsAPI publishes the audit events.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, params *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var (
	_ StartExecutionAPI   = (*sfn.Client)(nil)
	_ ListResourceTagsAPI = (*kms.Client)(nil)
	_ PutEventsAPI        = (*eventbridge.Client)(nil)
)

// Handler is the trigger Lambda: Decide, then act on the decision.
type Handler struct {
	Config Config
	SFN    StartExecutionAPI
	KMS    ListResourceTagsAPI
	Events PutEventsAPI
	// Policy decides which workspaces, keys, principals and use cases an event may rotate
	// (internal/policy); required.
	Policy *policy.Policy
	// Log receives one structured record per event; nil discards.
	Log *slog.Logger
}

// A key has at most 50 tags, one page; the bound only guards against a marker that never ends.
const maxTagPages = 20

// Handle processes one EventBridge event. It returns nil for every event it cannot or need not use
// (EventBridge would only retry them) and an error when an AWS call fails, so that transient
// failures are retried and permanent ones reach the failure destination.
func (h *Handler) Handle(ctx context.Context, ev events.CloudWatchEvent) error {
	log := h.logger()
	if h.Policy == nil {
		return errors.New("trigger has no rotation policy; refusing every event")
	}
	// On a shared bus, another account's event is dropped before anything is read or locked.
	if stack := h.Config.stackAccount(); !h.Policy.AcceptsAccount(stack, ev.AccountID) {
		log.InfoContext(ctx, "event ignored", "decision", string(ActionIgnore), "reason", foreignAccountReason(stack, ev.AccountID), "event_id", ev.ID)
		return nil
	}
	d, err := Decide(ctx, h.Config, ev, h.LookupTags)
	if err != nil {
		return h.failed(ctx, log, d, "read key tags", err)
	}
	attrs := decisionAttrs(d)
	switch d.Action {
	case ActionStart:
		if refusal := h.applyPolicy(&d); refusal != nil {
			return h.reject(ctx, log, d, refusal)
		}
		return h.start(ctx, log, d, decisionAttrs(d))
	case ActionAudit:
		return h.audit(ctx, log, d, attrs)
	}
	log.InfoContext(ctx, "event ignored", attrs...)
	return nil
}

func (h *Handler) start(ctx context.Context, log *slog.Logger, d Decision, attrs []any) error {
	input, err := d.Input()
	if err != nil {
		return h.failed(ctx, log, d, "encode execution input", err)
	}
	_, err = h.SFN.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(h.Config.StateMachineARN),
		Name:            aws.String(d.ExecutionName),
		Input:           aws.String(input),
	})
	if errorCode(err) == "ExecutionAlreadyExists" {
		// The same event was delivered again after its execution closed (or with different
		// tags read this time): the first delivery already started the rotation.
		log.InfoContext(ctx, "duplicate delivery: execution already exists", attrs...)
		return nil
	}
	if err != nil {
		return h.failed(ctx, log, d, "start execution", err)
	}
	log.InfoContext(ctx, "rotation started", attrs...)
	return nil
}

func (h *Handler) audit(ctx context.Context, log *slog.Logger, d Decision, attrs []any) error {
	if err := eventpub.Publish(ctx, h.Events, h.Config.EventBusName, rotation.DetailKeyMaterialRotated, d.Audit, d.KeyARN); err != nil {
		return h.failed(ctx, log, d, "publish audit event", err)
	}
	log.InfoContext(ctx, "key material rotation audited", attrs...)
	return nil
}

// LookupTags is the TagLookup backed by KMS ListResourceTags (all pages; NotFoundException wraps
// ErrKeyNotFound).
func (h *Handler) LookupTags(ctx context.Context, keyARN string) (map[string]string, error) {
	tags := map[string]string{}
	var marker *string
	for range maxTagPages {
		out, err := h.KMS.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(keyARN), Marker: marker})
		if errorCode(err) == "NotFoundException" {
			return nil, fmt.Errorf("list tags of %s: %w", keyARN, ErrKeyNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("list tags of %s: %w", keyARN, err)
		}
		for _, t := range out.Tags {
			tags[aws.ToString(t.TagKey)] = aws.ToString(t.TagValue)
		}
		if !out.Truncated || aws.ToString(out.NextMarker) == "" {
			return tags, nil
		}
		marker = out.NextMarker
	}
	return nil, fmt.Errorf("list tags of %s: more than %d pages", keyARN, maxTagPages)
}

// failed logs an AWS failure and returns it. Transient failures (throttling, 5xx, network) are
// retried by the asynchronous invocation; the others need an operator and say so in the log.
func (h *Handler) failed(ctx context.Context, log *slog.Logger, d Decision, op string, err error) error {
	attrs := append(decisionAttrs(d), "operation", op, "error", err.Error())
	if retryable(err) {
		log.WarnContext(ctx, "transient AWS failure; the invocation will be retried", append(attrs, "retryable", true)...)
	} else {
		log.ErrorContext(ctx, "AWS call failed; an operator must fix the cause", append(attrs, "retryable", false)...)
	}
	return fmt.Errorf("%s for event %s: %w", op, d.EventID, err)
}

func (h *Handler) logger() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

func decisionAttrs(d Decision) []any {
	attrs := []any{"decision", string(d.Action), "reason", d.Reason, "event_id", d.EventID, "event_name", d.EventName}
	if d.KeyARN != "" {
		attrs = append(attrs, "key_arn", d.KeyARN)
	}
	if len(d.WorkspaceIDs) > 0 {
		attrs = append(attrs, "workspace_ids", d.WorkspaceIDs)
	}
	if d.ExecutionName != "" {
		attrs = append(attrs, "execution_name", d.ExecutionName, "dry_run", d.Request.DryRun)
	}
	return attrs
}

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// retryable tells a failure that the asynchronous invocation's retries can cure from one that needs
// an operator.
func retryable(err error) bool {
	if transient, refused := eventpub.Transient(err); refused {
		return transient
	}
	return taskerr.TransientAWS(err)
}
