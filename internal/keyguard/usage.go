package keyguard

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/databricks/databricks-sdk-go/service/provisioning"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// AccountAPI lists what the guard reads from the Databricks account.
type AccountAPI interface {
	ListKeyConfigs(ctx context.Context) ([]provisioning.CustomerManagedKey, error)
	ListWorkspaces(ctx context.Context) ([]provisioning.Workspace, error)
}

var _ AccountAPI = (*dbclient.Account)(nil)

// ExecutionsAPI reads the retirement reminder executions.
type ExecutionsAPI interface {
	ListExecutions(ctx context.Context, params *sfn.ListExecutionsInput, optFns ...func(*sfn.Options)) (*sfn.ListExecutionsOutput, error)
	DescribeExecution(ctx context.Context, params *sfn.DescribeExecutionInput, optFns ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

var _ ExecutionsAPI = (*sfn.Client)(nil)

// Use is how a workspace depends on a key.
type Use string

// Uses.
const (
	UseManagedServices Use = "managed_services"
	UseStorage         Use = "storage"
	UsePreviousKey     Use = "previous key within 24 h"
)

// WorkspaceAtRisk is one workspace that depends on the key, and how.
type WorkspaceAtRisk struct {
	WorkspaceID   string `json:"workspace_id"`
	WorkspaceName string `json:"workspace_name"`
	Use           Use    `json:"use"`
	// KeyConfigID is the key configuration that holds the key: the one in use, or for a previous
	// key the one the rotation moved the workspace off.
	KeyConfigID string `json:"key_config_id"`
	// RotationExecution and RetirableAt are set for a previous key: the rotation that moved the
	// workspace off the key, and when Databricks stops needing it.
	RotationExecution string `json:"rotation_execution,omitempty"`
	RetirableAt       string `json:"retirable_at,omitempty"`
}

// PreviousKeyWindow is how long Databricks may still need a key after a rotation moved a workspace
// off it; the retirement reminder waits as long (its WaitOneDay state).
const PreviousKeyWindow = 24 * time.Hour

// maxExecutionPages bounds the reminder listing (100 executions a page); it only guards against a
// token that never ends, since the listing stops at the first execution older than the window.
const maxExecutionPages = 100

// workspacesAtRisk lists the workspaces that depend on keyARN now or did within PreviousKeyWindow,
// ordered by workspace id and use.
func (h *Handler) workspacesAtRisk(ctx context.Context, log *slog.Logger, keyARN string) ([]WorkspaceAtRisk, error) {
	current, err := h.currentUsers(ctx, keyARN)
	if err != nil {
		return nil, err
	}
	previous, err := h.previousKeyUsers(ctx, log, keyARN)
	if err != nil {
		return nil, err
	}
	all := append(current, previous...)
	slices.SortFunc(all, func(a, b WorkspaceAtRisk) int {
		if c := compareIDs(a.WorkspaceID, b.WorkspaceID); c != 0 {
			return c
		}
		if c := strings.Compare(string(a.Use), string(b.Use)); c != 0 {
			return c
		}
		return strings.Compare(a.KeyConfigID, b.KeyConfigID)
	})
	// Two reminders can name the same workspace and key (a rotation re-run); keep one.
	return slices.CompactFunc(all, func(a, b WorkspaceAtRisk) bool {
		return a.WorkspaceID == b.WorkspaceID && a.Use == b.Use && a.KeyConfigID == b.KeyConfigID
	}), nil
}

func (h *Handler) currentUsers(ctx context.Context, keyARN string) ([]WorkspaceAtRisk, error) {
	configs, err := h.Account.ListKeyConfigs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list Databricks key configurations: %w", err)
	}
	holds := map[string]bool{}
	for _, c := range configs {
		if c.AwsKeyInfo != nil && sameARN(c.AwsKeyInfo.KeyArn, keyARN) {
			holds[c.CustomerManagedKeyId] = true
		}
	}
	if len(holds) == 0 {
		return nil, nil
	}
	workspaces, err := h.Account.ListWorkspaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("list Databricks workspaces: %w", err)
	}
	var out []WorkspaceAtRisk
	for _, ws := range workspaces {
		id := strconv.FormatInt(ws.WorkspaceId, 10)
		if cfg := ws.ManagedServicesCustomerManagedKeyId; holds[cfg] {
			out = append(out, WorkspaceAtRisk{WorkspaceID: id, WorkspaceName: ws.WorkspaceName, Use: UseManagedServices, KeyConfigID: cfg})
		}
		if cfg := ws.StorageCustomerManagedKeyId; holds[cfg] {
			out = append(out, WorkspaceAtRisk{WorkspaceID: id, WorkspaceName: ws.WorkspaceName, Use: UseStorage, KeyConfigID: cfg})
		}
	}
	return out, nil
}

