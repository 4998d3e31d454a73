// Package hygiene deletes the key configurations a rotation moved workspaces off, once the retirement
// reminder has run (24 hours later), and only those no workspace of the account references.
//
// It is off unless the deployment turns it on (KEY_CONFIG_HYGIENE=true). Every configuration it
// considers ends in one event: "Key Configuration Deleted", or "Key Configuration Kept" with why.
// A configuration is never deleted while a workspace references it for managed services or storage;
// while any workspace is not RUNNING (an update in flight may be moving it onto the configuration,
// and the list shows the old ids until it ends), nothing is deleted at all.
package hygiene

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/provisioning"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventpub"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// Event detail types of this task.
const (
	DetailDeleted = "Key Configuration Deleted"
	DetailKept    = "Key Configuration Kept"
)

// Account is the part of the Databricks account API the task needs.
type Account interface {
	ListWorkspaces(ctx context.Context) ([]provisioning.Workspace, error)
	ListKeyConfigs(ctx context.Context) ([]provisioning.CustomerManagedKey, error)
	DeleteKeyConfig(ctx context.Context, id string) error
}

// Events publishes the outcome of each configuration.
type Events interface {
	PutEvents(ctx context.Context, params *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ Events = (*eventbridge.Client)(nil)

// Task is the KeyConfigHygiene task of the retirement reminder.
type Task struct {
	Account  Account
	Events   Events
	EventBus string
	// Enabled is the deployment's KeyConfigHygiene setting; off, the task does nothing at all.
	Enabled bool
}

// Input is the retirement reminder's input: the rotation's execution, the configuration it set, and
// its per-workspace results (each with the previous configuration).
type Input struct {
	Execution   string `json:"execution"`
	KeyARN      string `json:"key_arn"`
	KeyConfigID string `json:"key_config_id"`
	Workspaces  []struct {
		Outcome             string `json:"outcome"`
		PreviousKeyConfigID string `json:"previous_key_config_id"`
	} `json:"workspaces"`
}

// Reference is a workspace that uses a configuration.
type Reference struct {
	WorkspaceID   string `json:"workspace_id"`
	WorkspaceName string `json:"workspace_name"`
	// As is managed_services or storage.
	As string `json:"as"`
}

// Decision is what happened to one configuration; it is also the event's detail.
type Decision struct {
	KeyConfigID       string      `json:"key_config_id"`
	KeyARN            string      `json:"key_arn,omitempty"`
	Deleted           bool        `json:"deleted"`
	AlreadyAbsent     bool        `json:"already_absent,omitempty"`
	Reason            string      `json:"reason"`
	ReferencedBy      []Reference `json:"referenced_by,omitempty"`
	RotationExecution string      `json:"rotation_execution"`
}

// Output is the task's result in the reminder's state.
type Output struct {
	Enabled   bool       `json:"enabled"`
	Decisions []Decision `json:"decisions"`
}

// Handle considers each previous configuration of the rotation's moved workspaces.
func (t *Task) Handle(ctx context.Context, in Input) (Output, error) {
	if !t.Enabled {
		return Output{Decisions: []Decision{}}, nil
	}
	var candidates []string
	for _, w := range in.Workspaces {
		if w.Outcome != rotation.OutcomeRotated && w.Outcome != rotation.OutcomeRotatedComputeDown {
			continue
		}
		id := w.PreviousKeyConfigID
		if id != "" && id != in.KeyConfigID && !slices.Contains(candidates, id) {
			candidates = append(candidates, id)
		}
	}
	out := Output{Enabled: true, Decisions: []Decision{}}
	if len(candidates) == 0 {
		return out, nil
	}
	workspaces, err := t.Account.ListWorkspaces(ctx)
	if err != nil {
		return Output{}, fmt.Errorf("listing the account's workspaces: %w", err)
	}
	configs, err := t.Account.ListKeyConfigs(ctx)
	if err != nil {
		return Output{}, fmt.Errorf("listing key configurations: %w", err)
	}
	var unsettled []string
	for _, ws := range workspaces {
		if ws.WorkspaceStatus != provisioning.WorkspaceStatusRunning {
			unsettled = append(unsettled, fmt.Sprintf("%d (%s) is %s", ws.WorkspaceId, ws.WorkspaceName, ws.WorkspaceStatus))
		}
	}
	for _, id := range candidates {
		d := Decision{KeyConfigID: id, RotationExecution: in.Execution}
		if i := slices.IndexFunc(configs, func(c provisioning.CustomerManagedKey) bool { return c.CustomerManagedKeyId == id }); i >= 0 && configs[i].AwsKeyInfo != nil {
			d.KeyARN = configs[i].AwsKeyInfo.KeyArn
		}
		d.ReferencedBy = referencesTo(id, workspaces)
		switch {
		case len(d.ReferencedBy) > 0:
			d.Reason = fmt.Sprintf("still referenced by %d workspace(s)", len(d.ReferencedBy))
		case len(unsettled) > 0:
			d.Reason = fmt.Sprintf("not deleted while a workspace is not RUNNING (an update in flight may be moving it onto this configuration): %v", unsettled)
		default:
			if err := t.delete(ctx, &d); err != nil {
				return Output{}, err
			}
		}
		if err := t.publish(ctx, d); err != nil {
			return Output{}, err
		}
		out.Decisions = append(out.Decisions, d)
	}
	return out, nil
}

// delete deletes an unreferenced configuration. Databricks refusing it (a workspace started using it
// since the list) keeps it with Databricks's reason; one already gone counts as deleted, so that a
// retried task converges.
func (t *Task) delete(ctx context.Context, d *Decision) error {
	err := t.Account.DeleteKeyConfig(ctx, d.KeyConfigID)
	var apiErr *apierr.APIError
	switch {
	case err == nil:
		d.Deleted, d.Reason = true, "no workspace of the account references it"
	case errors.Is(err, apierr.ErrNotFound):
		d.Deleted, d.AlreadyAbsent, d.Reason = true, true, "already deleted"
	case errors.As(err, &apiErr) && apiErr.StatusCode == 400:
		d.Reason = "Databricks refused the deletion: " + apiErr.Message
	default:
		return fmt.Errorf("deleting key configuration %s: %w", d.KeyConfigID, err)
	}
	return nil
}

func referencesTo(id string, workspaces []provisioning.Workspace) []Reference {
	var refs []Reference
	for _, ws := range workspaces {
		wsID := strconv.FormatInt(ws.WorkspaceId, 10)
		if ws.ManagedServicesCustomerManagedKeyId == id {
			refs = append(refs, Reference{WorkspaceID: wsID, WorkspaceName: ws.WorkspaceName, As: "managed_services"})
		}
		if ws.StorageCustomerManagedKeyId == id {
			refs = append(refs, Reference{WorkspaceID: wsID, WorkspaceName: ws.WorkspaceName, As: "storage"})
		}
	}
	return refs
}

func (t *Task) publish(ctx context.Context, d Decision) error {
	detailType := DetailKept
	if d.Deleted {
		detailType = DetailDeleted
	}
	if err := eventpub.Publish(ctx, t.Events, t.EventBus, detailType, d); err != nil {
		return fmt.Errorf("publishing %s for %s: %w", detailType, d.KeyConfigID, err)
	}
	return nil
}
