package wslock_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
)

const table = "rotation-locks"

type fixture struct {
	aws   *awsfake.Server
	locks *wslock.Locks
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	srv, err := awsfake.Start(awsfake.Config{Region: "us-west-2"})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	srv.CreateTable(table, "workspace_id")
	db := dynamodb.New(dynamodb.Options{Region: "us-west-2", BaseEndpoint: aws.String(srv.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("x", "y", "")})
	f := &fixture{aws: srv, now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f.locks = &wslock.Locks{DB: db, Table: table, Lease: 5 * time.Hour, Clock: func() time.Time { return f.now }}
	return f
}

func input(execution string, workspaces ...string) wslock.AcquireInput {
	raw, _ := json.Marshal(map[string]any{"workspace_ids": workspaces, "key_arn": "arn:aws:kms:us-west-2:111122223333:key/k"})
	return wslock.AcquireInput{Execution: execution, Request: raw}
}

func TestASecondRotationOfABusyWorkspaceIsRefusedNamingTheHolder(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first, err := f.locks.Acquire(ctx, input("exec-a", "11", "12"))
	require.NoError(t, err)
	assert.Equal(t, []string{"11", "12"}, first.WorkspaceIDs)

	_, err = f.locks.Acquire(ctx, input("exec-b", "12", "13"))
	var busy *taskerr.WorkspaceBusy
	require.True(t, errors.As(err, &busy), "got %v", err)
	assert.Contains(t, busy.Reason, "workspace 12 is being rotated by execution exec-a since 2026-11-26T12:00:00Z")
	assert.Contains(t, busy.Reason, "refused, not queued")
	assert.Len(t, f.aws.Items(table), 2, "all or nothing: workspace 13 was not locked either")
}

func TestARefusalNamesEveryBusyWorkspaceNotOnlyTheFirst(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.locks.Acquire(ctx, input("exec-a", "11", "12"))
	require.NoError(t, err)

	_, err = f.locks.Acquire(ctx, input("exec-b", "10", "11", "12"))
	var busy *taskerr.WorkspaceBusy
	require.True(t, errors.As(err, &busy), "got %v", err)
	assert.Contains(t, busy.Reason, "workspace 11 is being rotated by execution exec-a")
	assert.Contains(t, busy.Reason, "workspace 12 is being rotated by execution exec-a")
	assert.NotContains(t, busy.Reason, "workspace 10 is", "a free workspace is not named busy")
}

func workspaceIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint(1000 + i)
	}
	return ids
}

// A request of more workspaces than one DynamoDB transaction holds (100) takes its locks in several
// transactions; it must still hold all of them or none.
func TestARequestOfMoreThanOneTransactionOfWorkspacesHoldsAllItsLocksOrNone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ids := workspaceIDs(rotation.MaxWorkspacesPerRequest)
	require.Greater(t, len(ids), 100, "the cap is what makes several transactions necessary")

	lock, err := f.locks.Acquire(ctx, input("exec-big", ids...))
	require.NoError(t, err)
	assert.Len(t, lock.WorkspaceIDs, len(ids))
	assert.Len(t, f.aws.Items(table), len(ids), "every workspace is locked")
	released, err := f.locks.Release(ctx, wslock.ReleaseInput{Lock: &lock})
	require.NoError(t, err)
	assert.Len(t, released.Released, len(ids))

	// Two workspaces are busy, one in the second transaction and one in the last: the refusal names
	// both, and the workspaces of the transactions that went through are free again.
	_, err = f.locks.Acquire(ctx, input("exec-small", ids[150], ids[len(ids)-1]))
	require.NoError(t, err)
	_, err = f.locks.Acquire(ctx, input("exec-big", ids...))
	var busy *taskerr.WorkspaceBusy
	require.True(t, errors.As(err, &busy), "got %v", err)
	assert.Contains(t, busy.Reason, "workspace "+ids[150]+" is being rotated by execution exec-small")
	assert.Contains(t, busy.Reason, "workspace "+ids[len(ids)-1]+" is being rotated by execution exec-small")
	assert.Len(t, f.aws.Items(table), 2, "the refused request gave back the locks its first transactions took")
	other, err := f.locks.Acquire(ctx, input("exec-other", ids[0], ids[99], ids[100]))
	require.NoError(t, err, "the workspaces of the refused request's first transactions are free")
	assert.Equal(t, "exec-other", other.Owner)
}

func TestAcquiringAgainForTheSameExecutionSucceeds(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.locks.Acquire(ctx, input("exec-a", "11"))
	require.NoError(t, err)
	_, err = f.locks.Acquire(ctx, input("exec-a", "11"))
	require.NoError(t, err, "a retried LockWorkspaces task must not refuse its own execution")
}

func TestAnExpiredLeaseCanBeTakenOver(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.locks.Acquire(ctx, input("exec-aborted", "11"))
	require.NoError(t, err)
	f.now = f.now.Add(5*time.Hour + time.Second)
	lock, err := f.locks.Acquire(ctx, input("exec-new", "11"))
	require.NoError(t, err)
	assert.Equal(t, "exec-new", lock.Owner)
}

