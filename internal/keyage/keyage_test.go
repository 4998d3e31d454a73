package keyage_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyage"
)

const machine = "arn:aws:states:us-east-1:123456789012:stateMachine:rotation"

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// fixture: workspace 11 was moved onto "fresh" by a succeeded rotation (configuration created a
// year and a half ago, rotation today); workspace 12 uses "stale", created 400 days ago, for both
// uses, and no rotation says when it moved; workspace 13 has no customer-managed key.
type fixture struct {
	fake         *dbfake.Server
	aws          *awsfake.Server
	check        *keyage.Check
	fresh, stale string
	rotation     string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{fake: faketest.Start(t, dbfake.Options{})}
	f.fresh = f.fake.AddKeyConfig(provisioning.CustomerManagedKey{CreationTime: now.Add(-540 * 24 * time.Hour).UnixMilli(),
		UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES"}, AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: "arn:aws:kms:us-east-1:123456789012:key/fresh", KeyAlias: "alias/databricks/prod"}})
	f.stale = f.fake.AddKeyConfig(provisioning.CustomerManagedKey{CreationTime: now.Add(-400 * 24 * time.Hour).UnixMilli(),
		UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES", "STORAGE"}, AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: "arn:aws:kms:us-east-1:123456789012:key/stale"}})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 11, WorkspaceName: "a-rotated", WorkspaceStatus: "RUNNING", ManagedServicesCustomerManagedKeyId: f.fresh})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 12, WorkspaceName: "b-stale", WorkspaceStatus: "RUNNING",
		ManagedServicesCustomerManagedKeyId: f.stale, StorageCustomerManagedKeyId: f.stale})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 13, WorkspaceName: "c-plain", WorkspaceStatus: "RUNNING"})

	var err error
	f.aws, err = awsfake.Start(awsfake.Config{})
	require.NoError(t, err)
	t.Cleanup(f.aws.Close)
	creds := credentials.NewStaticCredentialsProvider("local", "local", "")
	sfnClient := sfn.New(sfn.Options{Region: "us-east-1", BaseEndpoint: aws.String(f.aws.URL()), Credentials: creds, HTTPClient: http.DefaultClient})
	events := eventbridge.New(eventbridge.Options{Region: "us-east-1", BaseEndpoint: aws.String(f.aws.URL()), Credentials: creds, HTTPClient: http.DefaultClient})

	// Rotation outputs as the state machine's Summarize state writes them: a rotation onto fresh,
	// and a dry run (no key_config_id) that must not count.
	f.aws.RegisterStateMachine(machine, awsfake.RunnerFunc(func(_ context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
		if exec.Name == "dry-run" {
			return `{"dry_run": true, "results": [{"workspace_id": "12", "outcome": "PLANNED"}]}`, nil
		}
		return `{"execution": "` + exec.Name + `", "key_config_id": "` + f.fresh + `", "results": [{"workspace_id": "11", "outcome": "ROTATED"}]}`, nil
	}))
	for _, name := range []string{"rotation-1", "dry-run"} {
		out, err := sfnClient.StartExecution(context.Background(), &sfn.StartExecutionInput{StateMachineArn: aws.String(machine), Name: aws.String(name), Input: aws.String("{}")})
		require.NoError(t, err)
		f.aws.WaitExecution(context.Background(), aws.ToString(out.ExecutionArn))
	}
	f.rotation = "rotation-1"

	account, err := faketest.Factory(f.fake).Account()
	require.NoError(t, err)
	f.check = &keyage.Check{
		Inventory: &keyage.Inventory{Account: account, History: sfnClient, StateMachineARN: machine, MaxAge: 365 * 24 * time.Hour},
		Events:    events, EventBus: "rotator", Now: func() time.Time { return now },
	}
	return f
}

func TestSinceComesFromTheRotatorsHistoryElseFromTheConfigurationsCreation(t *testing.T) {
	f := newFixture(t)
	rep, err := f.check.Inventory.Build(context.Background(), now)
	require.NoError(t, err)
	require.Len(t, rep.Rows, 3)

	rotated := rep.Rows[0]
	assert.Equal(t, "11", rotated.WorkspaceID)
	assert.Equal(t, keyage.SinceRotation, rotated.SinceSource, "the rotation, not the configuration's creation 540 days ago")
	assert.Equal(t, f.rotation, rotated.Execution)
	assert.Equal(t, "alias/databricks/prod", rotated.Alias)
	assert.False(t, rotated.AgeExceeded)

	for i, use := range []string{"managed_services", "storage"} {
		r := rep.Rows[1+i]
		assert.Equal(t, "12", r.WorkspaceID)
		assert.Equal(t, use, r.Use)
		assert.Equal(t, keyage.SinceConfigCreation, r.SinceSource)
		assert.Equal(t, 400.0, r.AgeDays)
		assert.True(t, r.AgeExceeded)
	}
	assert.Equal(t, []string{"13"}, rep.Unencrypted)
}

func TestTheScheduledCheckPublishesKeyAgeExceededForEachKeyOverTheLimit(t *testing.T) {
	f := newFixture(t)
	res, err := f.check.Handle(context.Background(), json.RawMessage(`{"source": "aws.events", "detail-type": "Scheduled Event"}`))
	require.NoError(t, err)
	assert.Equal(t, keyage.CheckResult{Checked: 3, Exceeded: 2}, res)

	var published []keyage.Row
	for _, e := range f.aws.Events() {
		require.Equal(t, keyage.DetailKeyAgeExceeded, e.DetailType)
		var row keyage.Row
		require.NoError(t, json.Unmarshal([]byte(e.Detail), &row))
		published = append(published, row)
	}
	require.Len(t, published, 2)
	for _, row := range published {
		assert.Equal(t, "12", row.WorkspaceID)
		assert.Equal(t, f.stale, row.KeyConfigID)
		assert.Equal(t, 365.0, row.MaxAgeDays)
	}

	// A longer limit flags nothing and publishes nothing more.
	f.check.Inventory.MaxAge = 500 * 24 * time.Hour
	res, err = f.check.Handle(context.Background(), nil)
	require.NoError(t, err)
	assert.Equal(t, 0, res.Exceeded)
	assert.Len(t, f.aws.Events(), 2)
}

func TestTheMaximumAgeIsAWholeNumberOfDays(t *testing.T) {
	d, err := keyage.ParseMaxAgeDays("")
	require.NoError(t, err)
	assert.Equal(t, 365*24*time.Hour, d)
	for _, bad := range []string{"0", "-3", "1y", "3651"} {
		_, err := keyage.ParseMaxAgeDays(bad)
		assert.ErrorContains(t, err, "MAX_KEY_AGE_DAYS must be a whole number of days", bad)
	}
}
