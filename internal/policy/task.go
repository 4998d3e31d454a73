package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bundled "github.com/cmk-rotator/databricks-cmk-rotator/policy"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// EnvDocument names the variable that replaces the bundled document with an inline one. The
// template never sets it; the sandbox uses it to run scenarios under other policies. Whoever can set
// a function's environment can also replace its code, so it opens no new door (README: threat model).
const EnvDocument = "ROTATION_POLICY"

// Load returns the policy in force: ROTATION_POLICY if set, else the bundled
// policy/rotation-policy.yaml. A malformed document is an error naming every bad entry.
func Load(lookup func(string) (string, bool)) (*Policy, error) {
	if v, ok := lookup(EnvDocument); ok && strings.TrimSpace(v) != "" {
		p, err := Parse([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvDocument, err)
		}
		return p, nil
	}
	p, err := Parse(bundled.Document)
	if err != nil {
		return nil, fmt.Errorf("policy/rotation-policy.yaml: %w", err)
	}
	return p, nil
}

// TaskInput is what the CheckPolicy state sends: the execution input as written.
type TaskInput struct {
	Request json.RawMessage `json:"request"`
	// Compare, instead of Request, asks whether a newer rotation superseded this one while it waited
	// (the CheckNotSuperseded state).
	Compare *CompareInput `json:"compare,omitempty"`
}

// CompareInput is the key ids of the plan validated before a wait and the plan validated after the
// lock.
type CompareInput struct {
	Baseline BaselineKeys  `json:"baseline"`
	Plan     rotation.Plan `json:"plan"`
}

// BaselineKeys is what the state machine keeps of the plan made before a wait (the KeepBaselineKeys
// state): each workspace's key ids, as lists parallel to WorkspaceIDs. Only these are compared, and
// keeping every workspace's whole plan through the rotation would not fit the request's state at
// the per-request cap.
type BaselineKeys struct {
	WorkspaceIDs          []string `json:"workspace_ids"`
	PreviousManagedKeyIDs []string `json:"previous_managed_services_key_ids"`
	PreviousStorageKeyIDs []string `json:"previous_storage_key_ids"`
}

// Baseline is the BaselineKeys of a plan, as KeepBaselineKeys builds them.
func Baseline(plan rotation.Plan) BaselineKeys {
	var b BaselineKeys
	for _, w := range plan.Workspaces {
		b.WorkspaceIDs = append(b.WorkspaceIDs, w.WorkspaceID)
		b.PreviousManagedKeyIDs = append(b.PreviousManagedKeyIDs, w.PreviousManagedKeyID)
		b.PreviousStorageKeyIDs = append(b.PreviousStorageKeyIDs, w.PreviousStorageKeyID)
	}
	return b
}

// TaskOutput is stored at $.policy. WaitUntil is set when the rotation must wait for its window;
// the state machine's Wait reads it (TimestampPath), so no Lambda polls.
type TaskOutput struct {
	Decision
	Emergency     bool   `json:"emergency"`
	BudgetSeconds int    `json:"budget_seconds"`
	WaitUntil     string `json:"wait_until,omitempty"`
	WindowCloses  string `json:"window_closes,omitempty"`
	// Message says, for the events and the operator, what the execution does next.
	Message string `json:"message"`
}

// Task is the CheckPolicy task: the state machine's first step, before any lock or Databricks read.
// It applies the same rules to starts by hand as the trigger applies to events.
type Task struct {
	Policy *Policy
	// Now is the clock (time.Now in main).
	Now func() time.Time
}

