package hygiene_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/hygiene"
)

type fixture struct {
	fake                         *dbfake.Server
	aws                          *awsfake.Server
	task                         *hygiene.Task
	unreferenced, storage, fresh string
}

func config(fake *dbfake.Server, key string) string {
	return fake.AddKeyConfig(provisioning.CustomerManagedKey{UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES", "STORAGE"},
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: "arn:aws:kms:us-west-2:111122223333:key/" + key, KeyRegion: "us-west-2", ReuseKeyForClusterVolumes: true}})
}

// newFixture: a rotation moved workspaces 11 and 12 off "unreferenced" and "storage" onto "fresh";
// workspace 12 still encrypts its storage with "storage", which a rotation never replaces.
func newFixture(t *testing.T, enabled bool) *fixture {
	f := &fixture{fake: faketest.Start(t, dbfake.Options{})}
	f.unreferenced, f.storage, f.fresh = config(f.fake, "old-a"), config(f.fake, "old-b"), config(f.fake, "new")
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 11, WorkspaceName: "one", DeploymentName: "one", AwsRegion: "us-west-2", WorkspaceStatus: "RUNNING",
		ManagedServicesCustomerManagedKeyId: f.fresh})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 12, WorkspaceName: "two", DeploymentName: "two", AwsRegion: "us-west-2", WorkspaceStatus: "RUNNING",
		ManagedServicesCustomerManagedKeyId: f.fresh, StorageCustomerManagedKeyId: f.storage})
	var err error
	f.aws, err = awsfake.Start(awsfake.Config{})
	require.NoError(t, err)
	t.Cleanup(f.aws.Close)
	account, err := faketest.Factory(f.fake).Account()
	require.NoError(t, err)
	events := eventbridge.New(eventbridge.Options{Region: "us-east-1", BaseEndpoint: aws.String(f.aws.URL()), HTTPClient: http.DefaultClient,
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
	f.task = &hygiene.Task{Account: account, Events: events, EventBus: "rotator", Enabled: enabled}
	return f
}

func (f *fixture) input() hygiene.Input {
	var in hygiene.Input
	_ = json.Unmarshal([]byte(`{"execution": "rot-1", "key_arn": "arn:aws:kms:us-west-2:111122223333:key/new", "key_config_id": "`+f.fresh+`", "workspaces": [
		{"workspace_id": "11", "outcome": "ROTATED", "previous_key_config_id": "`+f.unreferenced+`"},
		{"workspace_id": "12", "outcome": "ROTATED", "previous_key_config_id": "`+f.storage+`"}]}`), &in)
	return in
}

func (f *fixture) deletes() []string {
	var out []string
	for _, r := range f.fake.Requests() {
		if r.Method == http.MethodDelete {
			out = append(out, r.Path)
		}
	}
	return out
}

func (f *fixture) events(t *testing.T) map[string][]hygiene.Decision {
	out := map[string][]hygiene.Decision{}
	for _, e := range f.aws.Events() {
		var d hygiene.Decision
		require.NoError(t, json.Unmarshal([]byte(e.Detail), &d))
		out[e.DetailType] = append(out[e.DetailType], d)
	}
	return out
}

func TestHygieneDeletesAnUnreferencedConfigurationAndKeepsAReferencedOne(t *testing.T) {
	f := newFixture(t, true)
	out, err := f.task.Handle(context.Background(), f.input())
	require.NoError(t, err)
	require.Len(t, out.Decisions, 2)

	// Proof that a referenced configuration is never deleted: the fake records every request, and
	// the only DELETE is the unreferenced one's (the fake would also refuse the other with INVALID_STATE,
	// but the task must not even ask).
	assert.Equal(t, []string{"/api/2.0/accounts/" + faketest.AccountID + "/customer-managed-keys/" + f.unreferenced}, f.deletes())
	var ids []string
	for _, c := range f.fake.KeyConfigs() {
		ids = append(ids, c.CustomerManagedKeyId)
	}
	assert.ElementsMatch(t, []string{f.storage, f.fresh}, ids)

	events := f.events(t)
	require.Len(t, events[hygiene.DetailDeleted], 1)
	assert.Equal(t, f.unreferenced, events[hygiene.DetailDeleted][0].KeyConfigID)
	assert.Equal(t, "arn:aws:kms:us-west-2:111122223333:key/old-a", events[hygiene.DetailDeleted][0].KeyARN)
	require.Len(t, events[hygiene.DetailKept], 1)
	kept := events[hygiene.DetailKept][0]
	assert.Equal(t, f.storage, kept.KeyConfigID)
	assert.Equal(t, []hygiene.Reference{{WorkspaceID: "12", WorkspaceName: "two", As: "storage"}}, kept.ReferencedBy)
	assert.Contains(t, kept.Reason, "still referenced")

	// Run again (a retried task): nothing referenced is touched, the deleted one is already gone.
	_, err = f.task.Handle(context.Background(), f.input())
	require.NoError(t, err)
	assert.Len(t, f.deletes(), 2)
	assert.NotContains(t, f.deletes(), "/api/2.0/accounts/"+faketest.AccountID+"/customer-managed-keys/"+f.storage)
}

func TestHygieneOffByDefaultCallsNothing(t *testing.T) {
	f := newFixture(t, false)
	out, err := f.task.Handle(context.Background(), f.input())
	require.NoError(t, err)
	assert.False(t, out.Enabled)
	for _, r := range f.fake.Requests() {
		assert.NotContains(t, r.Path, "/api/", "hygiene is off but called %s %s", r.Method, r.Path)
	}
	assert.Empty(t, f.aws.Events())

	s, err := hygiene.LoadSettings(func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	assert.False(t, s.Enabled, "off unless the deployment turns it on")
	_, err = hygiene.LoadSettings(func(k string) (string, bool) { return map[string]string{"KEY_CONFIG_HYGIENE": "yes"}[k], true })
	assert.ErrorContains(t, err, `KEY_CONFIG_HYGIENE must be true or false, got "yes"`)
}

func TestHygieneDeletesNothingWhileAWorkspaceIsUpdating(t *testing.T) {
	f := newFixture(t, true)
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 13, WorkspaceName: "three", DeploymentName: "three", AwsRegion: "us-west-2", WorkspaceStatus: "PROVISIONING"})
	out, err := f.task.Handle(context.Background(), f.input())
	require.NoError(t, err)
	assert.Empty(t, f.deletes())
	require.Len(t, out.Decisions, 2)
	assert.Contains(t, out.Decisions[0].Reason, "13 (three) is PROVISIONING")
	assert.Len(t, f.events(t)[hygiene.DetailKept], 2)
}
