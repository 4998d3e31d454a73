package operator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// RollbackAPI is what rollback needs: the rolled-back execution and its history, and a start.
type RollbackAPI interface {
	DescribeAPI
	HistoryAPI
	StartAPI
}

var _ RollbackAPI = (*sfn.Client)(nil)

// rollback starts, through the same state machine, the rotation of an execution's rotated workspaces
// back to each one's previous managed services key configuration. The state machine's Validate
// refuses it before anything stops when the previous key is no longer usable (the KMS check of every
// rotation) or when a workspace is no longer on the configuration that execution set.
func (a *App) rollback(ctx context.Context, args []string) error {
	fs := newFlagSet("rollback")
	sm := fs.String("state-machine", "", "")
	watch := fs.Bool("watch", false, "")
	printOnly := fs.Bool("print", false, "")
	positional, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return usageErrorf("want one EXECUTION to roll back (an execution ARN, or an execution name with --state-machine), got %d arguments", len(positional))
	}
	arn, err := executionARN(positional[0], a.stateMachine(*sm))
	if err != nil {
		return err
	}
	exec, _ := parseStatesARN(arn)
	machine := fmt.Sprintf("arn:%s:states:%s:%s:stateMachine:%s", exec.partition, exec.region, exec.account, exec.machine)
	api, err := a.client(ctx)
	if err != nil {
		return err
	}
	inputs, err := RollbackInputs(ctx, api, arn)
	if err != nil {
		return err
	}
	for _, in := range inputs {
		doc, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode the rollback input: %w", err)
		}
		// The same checks as any start: a rollback input is an ordinary rotation input.
		if _, err := checkRequest(doc, false); err != nil {
			return err
		}
		if *printOnly {
			fmt.Fprintf(a.Stdout, "%s\n", doc)
			continue
		}
		name := rollbackName(exec.execution, in.RollbackOf.PreviousKeyConfigID)
		started, err := startExecution(ctx, api, machine, name, string(doc))
		if err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "Started rollback %s of %s: workspaces %s back to key configuration %s (%s)\n",
			name, exec.execution, strings.Join(in.WorkspaceIDs, ", "), in.RollbackOf.PreviousKeyConfigID, in.KeyARN)
		fmt.Fprintf(a.Stdout, "%-*s%s\n", labelWidth, "Execution", started)
		fmt.Fprintf(a.Stdout, "%-*s%s\n", labelWidth, "Console", ConsoleURL(started))
		if !*watch {
			fmt.Fprintf(a.Stdout, "Follow it with: cmkrotate watch %s\n", started)
			continue
		}
		fmt.Fprintln(a.Stdout)
		p, err := a.follow(ctx, api, started)
		if err != nil {
			return err
		}
		if err := outcomeError(p); err != nil {
			return err
		}
	}
	return nil
}

// rollbackName is deterministic, so that running the same rollback twice starts nothing new (Step
// Functions refuses a reused name) instead of a second execution racing the first for the locks.
func rollbackName(execution, previousKeyConfigID string) string {
	sum := sha256.Sum256([]byte(execution + "\x00" + previousKeyConfigID))
	// 9 + 50 + 1 + 8 characters stay within the 80 Step Functions allows; the hash keeps names of
	// long executions that share a prefix apart.
	if r := []rune(execution); len(r) > 50 {
		execution = string(r[:50])
	}
	return "rollback-" + execution + "-" + hex.EncodeToString(sum[:4])
}

