package validate_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/validate"
)

const (
	crossAccountRole = "arn:aws:iam::111122223333:role/databricks-cross-account"
	newKeyARN        = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	oldKeyARN        = "arn:aws:kms:us-west-2:111122223333:key/0000aaaa-12ab-34cd-56ef-1234567890ab"
)

// keyChecker answers like kmscheck.Checker for one key; kmscheck's own tests run against local-kms.
type keyChecker struct {
	err error
	// policy, when set, is checked with the real keypolicy.Check, as kmscheck does.
	policy string
	calls  []keypolicy.Requirement
}

func (k *keyChecker) Check(_ context.Context, arn string, req keypolicy.Requirement) (kmscheck.Key, error) {
	k.calls = append(k.calls, req)
	parsed, err := kmscheck.ParseKeyARN(arn)
	if err != nil {
		return kmscheck.Key{}, err
	}
	key := kmscheck.Key{ARN: arn, Region: parsed.Region, Partition: parsed.Partition, State: "Enabled"}
	if k.policy != "" {
		req.KeyARN = arn
		key.Policy = k.policy
		return key, keypolicy.Check(k.policy, req)
	}
	return key, k.err
}

type fixture struct {
	fake *dbfake.Server
	keys *keyChecker
	task *validate.Task
	old  string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{keys: &keyChecker{}}
	f.fake = faketest.Start(t, dbfake.Options{})
	f.old = f.fake.AddKeyConfig(provisioning.CustomerManagedKey{UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES", "STORAGE"},
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: oldKeyARN, KeyRegion: "us-west-2", ReuseKeyForClusterVolumes: true}})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 11, WorkspaceName: "plain", DeploymentName: "plain", AwsRegion: "us-west-2", WorkspaceStatus: "RUNNING"})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 12, WorkspaceName: "encrypted", DeploymentName: "encrypted", AwsRegion: "us-west-2", WorkspaceStatus: "RUNNING",
		ManagedServicesCustomerManagedKeyId: f.old, StorageCustomerManagedKeyId: f.old})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 13, WorkspaceName: "europe", DeploymentName: "europe", AwsRegion: "eu-west-1", WorkspaceStatus: "RUNNING"})
	cred := f.fake.AddCredential(provisioning.Credential{CredentialsName: "prod", AwsCredentials: &provisioning.AwsCredentials{StsRole: &provisioning.StsRole{RoleArn: crossAccountRole}}})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 15, WorkspaceName: "classic", DeploymentName: "classic", AwsRegion: "us-west-2", WorkspaceStatus: "RUNNING", CredentialsId: cred})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 16, WorkspaceName: "lost-credential", DeploymentName: "lost", AwsRegion: "us-west-2", WorkspaceStatus: "RUNNING", CredentialsId: "deleted-credential"})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 14, WorkspaceName: "new", DeploymentName: "new", AwsRegion: "us-west-2", WorkspaceStatus: "PROVISIONING"})
	account, err := faketest.Factory(f.fake).Account()
	require.NoError(t, err)
	f.task = &validate.Task{Keys: f.keys, Account: account, Settings: validate.Settings{DatabricksAccountID: faketest.AccountID, QuietWindowSeconds: 1200, MaxConcurrency: 5}}
	return f
}

func (f *fixture) validate(t *testing.T, input string) (rotation.Plan, error) {
	t.Helper()
	return f.task.Handle(context.Background(), validate.Input{Request: json.RawMessage(input)})
}

func TestAValidManagedServicesRotationPlansEveryWorkspace(t *testing.T) {
	f := newFixture(t)
	plan, err := f.validate(t, `{"workspace_ids": ["11", 12], "key_arn": "`+newKeyARN+`", "key_alias": "alias/databricks/prod"}`)
	require.NoError(t, err)
	assert.Equal(t, []string{"MANAGED_SERVICES"}, plan.UseCases, "MANAGED_SERVICES is the default use case")
	assert.Equal(t, "us-west-2", plan.KeyRegion)
	assert.Empty(t, plan.ExistingKeyConfigID)
	require.Len(t, plan.Workspaces, 2)
	assert.Equal(t, rotation.WorkspaceTarget{WorkspaceID: "11", WorkspaceName: "plain", DeploymentName: "plain", Region: "us-west-2"}, plan.Workspaces[0])
	assert.Equal(t, f.old, plan.Workspaces[1].PreviousManagedKeyID)
	assert.Equal(t, oldKeyARN, plan.Workspaces[1].PreviousManagedKeyARN)
	assert.False(t, plan.Workspaces[1].AddsStorageKey)
	require.Len(t, f.keys.calls, 1)
	assert.Equal(t, keypolicy.Requirement{DatabricksAccountID: faketest.AccountID, Partition: "aws", UseCases: []string{"MANAGED_SERVICES"}, Region: "us-west-2"}, f.keys.calls[0])
}