// reminderInput is the input of a retirement reminder execution (statemachine/rotation.asl.json,
// ScheduleRetirementReminder).
type reminderInput struct {
	Execution  string `json:"execution"`
	Workspaces []struct {
		WorkspaceID         flexibleID `json:"workspace_id"`
		WorkspaceName       string     `json:"workspace_name"`
		Outcome             string     `json:"outcome"`
		PreviousKeyConfigID string     `json:"previous_key_config_id"`
		PreviousKeyARN      string     `json:"previous_key_arn"`
		Summary             *struct {
			Patched bool `json:"patched"`
		} `json:"summary"`
	} `json:"workspaces"`
}

// previousKeyMayBeNeeded says whether a reminder's workspace may still need its previous key: its
// PATCH took, whatever happened after. ROTATED and ROTATED_COMPUTE_DOWN are on the new key; a
// FAILED run counts when its report says the PATCH was sent (a revert or a failed confirmation can
// still leave Databricks on the new key for a while), or when it has no report to say otherwise.
func previousKeyMayBeNeeded(outcome string, summary *struct {
	Patched bool `json:"patched"`
}) bool {
	switch outcome {
	case rotation.OutcomeRotated, rotation.OutcomeRotatedComputeDown, rotation.OutcomeRescued:
		return true
	case rotation.OutcomeFailed:
		return summary == nil || summary.Patched
	}
	return false
}

// flexibleID accepts a workspace id written as a string or as a JSON number.
type flexibleID string

func (f *flexibleID) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*f = flexibleID(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("workspace_id must be a string or a number")
	}
	*f = flexibleID(s)
	return nil
}

// previousKeyUsers reads the running reminder executions started within the window: AWS lists
// executions newest first, so the listing stops at the first older one.
func (h *Handler) previousKeyUsers(ctx context.Context, log *slog.Logger, keyARN string) ([]WorkspaceAtRisk, error) {
	now := h.now()
	var (
		out   []WorkspaceAtRisk
		token *string
	)
	for range maxExecutionPages {
		page, err := h.Executions.ListExecutions(ctx, &sfn.ListExecutionsInput{
			StateMachineArn: aws.String(h.Config.ReminderStateMachineARN),
			StatusFilter:    sfntypes.ExecutionStatusRunning,
			MaxResults:      100,
			NextToken:       token,
		})
		if err != nil {
			return nil, fmt.Errorf("list running retirement reminders: %w", err)
		}
		for _, item := range page.Executions {
			started := aws.ToTime(item.StartDate)
			if !started.IsZero() && now.Sub(started) >= PreviousKeyWindow {
				return out, nil
			}
			found, err := h.reminderWorkspaces(ctx, log, aws.ToString(item.ExecutionArn), keyARN, started)
			if err != nil {
				return nil, err
			}
			out = append(out, found...)
		}
		if aws.ToString(page.NextToken) == "" {
			return out, nil
		}
		token = page.NextToken
	}
	return nil, fmt.Errorf("list running retirement reminders: more than %d pages", maxExecutionPages)
}

func (h *Handler) reminderWorkspaces(ctx context.Context, log *slog.Logger, executionARN, keyARN string, started time.Time) ([]WorkspaceAtRisk, error) {
	desc, err := h.Executions.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(executionARN)})
	if errorCode(err) == "ExecutionDoesNotExist" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe retirement reminder %s: %w", executionARN, err)
	}
	if desc.Status != sfntypes.ExecutionStatusRunning {
		// It closed between the listing and now: the window has passed.
		return nil, nil
	}
	var in reminderInput
	if err := json.Unmarshal([]byte(aws.ToString(desc.Input)), &in); err != nil {
		// Retrying cannot fix an input; the other reminders still count.
		log.WarnContext(ctx, "retirement reminder input unreadable; its workspaces are not checked", "execution_arn", executionARN, "error", err.Error())
		return nil, nil
	}
	var out []WorkspaceAtRisk
	for _, ws := range in.Workspaces {
		if !previousKeyMayBeNeeded(ws.Outcome, ws.Summary) || !sameARN(ws.PreviousKeyARN, keyARN) {
			continue
		}
		r := WorkspaceAtRisk{
			WorkspaceID: string(ws.WorkspaceID), WorkspaceName: ws.WorkspaceName, Use: UsePreviousKey,
			KeyConfigID: ws.PreviousKeyConfigID, RotationExecution: in.Execution,
		}
		if !started.IsZero() {
			r.RetirableAt = started.Add(PreviousKeyWindow).UTC().Format(time.RFC3339)
		}
		out = append(out, r)
	}
	return out, nil
}

// sameARN compares key ARNs; key ids are hex, which KMS prints in lower case but accepts in any.
func sameARN(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

// compareIDs orders workspace ids numerically when both are digits.
func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
