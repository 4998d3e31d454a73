package wsupdate_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wsupdate"
)

const wsID = int64(2002)

type fixture struct {
	fake  *dbfake.Server
	tasks *wsupdate.Tasks
	now   time.Time
	run   rotation.WorkspaceRun
}

func newFixture(t *testing.T, opts dbfake.Options, useCases ...string) *fixture {
	f := &fixture{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	opts.Now = func() time.Time { return f.now }
	f.fake = faketest.Start(t, opts)
	oldID := f.fake.AddKeyConfig(provisioning.CustomerManagedKey{UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES"},
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: "arn:aws:kms:us-west-2:111122223333:key/old", KeyRegion: "us-west-2"}})
	newID := f.fake.AddKeyConfig(provisioning.CustomerManagedKey{UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES", "STORAGE"},
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: "arn:aws:kms:us-west-2:111122223333:key/new", KeyRegion: "us-west-2"}})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: wsID, WorkspaceName: "ws", DeploymentName: "ws", AwsRegion: "us-west-2",
		WorkspaceStatus: provisioning.WorkspaceStatusRunning, ManagedServicesCustomerManagedKeyId: oldID})
	account, err := faketest.Factory(f.fake).Account()
	require.NoError(t, err)
	f.tasks = &wsupdate.Tasks{Account: account, Settings: wsupdate.Settings{ManagedServicesBudget: 5 * time.Minute, StorageBudget: 40 * time.Minute,
		ProvisioningGrace: 30 * time.Minute},
		Clock: func() time.Time { return f.now }}
	if len(useCases) == 0 {
		useCases = []string{rotation.UseCaseManagedServices}
	}
	f.run = rotation.WorkspaceRun{Workspace: rotation.WorkspaceTarget{WorkspaceID: "2002", PreviousManagedKeyID: oldID,
		AddsStorageKey: rotation.HasUseCase(useCases, rotation.UseCaseStorage)}, KeyConfigID: newID, UseCases: useCases}
	return f
}

func (f *fixture) patch(t *testing.T) {
	t.Helper()
	p, err := f.tasks.Patch(context.Background(), f.run)
	require.NoError(t, err)
	f.run.Patch = &p
}

func (f *fixture) check(t *testing.T) (rotation.WorkspaceStat, error) {
	t.Helper()
	st, err := f.tasks.Check(context.Background(), f.run)
	if err == nil {
		f.run.WorkspaceStat = &st
	}
	return st, err
}

func TestPatchSendsOnlyTheManagedServicesFieldAndTheCheckSeesItTake(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.patch(t)
	assert.Equal(t, "managed_services_customer_managed_key_id", f.run.Patch.UpdateMask)
	var patches []dbfake.Request
	for _, r := range f.fake.Requests() {
		if r.Method == "PATCH" {
			patches = append(patches, r)
		}
	}
	require.Len(t, patches, 1)
	assert.JSONEq(t, `{"managed_services_customer_managed_key_id":"`+f.run.KeyConfigID+`"}`, string(patches[0].Body))
	assert.Contains(t, patches[0].RawQuery, "update_mask=managed_services_customer_managed_key_id")

	st, err := f.check(t)
	require.NoError(t, err)
	assert.True(t, st.Done)
	assert.Equal(t, f.run.KeyConfigID, f.fake.Workspace(wsID).ManagedServicesCustomerManagedKeyId)
}

func TestPatchAfterTheUpdateTookSendsNothing(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.patch(t)
	first := *f.run.Patch
	again, err := f.tasks.Patch(context.Background(), f.run)
	require.NoError(t, err)
	assert.True(t, again.AlreadyApplied)
	assert.Equal(t, first.VerifyDeadline, again.VerifyDeadline)
	n := 0
	for _, r := range f.fake.Requests() {
		if r.Method == "PATCH" {
			n++
		}
	}
	assert.Equal(t, 1, n)
}

func TestPatchWhileComputeRunsIsComputeStillRunning(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.fake.AddCluster(wsID, compute.ClusterDetails{ClusterId: "c1", State: compute.StateRunning})
	_, err := f.tasks.Patch(context.Background(), f.run)
	var running *taskerr.ComputeStillRunning
	require.True(t, errors.As(err, &running), "got %v", err)
	assert.Contains(t, running.Reason, "terminate all pool & cluster EC2 instances")
}

func TestAddingAStorageKeyWaitsThroughProvisioning(t *testing.T) {
	f := newFixture(t, dbfake.Options{}, rotation.UseCaseManagedServices, rotation.UseCaseStorage)
	f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{ProvisioningFor: 10 * time.Minute})
	f.patch(t)
	assert.Equal(t, "managed_services_customer_managed_key_id,storage_customer_managed_key_id", f.run.Patch.UpdateMask)
	assert.Equal(t, f.now.Add(40*time.Minute), f.run.Patch.VerifyDeadline, "a storage change gets the storage budget")

	st, err := f.check(t)
	require.NoError(t, err)
	assert.False(t, st.Done)
	assert.Equal(t, "PROVISIONING", st.Status)
	f.now = f.now.Add(11 * time.Minute)
	st, err = f.check(t)
	require.NoError(t, err)
	assert.True(t, st.Done)
	assert.Equal(t, 2, st.Attempt)
}

