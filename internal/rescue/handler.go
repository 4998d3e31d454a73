package rescue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventpub"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
)

// DescribeAPI reads an execution's status, input, error and cause.
type DescribeAPI interface {
	DescribeExecution(ctx context.Context, params *sfn.DescribeExecutionInput, optFns ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

// PutEventsAPI publishes the Rotation Failed events.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, params *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// LockReleaser frees the workspace locks an execution owns (and only those).
type LockReleaser interface {
	Release(ctx context.Context, in wslock.ReleaseInput) (wslock.Released, error)
}

// InventoryLoader reads an inventory stored by reference.
type InventoryLoader interface {
	Load(ctx context.Context, inv rotation.Inventory) (rotation.Inventory, error)
}

var (
	_ DescribeAPI     = (*sfn.Client)(nil)
	_ PutEventsAPI    = (*eventbridge.Client)(nil)
	_ LockReleaser    = (*wslock.Locks)(nil)
	_ InventoryLoader = (*invstore.Store)(nil)
)

// Handler is the rescue Lambda.
type Handler struct {
	Config     Config
	Executions DescribeAPI
	History    HistoryAPI
	Events     PutEventsAPI
	Locks      LockReleaser
	// Reminders starts the retirement reminder of an execution that ended after a PATCH took.
	Reminders StartExecutionAPI
	// Inventories reads inventories stored in Config.InventoryBucket; nil reports references as
	// they are.
	Inventories InventoryLoader
	// InlineLimit is the largest inventory (JSON bytes) put in an event whole; 0 means
	// invstore.DefaultInlineLimit. A larger one is reported by reference and counts.
	InlineLimit int
	// Log receives the records of each event; nil discards.
	Log *slog.Logger
}

// Handle processes one execution status change. It returns nil for an event it does not act on,
// and an error when a call it needs fails, so that the invocation is retried.
func (h *Handler) Handle(ctx context.Context, ev events.CloudWatchEvent) error {
	log := h.logger()
	sc, err := ParseEvent(ev, h.Config.RotationStateMachineARN)
	// A workspace's child execution (statemachine/workspace-rotation.asl.json) is rescued the same
	// way, for its one workspace.
	child := false
	if child2 := h.Config.WorkspaceRotationStateMachineARN; err != nil && child2 != "" && sc.StateMachineARN == child2 {
		sc, err = ParseEvent(ev, child2)
		child = true
	}
	var sk *Skip
	if errors.As(err, &sk) {
		level := slog.LevelInfo
		if sk.Malformed {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "event ignored", "event_id", ev.ID, "execution_arn", sc.ExecutionARN, "status", sc.Status, "reason", sk.Reason)
		return nil
	}
	log = log.With("event_id", ev.ID, "execution_arn", sc.ExecutionARN, "execution", sc.Name, "status", sc.Status)

	desc, err := h.Executions.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(sc.ExecutionARN)})
	var missing *sfntypes.ExecutionDoesNotExist
	if errors.As(err, &missing) {
		log.WarnContext(ctx, "event ignored", "reason", "the execution does not exist: "+err.Error())
		return nil
	}
	if err != nil {
		return h.failed(ctx, log, "describe the execution", err)
	}
	switch desc.Status {
	case sfntypes.ExecutionStatusFailed, sfntypes.ExecutionStatusTimedOut, sfntypes.ExecutionStatusAborted:
	default:
		// Redriven since the event (RUNNING, PENDING_REDRIVE, or SUCCEEDED after a redrive): the
		// execution holds its locks again and reports for itself.
		log.InfoContext(ctx, "event ignored", "reason", fmt.Sprintf("the execution is %s now: it was redriven and reports for itself", desc.Status))
		return nil
	}
	end := ending{executionARN: sc.ExecutionARN, name: sc.Name, status: string(desc.Status),
		err: firstNonEmpty(aws.ToString(desc.Error), sc.Error), cause: firstNonEmpty(aws.ToString(desc.Cause), sc.Cause),
		redriveCount: sc.RedriveCount}
	if desc.RedriveCount != nil {
		end.redriveCount = int(*desc.RedriveCount)
	}

	hist, err := readHistory(ctx, h.History, sc.ExecutionARN, sc.Name)
	if err != nil {
		return h.failed(ctx, log, "read the execution history", err)
	}
	req := requestOf(aws.ToString(desc.Input), sc.Input, hist.input)
	// The lock of a workspace is owned by the request's execution, also while its child runs.
	lockOwner := sc.Name
	if child {
		req, lockOwner = childRequestOf(firstNonEmpty(aws.ToString(desc.Input), sc.Input, hist.input))
	}
	if req.problem != "" {
		log.WarnContext(ctx, "the execution input is not a rotation request; workspaces come from the history alone", "problem", req.problem)
	}
	if !child {
		h.followChildren(ctx, hist)
	}
	findings, dryRun := assess(hist, req)

	var downIDs, otherIDs []string
	for _, f := range findings {
		d := h.detail(ctx, log, f, end, req)
		if err := h.publish(ctx, d); err != nil {
			// The locks stay taken until this event is out: see the package documentation.
			return h.failed(ctx, log, "publish Rotation Failed for workspace "+f.workspaceID, err)
		}
		if f.rescue == RescueComputeDown {
			downIDs = append(downIDs, f.workspaceID)
		} else {
			otherIDs = append(otherIDs, f.workspaceID)
		}
	}

	// Before the locks go, like the events: a failed start is retried with the whole invocation, and
	// the reminder keeps the key guard watching the previous key of every patched workspace.
	// A child's reminder is its request's: the request schedules it when the child ends badly
	// (ChildFailed counts as patched) and its rescue does when the request ended first.
	reminder := ""
	if in := reminderOf(hist, req, dryRun); in != nil && !child {
		name, err := h.scheduleReminder(ctx, in)
		if err != nil {
			return h.failed(ctx, log, "start the retirement reminder "+name, err)
		}
		reminder = name
	}

	lockIDs := slices.Clone(req.ids)
	for _, id := range append(hist.lockIDs, hist.order...) {
		if !slices.Contains(lockIDs, id) {
			lockIDs = append(lockIDs, id)
		}
	}
	if !child {
		// A workspace handed to a child execution that had not ended is the child's to report and
		// unlock (its own rescue), so that its lock is never freed before its event is out.
		lockIDs = slices.DeleteFunc(lockIDs, func(id string) bool { return hist.delegated(id) })
	}
	released, err := h.Locks.Release(ctx, wslock.ReleaseInput{Lock: &wslock.Lock{Owner: lockOwner, WorkspaceIDs: lockIDs}})
	if err != nil {
		return h.failed(ctx, log, "release the workspace locks", err)
	}

	attrs := []any{"history_events", hist.events, "iterations_started", hist.iterationsStarted, "dry_run", dryRun,
		"compute_possibly_down", downIDs, "other_reported", otherIDs, "retirement_reminder", reminder, "locks_released", released.Released}
	if len(downIDs) > 0 {
		log.ErrorContext(ctx, "rotation execution ended with compute possibly stopped; Rotation Failed published", attrs...)
	} else {
		log.InfoContext(ctx, "rotation execution ended; what it left is reported and its locks are released", attrs...)
	}
	return nil
}