func TestRefusalsNameWhatIsWrongAndComeBeforeTheKeyIsUsed(t *testing.T) {
	cases := []struct {
		name, input string
		want        error
		mention     string
	}{
		{"malformed JSON", `{"workspace_ids": [`, &taskerr.InvalidInput{}, "malformed JSON"},
		{"missing key", `{"workspace_ids": ["11"]}`, &taskerr.InvalidInput{}, "key_arn"},
		{"a workspace id that is not a number", `{"workspace_ids": ["prod"], "key_arn": "` + newKeyARN + `"}`, &taskerr.InvalidInput{}, "workspace_ids[0]"},
		{"an unknown use case", `{"workspace_ids": ["11"], "key_arn": "` + newKeyARN + `", "use_cases": ["EVERYTHING"]}`, &taskerr.InvalidInput{}, "use_cases[0]"},
		{"an unknown field", `{"workspace_ids": ["11"], "key_arn": "` + newKeyARN + `", "dryrun": true}`, &taskerr.InvalidInput{}, "dryrun"},
		{"an alias instead of a key ARN in key_arn", `{"workspace_ids": ["11"], "key_arn": "alias/databricks/prod"}`, &taskerr.InvalidInput{}, "key_arn"},
		{"an unknown workspace", `{"workspace_ids": ["99"], "key_arn": "` + newKeyARN + `"}`, &taskerr.WorkspaceNotFound{}, "99"},
		{"a workspace that is not running", `{"workspace_ids": ["14"], "key_arn": "` + newKeyARN + `"}`, &taskerr.WorkspaceNotRunning{}, "PROVISIONING"},
		{"a key in another region", `{"workspace_ids": ["11", "13"], "key_arn": "` + newKeyARN + `"}`, &taskerr.KeyRegionMismatch{}, "eu-west-1"},
		{"replacing a storage key", `{"workspace_ids": ["12"], "key_arn": "` + newKeyARN + `", "use_cases": ["MANAGED_SERVICES", "STORAGE"]}`, &taskerr.StorageKeyReplacementRefused{}, "cannot replace a storage key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.validate(t, tc.input)
			require.Error(t, err)
			assert.Equal(t, taskerr.Name(tc.want), taskerr.Name(taskerr.AtBoundary(err)), err.Error())
			assert.Contains(t, err.Error(), tc.mention)
			for _, r := range f.fake.Requests() {
				assert.Equal(t, "GET", r.Method, "validation changed something: %s %s", r.Method, r.Path)
			}
		})
	}
}

func TestAKeyRefusedByKMSChecksIsPassedThrough(t *testing.T) {
	f := newFixture(t)
	f.keys.err = &taskerr.KeyPolicyRejected{Reason: "key policy does not allow the Databricks control plane kms:Decrypt"}
	_, err := f.validate(t, `{"workspace_ids": ["11"], "key_arn": "`+newKeyARN+`"}`)
	var rejected *taskerr.KeyPolicyRejected
	require.True(t, errors.As(err, &rejected))
}

func TestAddingAStorageKeyToAWorkspaceWithoutOneIsPlannedWithTheQuietWindow(t *testing.T) {
	f := newFixture(t)
	plan, err := f.validate(t, `{"workspace_ids": ["11"], "key_arn": "`+newKeyARN+`", "use_cases": ["STORAGE", "MANAGED_SERVICES"], "reuse_key_for_cluster_volumes": false}`)
	require.NoError(t, err)
	assert.Equal(t, []string{"MANAGED_SERVICES", "STORAGE"}, plan.UseCases)
	assert.False(t, plan.ReuseKeyForClusterVolumes)
	assert.True(t, plan.Workspaces[0].AddsStorageKey)
	assert.Equal(t, 1200, plan.QuietWindowSeconds)
}

func TestAWorkspaceAlreadyOnTheKeyIsMarkedSoNothingIsStopped(t *testing.T) {
	f := newFixture(t)
	plan, err := f.validate(t, `{"workspace_ids": ["12"], "key_arn": "`+oldKeyARN+`", "use_cases": ["MANAGED_SERVICES", "STORAGE"]}`)
	require.NoError(t, err)
	assert.True(t, plan.Workspaces[0].AlreadyOnKey)
	assert.Equal(t, f.old, plan.ExistingKeyConfigID, "the existing key configuration is reused, never duplicated")
}

