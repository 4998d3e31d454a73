package wsupdate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acme/databricks-cmk-rotator/internal/dbfake"
	"github.com/acme/databricks-cmk-rotator/internal/faketest"
	"github.com/acme/databricks-cmk-rotator/internal/rotation"
	"github.com/acme/databricks-cmk-rotator/internal/taskerr"
	"github.com/acme/databricks-cmk-rotator/internal/wsupdate"
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
	f.tasks = &wsupdate.Tasks{Account: account, Settings: wsupdate.Settings{ManagedServicesBudget: 5 * time.Minute, StorageBudget: 40 * time.Minute},
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

func TestAWorkspaceStuckProvisioningTimesOut(t *testing.T) {
	f := newFixture(t, dbfake.Options{})
	f.fake.SetPatchBehaviour(wsID, dbfake.PatchBehaviour{StuckProvisioning: true})
	f.patch(t)
	f.now = f.run.Patch.VerifyDeadline.Add(time.Second)
	_, err := f.check(t)
	var timedOut *taskerr.WorkspaceUpdateTimedOut
	require.True(t, errors.As(err, &timedOut), "got %v", err)
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