// detail builds the event of one finding.
func (h *Handler) detail(ctx context.Context, log *slog.Logger, f finding, end ending, req request) Detail {
	base := baseDetail(ctx, f, end, req)
	d := Detail{Detail: base, EventID: end.eventID(f.workspaceID), ExecutionARN: end.executionARN,
		ExecutionStatus: end.status, Rescue: f.rescue}
	if f.it != nil {
		d.LastState = f.it.lastState
	}
	d.Outcome = rotation.OutcomeFailed
	switch f.rescue {
	case RescueUnreportedFailure:
		// The report the iteration could not publish: its phase, its error, its message.
		d.Message = unreportedMessage(end, base.Message)
		return d
	case RescueNothingStopped:
		d.Phase, d.Error = end.phase(), end.errorDetail()
		d.ComputeStopped, d.StillDownUnknown = false, false
		// An inventory taken just before the end lists what was running, not what was stopped: in an
		// event that says nothing was stopped, it would only invite restarting what never stopped.
		d.Stopped, d.Inventory = nil, nil
		d.Message = nothingStoppedMessage(end, f)
		return d
	}

	// Compute may be down.
	var stepErr *report.ErrorDetail
	if f.run.Error != nil {
		stepErr = base.Error
	}
	d.Phase, d.Error = end.phase(), end.errorDetail()
	d.ComputeStopped = true
	stillDownKnown := f.run.RestartStatus != nil && f.run.RestartStatus.Done
	d.StillDownUnknown = !stillDownKnown
	if !stillDownKnown {
		d.StillDown, d.StillDownCount = nil, 0
	}
	var byRef bool
	d.Inventory, byRef = h.inventory(ctx, log, f.run.Inventory)
	if d.Inventory != nil {
		counts := d.Inventory.Counts
		if counts.Total() == 0 && !byRef {
			counts = rotation.CountOf(*d.Inventory)
		}
		d.Stopped = &counts
	}
	d.Message = computeDownMessage(end, f, d, stepErr, stillDownKnown, byRef)
	return d
}

// inventory returns the inventory to put in the event: a small one whole, a large one as its
// reference and counts (byRef). A reference into the configured bucket is read for that; one that
// cannot be read is reported as it is: it names the object and carries the counts.
func (h *Handler) inventory(ctx context.Context, log *slog.Logger, inv *rotation.Inventory) (_ *rotation.Inventory, byRef bool) {
	if inv == nil || inv.Ref == "" {
		return inv, false
	}
	if h.Inventories == nil || h.Config.InventoryBucket == "" || !strings.HasPrefix(inv.Ref, "s3://"+h.Config.InventoryBucket+"/") {
		return inv, true
	}
	full, err := h.Inventories.Load(ctx, *inv)
	if err != nil {
		log.WarnContext(ctx, "stored inventory not read; the event carries its reference and counts", "ref", inv.Ref, "error", err.Error())
		return inv, true
	}
	full.Counts = rotation.CountOf(full)
	limit := h.InlineLimit
	if limit <= 0 {
		limit = invstore.DefaultInlineLimit
	}
	if doc, err := json.Marshal(full); err != nil || len(doc) > limit {
		ref := *inv
		ref.Counts = full.Counts
		return &ref, true
	}
	return &full, false
}

// EntryError is a PutEvents entry that EventBridge refused although the call succeeded.
type EntryError = eventpub.EntryError

// publish sends one event per call: an event may carry a 64 KiB inventory, and a PutEvents request
// is limited to 256 KiB in all.
func (h *Handler) publish(ctx context.Context, d Detail) error {
	return eventpub.Publish(ctx, h.Events, h.Config.EventBusName, rotation.DetailRotationFailed, d, d.ExecutionARN)
}

// failed logs a failed call and returns it, so that the invocation is retried (or, past the
// retries, reaches the function's failure destination).
func (h *Handler) failed(ctx context.Context, log *slog.Logger, op string, err error) error {
	log.ErrorContext(ctx, "call failed; the invocation will be retried", "operation", op, "error", err.Error())
	return fmt.Errorf("rescue: %s: %w", op, err)
}

func (h *Handler) logger() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