// rollbackFixture: workspace 15 was moved by execution "rot-1" from f.old (the old key, with the
// MANAGED_SERVICES and STORAGE use cases) onto a configuration of the new key.
func rollbackFixture(t *testing.T) (f *fixture, rotated string) {
	f = newFixture(t)
	rotated = f.fake.AddKeyConfig(provisioning.CustomerManagedKey{UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES"},
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: newKeyARN, KeyRegion: "us-west-2"}})
	f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 15, WorkspaceName: "rotated", DeploymentName: "rotated", AwsRegion: "us-west-2", WorkspaceStatus: "RUNNING",
		ManagedServicesCustomerManagedKeyId: rotated})
	return f, rotated
}

func rollbackInput(keyARN, keyConfigID, previous string) string {
	return `{"workspace_ids": ["15"], "key_arn": "` + keyARN + `", "rollback_of": {"execution": "rot-1", "key_config_id": "` + keyConfigID + `", "previous_key_config_id": "` + previous + `"}}`
}

func TestARollbackReusesThePreviousKeyConfigurationAsItIs(t *testing.T) {
	f, rotated := rollbackFixture(t)
	plan, err := f.validate(t, rollbackInput(oldKeyARN, rotated, f.old))
	require.NoError(t, err)
	// f.old has wider use cases than the rollback's MANAGED_SERVICES, so only the rollback path
	// can pick it: a plain rotation to the old key would register a new configuration.
	assert.Equal(t, f.old, plan.ExistingKeyConfigID)
	assert.Equal(t, f.old, plan.RollbackKeyConfigID)
	assert.Equal(t, rotated, plan.Workspaces[0].PreviousManagedKeyID)
	assert.False(t, plan.Workspaces[0].AlreadyOnKey)
}

func TestARollbackThatNoLongerAppliesIsRefusedBeforeAnythingChanges(t *testing.T) {
	cases := []struct {
		name    string
		input   func(f *fixture, rotated string) string
		want    error
		mention string
	}{
		{"a later rotation moved the workspace on", func(f *fixture, rotated string) string {
			later := f.fake.AddKeyConfig(provisioning.CustomerManagedKey{UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES"},
				AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: "arn:aws:kms:us-west-2:111122223333:key/later", KeyRegion: "us-west-2"}})
			f.fake.AddWorkspace(provisioning.Workspace{WorkspaceId: 15, WorkspaceName: "rotated", DeploymentName: "rotated", AwsRegion: "us-west-2", WorkspaceStatus: "RUNNING",
				ManagedServicesCustomerManagedKeyId: later})
			return rollbackInput(oldKeyARN, rotated, f.old)
		}, &taskerr.RollbackRefused{}, "a later rotation happened since"},
		{"the previous configuration was deleted", func(f *fixture, rotated string) string {
			return rollbackInput(oldKeyARN, rotated, "deleted-config")
		}, &taskerr.RollbackRefused{}, "no longer exists"},
		{"the previous configuration is for another key", func(f *fixture, rotated string) string {
			return rollbackInput(newKeyARN, rotated, f.old)
		}, &taskerr.RollbackRefused{}, "is not for key"},
		{"a storage rollback", func(f *fixture, rotated string) string {
			return `{"workspace_ids": ["15"], "key_arn": "` + oldKeyARN + `", "use_cases": ["STORAGE"], "rollback_of": {"execution": "rot-1", "key_config_id": "` + rotated + `", "previous_key_config_id": "` + f.old + `"}}`
		}, &taskerr.InvalidInput{}, "managed services key only"},
		{"a rollback without the previous configuration", func(f *fixture, rotated string) string {
			return `{"workspace_ids": ["15"], "key_arn": "` + oldKeyARN + `", "rollback_of": {"execution": "rot-1", "key_config_id": "` + rotated + `"}}`
		}, &taskerr.InvalidInput{}, "rollback_of.previous_key_config_id: required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, rotated := rollbackFixture(t)
			_, err := f.validate(t, tc.input(f, rotated))
			require.Error(t, err)
			assert.Equal(t, taskerr.Name(tc.want), taskerr.Name(taskerr.AtBoundary(err)), err.Error())
			assert.Contains(t, err.Error(), tc.mention)
			for _, r := range f.fake.Requests() {
				assert.Equal(t, "GET", r.Method, "validation changed something: %s %s", r.Method, r.Path)
			}
		})
	}
}