// RollbackInputs reads an execution's history for what it did to each workspace and returns the
// inputs that move its rotated workspaces back, one per previous key configuration (a rotation
// input carries one key). Only the managed services key is moved back: a storage key cannot be
// replaced on a running workspace, so a storage key the rotation added stays.
func RollbackInputs(ctx context.Context, api RollbackAPI, arn string) ([]rotation.Request, error) {
	desc, err := api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)}, inRegionOf(arn))
	if err != nil {
		return nil, fmt.Errorf("read execution %s: %w", arn, err)
	}
	if s := snapshotOf(desc); !s.Closed() {
		return nil, fmt.Errorf("execution %s is still %s: roll it back once it has ended", arn, s.Status)
	}
	var (
		plan        *rotation.Plan
		keyConfigID string
		results     []Result
		token       *string
	)
	for {
		out, err := api.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{
			ExecutionArn: aws.String(arn), IncludeExecutionData: aws.Bool(true), MaxResults: 1000, NextToken: token,
		}, inRegionOf(arn))
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", arn, err)
		}
		for _, ev := range out.Events {
			d := ev.StateExitedEventDetails
			if d == nil {
				continue
			}
			var state struct {
				Plan      *rotation.Plan      `json:"plan"`
				KeyConfig *rotation.KeyConfig `json:"key_config"`
			}
			if json.Unmarshal([]byte(deref(d.Output)), &state) != nil {
				continue
			}
			// Map iterations carry their own documents; only the top-level states hold these.
			switch deref(d.Name) {
			case "Validate":
				plan = state.Plan
			case "RegisterKeyConfig":
				if state.KeyConfig != nil {
					keyConfigID = state.KeyConfig.KeyConfigID
				}
			case "RotateWorkspaces", "CollectOutcomes":
				// CollectOutcomes names the Map's results $.results (the Map writes them over its
				// $.targets); histories written before it carry them in the Map's own output.
				if found, _, ok := resultsOf(deref(d.Output)); ok {
					results = found
				}
			}
		}
		if token = out.NextToken; token == nil {
			break
		}
	}
	if plan == nil || keyConfigID == "" || plan.DryRun {
		return nil, fmt.Errorf("execution %s changed no workspace (rejected, a dry run, or ended before the key configuration was registered): nothing to roll back", arn)
	}

	name := arn[strings.LastIndex(arn, ":")+1:]
	var inputs []rotation.Request
	byPrevious := map[string]int{}
	var refused []string
	for _, r := range results {
		if r.Outcome != rotation.OutcomeRotated && r.Outcome != rotation.OutcomeRotatedComputeDown {
			continue
		}
		i := slices.IndexFunc(plan.Workspaces, func(w rotation.WorkspaceTarget) bool { return w.WorkspaceID == r.WorkspaceID })
		if i < 0 {
			continue
		}
		w := plan.Workspaces[i]
		switch {
		case !rotation.HasUseCase(plan.UseCases, rotation.UseCaseManagedServices) || w.PreviousManagedKeyID == keyConfigID:
			continue // the managed services key did not change: nothing to move back
		case w.PreviousManagedKeyID == "" || w.PreviousManagedKeyARN == "":
			refused = append(refused, fmt.Sprintf("workspace %s had no managed services key configuration before %s: Databricks cannot remove one, so there is nothing to move it back to", w.WorkspaceID, name))
			continue
		}
		k, ok := byPrevious[w.PreviousManagedKeyID]
		if !ok {
			k = len(inputs)
			byPrevious[w.PreviousManagedKeyID] = k
			inputs = append(inputs, rotation.Request{
				KeyARN:   w.PreviousManagedKeyARN,
				UseCases: []string{rotation.UseCaseManagedServices},
				RollbackOf: &rotation.RollbackOf{
					Execution: name, KeyConfigID: keyConfigID, PreviousKeyConfigID: w.PreviousManagedKeyID,
				},
			})
		}
		inputs[k].WorkspaceIDs = append(inputs[k].WorkspaceIDs, w.WorkspaceID)
	}
	if len(refused) > 0 {
		return nil, &invalidInputError{problems: refused}
	}
	if len(inputs) == 0 {
		return nil, fmt.Errorf("execution %s rotated no workspace's managed services key: nothing to roll back", arn)
	}
	return inputs, nil
}