func TestReleaseFreesOnlyTheOwnersLocks(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, err := f.locks.Acquire(ctx, input("exec-a", "11"))
	require.NoError(t, err)
	_, err = f.locks.Acquire(ctx, input("exec-b", "12"))
	require.NoError(t, err)

	impostor := wslock.Lock{Owner: "exec-a", WorkspaceIDs: []string{"11", "12"}}
	released, err := f.locks.Release(ctx, wslock.ReleaseInput{Lock: &impostor})
	require.NoError(t, err)
	assert.Equal(t, []string{"11"}, released.Released, "exec-b's lock on 12 is not exec-a's to free")
	assert.Len(t, f.aws.Items(table), 1)

	again, err := f.locks.Release(ctx, wslock.ReleaseInput{Lock: &a})
	require.NoError(t, err, "releasing twice is harmless")
	assert.Empty(t, again.Released)
	none, err := f.locks.Release(ctx, wslock.ReleaseInput{})
	require.NoError(t, err, "a path that never took a lock may call release")
	assert.Empty(t, none.Released)
}

func TestConcurrentStartsForOneWorkspaceHaveExactlyOneWinner(t *testing.T) {
	f := newFixture(t)
	const racers = 16
	var wg sync.WaitGroup
	errs := make([]error, racers)
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Overlapping sets: every racer wants workspace 42, half also want 43.
			ids := []string{"42"}
			if i%2 == 0 {
				ids = append(ids, "43")
			}
			_, errs[i] = f.locks.Acquire(context.Background(), input(fmt.Sprintf("exec-%02d", i), ids...))
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for _, err := range errs {
		if err == nil {
			winners++
			continue
		}
		var busy *taskerr.WorkspaceBusy
		assert.True(t, errors.As(err, &busy), "a loser is refused as busy, got %v", err)
	}
	assert.Equal(t, 1, winners)
}

func TestAnInvalidInputIsRefusedBeforeAnyLockIsTaken(t *testing.T) {
	f := newFixture(t)
	_, err := f.locks.Acquire(context.Background(), wslock.AcquireInput{Execution: "e", Request: json.RawMessage(`{"workspace_ids": []}`)})
	var invalid *taskerr.InvalidInput
	require.True(t, errors.As(err, &invalid), "got %v", err)
	assert.Empty(t, f.aws.Items(table))
}

// Issue 9, item 5: a redriven execution resumes at the state that failed, after the rescue released
// its locks. The steps that change a workspace take the lock again, or refuse when another
// execution holds it now, without touching the workspace.
func TestARedrivenExecutionTakesItsLockAgainOrRefusesToAct(t *testing.T) {
	ctx := context.Background()
	stop := func(calls *int) func(context.Context, rotation.WorkspaceRun) (string, error) {
		return func(context.Context, rotation.WorkspaceRun) (string, error) { *calls++; return "stopped", nil }
	}
	run := rotation.WorkspaceRun{Workspace: rotation.WorkspaceTarget{WorkspaceID: "11"}, Execution: "exec-a"}

	t.Run("released by the rescue and free: taken again, and the step runs", func(t *testing.T) {
		f := newFixture(t)
		lock, err := f.locks.Acquire(ctx, input("exec-a", "11"))
		require.NoError(t, err)
		_, err = f.locks.Release(ctx, wslock.ReleaseInput{Lock: &lock})
		require.NoError(t, err)
		require.Empty(t, f.aws.Items(table), "the rescue released the lock")

		var calls int
		out, err := wslock.Guard(f.locks, stop(&calls))(ctx, run)
		require.NoError(t, err)
		assert.Equal(t, "stopped", out)
		assert.Equal(t, 1, calls)
		items := f.aws.Items(table)
		require.Len(t, items, 1)
		assert.Contains(t, fmt.Sprint(items[0]), "exec-a", "the lock is the redriven execution's again")

		_, err = f.locks.Acquire(ctx, input("exec-b", "11"))
		var busy *taskerr.WorkspaceBusy
		assert.True(t, errors.As(err, &busy), "a new rotation is refused while the redriven one runs: %v", err)
	})
	t.Run("taken by another rotation meanwhile: WorkspaceBusy, and the step does not run", func(t *testing.T) {
		f := newFixture(t)
		lock, err := f.locks.Acquire(ctx, input("exec-a", "11"))
		require.NoError(t, err)
		_, err = f.locks.Release(ctx, wslock.ReleaseInput{Lock: &lock})
		require.NoError(t, err)
		_, err = f.locks.Acquire(ctx, input("exec-b", "11"))
		require.NoError(t, err)

		var calls int
		_, err = wslock.Guard(f.locks, stop(&calls))(ctx, run)
		var busy *taskerr.WorkspaceBusy
		require.True(t, errors.As(err, &busy), "got %v", err)
		assert.Contains(t, busy.Reason, "execution exec-b")
		assert.Zero(t, calls, "nothing was stopped")
	})
	t.Run("still held by the execution itself: the step runs", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.locks.Acquire(ctx, input("exec-a", "11"))
		require.NoError(t, err)
		var calls int
		_, err = wslock.Guard(f.locks, stop(&calls))(ctx, run)
		require.NoError(t, err)
		assert.Equal(t, 1, calls)
	})
}