// storagePolicy is the vendor's storage policy; withEBS adds the EBS statement for the workspace's
// cross-account role.
func storagePolicy(withEBS bool) string {
	st := []string{
		`{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}`,
		`{"Sid":"Allow Databricks to use KMS key for DBFS","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},"Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/DatabricksAccountId":["` + faketest.AccountID + `"]}}}`,
	}
	if withEBS {
		st = append(st, `{"Sid":"Allow Databricks to use KMS key for EBS","Effect":"Allow","Principal":{"AWS":"`+crossAccountRole+`"},"Action":["kms:Decrypt","kms:GenerateDataKey*","kms:CreateGrant","kms:DescribeKey"],"Resource":"*","Condition":{"ForAnyValue:StringLike":{"kms:ViaService":"ec2.*.amazonaws.com"}}}`)
	}
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(st, ",") + `]}`
}

func TestAStorageKeyReusedForClusterVolumesNeedsTheEBSStatementForTheWorkspacesCrossAccountRole(t *testing.T) {
	t.Run("without the EBS statement it is refused naming the role and the statement, and only GETs were sent", func(t *testing.T) {
		f := newFixture(t)
		f.keys.policy = storagePolicy(false)
		_, err := f.validate(t, `{"workspace_ids": ["15"], "key_arn": "`+newKeyARN+`", "use_cases": ["STORAGE"]}`)
		require.Error(t, err)
		assert.Equal(t, "KeyPolicyRejected", taskerr.Name(taskerr.AtBoundary(err)), err.Error())
		assert.Contains(t, err.Error(), "lacks the EBS statement")
		assert.Contains(t, err.Error(), crossAccountRole)
		assert.Contains(t, err.Error(), "kms:CreateGrant")
		for _, r := range f.fake.Requests() {
			assert.Equal(t, "GET", r.Method, "validation changed something: %s %s", r.Method, r.Path)
		}
	})
	t.Run("with the EBS statement it is planned", func(t *testing.T) {
		f := newFixture(t)
		f.keys.policy = storagePolicy(true)
		plan, err := f.validate(t, `{"workspace_ids": ["15"], "key_arn": "`+newKeyARN+`", "use_cases": ["STORAGE"]}`)
		require.NoError(t, err)
		assert.True(t, plan.Workspaces[0].AddsStorageKey)
		assert.Equal(t, []string{crossAccountRole}, f.keys.calls[0].VolumeRoleARNs)
	})
	t.Run("with reuse_key_for_cluster_volumes false the role needs nothing", func(t *testing.T) {
		f := newFixture(t)
		f.keys.policy = storagePolicy(false)
		_, err := f.validate(t, `{"workspace_ids": ["15"], "key_arn": "`+newKeyARN+`", "use_cases": ["STORAGE"], "reuse_key_for_cluster_volumes": false}`)
		require.NoError(t, err)
		assert.Empty(t, f.keys.calls[0].VolumeRoleARNs)
	})
	t.Run("MANAGED_SERVICES alone reads no credential configuration", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.validate(t, `{"workspace_ids": ["15"], "key_arn": "`+newKeyARN+`"}`)
		require.NoError(t, err)
		for _, r := range f.fake.Requests() {
			assert.NotContains(t, r.Path, "/credentials/")
		}
	})
	t.Run("a credential configuration that cannot be read is invalid input naming it", func(t *testing.T) {
		f := newFixture(t)
		f.keys.policy = storagePolicy(true)
		_, err := f.validate(t, `{"workspace_ids": ["16"], "key_arn": "`+newKeyARN+`", "use_cases": ["STORAGE"]}`)
		require.Error(t, err)
		assert.Equal(t, "InvalidInput", taskerr.Name(taskerr.AtBoundary(err)), err.Error())
		assert.Contains(t, err.Error(), "deleted-credential")
		assert.Empty(t, f.keys.calls, "the key is not checked before the role is known")
	})
}

func TestTheGovCloudShardReachesTheKeyCheck(t *testing.T) {
	f := newFixture(t)
	f.task.Settings.GovCloudShard = keypolicy.ShardDoD
	_, err := f.validate(t, `{"workspace_ids": ["11"], "key_arn": "`+newKeyARN+`"}`)
	require.NoError(t, err)
	assert.Equal(t, keypolicy.ShardDoD, f.keys.calls[0].GovCloudShard)
}