func TestASilentRevertIsWorkspaceRevertedOnceTheBudgetIsSpent(t *testing.T) {
	f := newFixture(t, dbfake.Options{WorkspaceUpdateDelay: time.Minute})
	f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{SilentRevert: true})
	f.patch(t)
	f.now = f.now.Add(2 * time.Minute)
	st, err := f.check(t)
	require.NoError(t, err, "within the budget the check keeps waiting")
	assert.False(t, st.Done)

	f.now = f.run.Patch.VerifyDeadline.Add(time.Second)
	_, err = f.check(t)
	var reverted *taskerr.WorkspaceReverted
	require.True(t, errors.As(err, &reverted), "got %v", err)
	assert.True(t, strings.Contains(reverted.Reason, f.run.Workspace.PreviousManagedKeyID), reverted.Reason)
}

func TestAWorkspaceStuckProvisioningIsWaitedForPastTheBudgetThenTimesOut(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{StuckProvisioning: true})
	f.patch(t)
	f.now = f.run.Patch.VerifyDeadline.Add(time.Second)
	st, err := f.check(t)
	require.NoError(t, err, "past the budget but PROVISIONING: compute must not start into the update")
	assert.True(t, st.OutlastedBudget)
	assert.False(t, st.Done)

	f.now = f.run.Patch.VerifyDeadline.Add(30*time.Minute + time.Second)
	_, err = f.check(t)
	var timedOut *taskerr.WorkspaceUpdateTimedOut
	require.True(t, errors.As(err, &timedOut), "got %v", err)
	assert.Contains(t, timedOut.Reason, "PROVISIONING")
	assert.Contains(t, timedOut.Reason, "compute was left stopped")
}

func TestAnUpdateThatOutlastsItsBudgetAndLandsOnTheNewKeyIsDone(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{ProvisioningFor: 20 * time.Minute})
	f.patch(t)
	f.now = f.run.Patch.VerifyDeadline.Add(time.Second)
	st, err := f.check(t)
	require.NoError(t, err)
	assert.True(t, st.OutlastedBudget)
	assert.Equal(t, "PROVISIONING", st.Status)

	f.now = f.now.Add(16 * time.Minute)
	st, err = f.check(t)
	require.NoError(t, err)
	assert.True(t, st.Done, "RUNNING on the new key after PROVISIONING: the rotation continues")
	assert.Equal(t, f.run.KeyConfigID, st.ManagedKeyID)
}

func TestAnUpdateThatOutlastsItsBudgetAndRollsBackSaysItIsOnThePreviousKey(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{ProvisioningFor: 20 * time.Minute, Rollback: true})
	f.patch(t)
	f.now = f.run.Patch.VerifyDeadline.Add(time.Second)
	st, err := f.check(t)
	require.NoError(t, err)
	assert.True(t, st.OutlastedBudget)

	f.now = f.now.Add(16 * time.Minute)
	_, err = f.check(t)
	var reverted *taskerr.WorkspaceReverted
	require.True(t, errors.As(err, &reverted), "got %v", err)
	assert.Contains(t, reverted.Reason, "on its previous key configuration "+f.run.Workspace.PreviousManagedKeyID)
	assert.Contains(t, reverted.Reason, "it left PROVISIONING only")
}

func (f *fixture) patches() []dbfake.Request {
	var out []dbfake.Request
	for _, r := range f.fake.Requests() {
		if r.Method == "PATCH" {
			out = append(out, r)
		}
	}
	return out
}

func TestARetryAfterAPatchWhoseAnswerWasLostWaitsForTheUpdateInFlight(t *testing.T) {
	for _, status := range []int{500, 504} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			f := newFixture(t, dbfake.Options{})
			f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{ProvisioningFor: 10 * time.Minute})
			f.fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: "/workspaces/", Status: status, LoseResponse: true, Times: 1})
			_, err := f.tasks.Patch(context.Background(), f.run)
			require.Error(t, err, "the answer was lost")
			require.Equal(t, provisioning.WorkspaceStatusProvisioning, f.fake.Workspace(wsID).WorkspaceStatus, "but Databricks took the update")

			// Step Functions retries the task.
			p, err := f.tasks.Patch(context.Background(), f.run)
			require.NoError(t, err, "an update in flight is not compute running")
			assert.True(t, p.UpdateInFlight)
			assert.Contains(t, p.InFlightReason, "PROVISIONING")
			assert.Len(t, f.patches(), 1, "nothing is sent into the update in flight")
			f.run.Patch = &p

			f.now = f.now.Add(11 * time.Minute)
			st, err := f.check(t)
			require.NoError(t, err)
			assert.True(t, st.Done)
		})
	}
}