// Handle evaluates the execution input. A refusal is PolicyRejected naming the rule.
func (t Task) Handle(_ context.Context, in TaskInput) (TaskOutput, error) {
	if in.Compare != nil {
		return TaskOutput{}, Superseded(in.Compare.Baseline, in.Compare.Plan)
	}
	req, err := rotation.ParseRequest(in.Request)
	if err != nil {
		return TaskOutput{}, err
	}
	preq := Request{WorkspaceIDs: req.WorkspaceIDs, KeyARN: req.KeyARN, KeyAlias: req.KeyAlias,
		UseCases: req.UseCases, Emergency: req.Emergency, DryRun: req.DryRun}
	if req.Trigger != nil {
		preq.Automatic, preq.Actor = true, req.Trigger.Actor
	}
	d, err := t.Policy.Evaluate(preq)
	var refusal *Refusal
	if errors.As(err, &refusal) {
		return TaskOutput{}, taskerr.Errorf[taskerr.PolicyRejected]("%s", refusal.Error())
	}
	if err != nil {
		return TaskOutput{}, taskerr.Errorf[taskerr.InvalidInput]("%v", err)
	}
	out := TaskOutput{Decision: d, Emergency: req.Emergency, BudgetSeconds: int(Budget(req.UseCases) / time.Second)}
	now := t.Now().UTC()
	start, closes, err := d.NextStart(now, Budget(req.UseCases))
	if err != nil {
		return TaskOutput{}, taskerr.Errorf[taskerr.PolicyRejected]("refused by rotation policy rules %s: %v", strings.Join(d.Rules, ","), err)
	}
	if !closes.IsZero() {
		out.WindowCloses = closes.Format(time.RFC3339)
	}
	// A start within a second of now is now: the Wait would only add a transition.
	if start.After(now.Add(time.Second)) {
		out.WaitUntil = start.Format(time.RFC3339)
	}
	out.Message = message(out)
	return out, nil
}

func message(o TaskOutput) string {
	var parts []string
	switch {
	case o.Emergency && o.Window != "":
		parts = append(parts, fmt.Sprintf("emergency: maintenance window %q skipped", o.Window))
	case o.WaitUntil != "":
		parts = append(parts, fmt.Sprintf("waiting for maintenance window %q until %s (closes %s; needs %s)", o.Window, o.WaitUntil, o.WindowCloses, time.Duration(o.BudgetSeconds)*time.Second))
	case o.Window != "":
		parts = append(parts, fmt.Sprintf("inside maintenance window %q until %s", o.Window, o.WindowCloses))
	}
	if o.ApprovalRequired {
		parts = append(parts, fmt.Sprintf("approval required within %s", time.Duration(o.ApprovalTimeoutSeconds)*time.Second))
	}
	if len(parts) == 0 {
		parts = append(parts, "allowed by rules "+strings.Join(o.Rules, ",")+" in mode "+o.Mode)
	}
	return strings.Join(parts, "; ")
}

// Superseded returns RotationSuperseded when a workspace's key ids differ between the plan made
// before a wait and the one made after the lock: another rotation, typically an emergency that did
// not wait, moved it meanwhile, and carrying on would replace the newer key with this older request's.
func Superseded(baseline BaselineKeys, now rotation.Plan) error {
	n := len(baseline.WorkspaceIDs)
	if len(baseline.PreviousManagedKeyIDs) != n || len(baseline.PreviousStorageKeyIDs) != n {
		// Not a baseline KeepBaselineKeys built: carrying on would compare nothing.
		return taskerr.Errorf[taskerr.InvalidInput]("the baseline's key id lists do not match its %d workspaces (%d managed services, %d storage)",
			n, len(baseline.PreviousManagedKeyIDs), len(baseline.PreviousStorageKeyIDs))
	}
	type keys struct{ managed, storage string }
	before := map[string]keys{}
	for i, id := range baseline.WorkspaceIDs {
		before[id] = keys{baseline.PreviousManagedKeyIDs[i], baseline.PreviousStorageKeyIDs[i]}
	}
	var changed []string
	for _, w := range now.Workspaces {
		b, ok := before[w.WorkspaceID]
		if !ok {
			continue
		}
		if b.managed != w.PreviousManagedKeyID || b.storage != w.PreviousStorageKeyID {
			changed = append(changed, fmt.Sprintf("workspace %s moved from key configuration %q to %q", w.WorkspaceID, b.managed, w.PreviousManagedKeyID))
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return taskerr.Errorf[taskerr.RotationSuperseded]("superseded by a newer rotation while this request waited (%s); nothing was stopped; start a new request if this key is still wanted", strings.Join(changed, "; "))
}
