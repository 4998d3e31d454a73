package wslock

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// Hold makes sure the execution holds the workspace's lock before a step changes the workspace:
// it keeps (and extends) a lock the execution owns, takes a free or expired one again, and refuses
// with WorkspaceBusy when another execution holds it.
//
// Why: a Step Functions redrive resumes a closed execution at the state that failed, not at
// LockWorkspaces, while the rescue has already released that execution's locks (it must, or a
// TIMED_OUT run would block the workspace for the whole lease). Without this check a redriven
// execution would stop compute or PATCH a workspace that another rotation may have locked since.
func (l *Locks) Hold(ctx context.Context, workspaceID, execution string) error {
	if workspaceID == "" || execution == "" {
		return taskerr.Errorf[taskerr.InvalidInput]("the workspace lock cannot be checked without the workspace id and the execution name (got %q, %q)", workspaceID, execution)
	}
	now := l.Clock.Now()
	_, err := l.DB.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		TransactItems: []types.TransactWriteItem{l.claim(workspaceID, execution, now, now.Add(l.Lease))},
	})
	var canceled *types.TransactionCanceledException
	switch {
	case errors.As(err, &canceled):
		return l.busy(ctx, []string{workspaceID}, canceled, execution)
	case err != nil:
		return fmt.Errorf("checking the rotation lock of workspace %s: %w", workspaceID, err)
	}
	return nil
}

// Guard runs a task that changes a workspace only while the execution holds the workspace's lock
// (see Hold). The task is not called when the lock is another execution's.
func Guard[Out any](l *Locks, task func(context.Context, rotation.WorkspaceRun) (Out, error)) func(context.Context, rotation.WorkspaceRun) (Out, error) {
	return func(ctx context.Context, run rotation.WorkspaceRun) (Out, error) {
		if err := l.Hold(ctx, run.Workspace.WorkspaceID, run.Execution); err != nil {
			var zero Out
			return zero, err
		}
		return task(ctx, run)
	}
}