func TestAPatchRefusedBecauseAnUpdateIsAlreadyUnderWayIsWaitedFor(t *testing.T) {
	t.Run("the SDK's own retry met the update: PROVISIONING", func(t *testing.T) {
		f := newFixture(t, dbfake.Options{})
		f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{ProvisioningFor: 10 * time.Minute})
		f.fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: "/workspaces/", Status: 400, ErrorCode: "INVALID_STATE",
			Message: "Workspace 2002 is PROVISIONING; only a RUNNING workspace can be updated", LoseResponse: true, Times: 1})
		p, err := f.tasks.Patch(context.Background(), f.run)
		require.NoError(t, err)
		assert.True(t, p.UpdateInFlight)
		assert.Contains(t, p.InFlightReason, "PROVISIONING")
	})
	t.Run("RUNNING with an update in progress (customer-managed VPC)", func(t *testing.T) {
		f := newFixture(t, dbfake.Options{})
		f.fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: "/workspaces/", Status: 400, ErrorCode: "INVALID_STATE",
			Message: "Workspace 2002 has an update in progress", Times: 1})
		p, err := f.tasks.Patch(context.Background(), f.run)
		require.NoError(t, err)
		assert.True(t, p.UpdateInFlight)
		assert.Contains(t, p.InFlightReason, "update in progress")
	})
	t.Run("FAILED is WorkspaceFailed", func(t *testing.T) {
		f := newFixture(t, dbfake.Options{})
		f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{EndIn: provisioning.WorkspaceStatusFailed})
		f.fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: "/workspaces/", Status: 500, LoseResponse: true, Times: 1})
		_, err := f.tasks.Patch(context.Background(), f.run)
		require.Error(t, err)
		_, err = f.tasks.Patch(context.Background(), f.run)
		var failed *taskerr.WorkspaceFailed
		require.True(t, errors.As(err, &failed), "got %v", err)
	})
}

func TestComputeRunningPastTheStopBudgetIsComputeStopTimedOut(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.fake.AddCluster(wsID, compute.ClusterDetails{ClusterId: "c1", State: compute.StateRunning})
	f.run.Stop = &rotation.StopResult{StoppedAt: f.now.Add(-10 * time.Minute), Deadline: f.now.Add(time.Minute)}
	_, err := f.tasks.Patch(context.Background(), f.run)
	var running *taskerr.ComputeStillRunning
	require.True(t, errors.As(err, &running), "within the stop budget: stop it again; got %v", err)

	f.now = f.now.Add(2 * time.Minute)
	_, err = f.tasks.Patch(context.Background(), f.run)
	var timedOut *taskerr.ComputeStopTimedOut
	require.True(t, errors.As(err, &timedOut), "got %v", err)
	assert.Contains(t, timedOut.Reason, "terminate all pool & cluster EC2 instances")
}

func TestAWorkspaceThatFailsIsWorkspaceFailed(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{EndIn: provisioning.WorkspaceStatusFailed})
	f.patch(t)
	_, err := f.check(t)
	var failed *taskerr.WorkspaceFailed
	require.True(t, errors.As(err, &failed), "got %v", err)
}

func TestTheNewKeyMustHoldForTheSettleWindowAndARevertAfterASightingIsCaughtAtOnce(t *testing.T) {
	f := newFixture(t, dbfake.Options{WorkspaceUpdateDelay: 3 * time.Minute})
	f.tasks.Settings.Settle = time.Minute
	f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{SilentRevert: true})
	f.patch(t)

	st, err := f.check(t)
	require.NoError(t, err)
	assert.False(t, st.Done, "seen once is not settled")
	require.NotNil(t, st.NewKeySeenAt)
	assert.LessOrEqual(t, st.PollAfterSeconds, 60, "the next check lands at the end of the settle window")

	f.now = f.now.Add(4 * time.Minute) // the fake reverts after its update delay
	_, err = f.check(t)
	var reverted *taskerr.WorkspaceReverted
	require.True(t, errors.As(err, &reverted), "got %v", err)
	assert.True(t, f.now.Before(f.run.Patch.VerifyDeadline.Add(time.Minute)), "caught without waiting for the budget")
}

func TestANewKeyThatHoldsIsDoneAfterTheSettleWindow(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.tasks.Settings.Settle = time.Minute
	f.patch(t)
	st, err := f.check(t)
	require.NoError(t, err)
	require.False(t, st.Done)
	f.now = f.now.Add(61 * time.Second)
	st, err = f.check(t)
	require.NoError(t, err)
	assert.True(t, st.Done)
}
