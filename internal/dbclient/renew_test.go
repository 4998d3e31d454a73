package dbclient_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

const (
	clientID  = "rotator-sp"
	oldSecret = "dose-old-secret-value"
	newSecret = "dose-new-secret-value"
	secretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:databricks-rotator-AbCdEf"
)

type rotationFixture struct {
	db      *dbfake.Server
	aws     *awsfake.Server
	factory *dbclient.Factory
}

// newRotationFixture starts the Databricks fake with M2M credentials and the local Secrets
// Manager holding them, and builds the factory exactly as a Lambda does at cold start.
func newRotationFixture(t *testing.T) *rotationFixture {
	t.Helper()
	f := &rotationFixture{db: faketest.Start(t, dbfake.Options{ClientID: clientID, ClientSecret: oldSecret})}
	faketest.Workspace(f.db, 42, "prod")
	var err error
	f.aws, err = awsfake.Start(awsfake.Config{})
	require.NoError(t, err)
	t.Cleanup(f.aws.Close)
	f.putSecret(t, oldSecret)
	env := map[string]string{
		"DATABRICKS_HOST": f.db.URL(), "DATABRICKS_ACCOUNT_ID": faketest.AccountID,
		"DATABRICKS_WORKSPACE_HOST": f.db.URL(), "DATABRICKS_SECRET_ARN": secretARN,
	}
	awsCfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(f.aws.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("x", "y", "")}
	f.factory, err = dbclient.FromEnv(context.Background(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, awsCfg)
	require.NoError(t, err)
	return f
}

func (f *rotationFixture) putSecret(t *testing.T, secret string) {
	b, err := json.Marshal(map[string]string{"client_id": clientID, "client_secret": secret})
	require.NoError(t, err)
	f.aws.PutSecret(secretARN, string(b))
}

// secretReads counts GetSecretValue calls on the local Secrets Manager.
func (f *rotationFixture) secretReads() int {
	n := 0
	for _, r := range f.aws.Requests() {
		if strings.Contains(r.Target, "GetSecretValue") {
			n++
		}
	}
	return n
}

func TestARotatedSecretIsReReadOnceAndTheCallRetried(t *testing.T) {
	ctx := context.Background()

	t.Run("a token revoked with the old secret: the API's 401 is retried with the new secret, PATCH body intact", func(t *testing.T) {
		f := newRotationFixture(t)
		account, err := f.factory.Account()
		require.NoError(t, err)
		_, err = account.GetWorkspace(ctx, 42)
		require.NoError(t, err, "warm client holds a token")

		f.putSecret(t, newSecret)
		f.db.RotateClientSecret(newSecret)
		reads := f.secretReads()

		ws, err := account.GetWorkspace(ctx, 42)
		require.NoError(t, err)
		assert.Equal(t, "prod", ws.WorkspaceName)
		assert.Equal(t, reads+1, f.secretReads(), "the secret is re-read exactly once")

		key := f.db.AddKeyConfig(provisioning.CustomerManagedKey{UseCases: []provisioning.KeyUseCase{"MANAGED_SERVICES"},
			AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}})
		f.db.RotateClientSecret(oldSecret)
		f.putSecret(t, oldSecret)
		err = account.UpdateWorkspace(ctx, provisioning.UpdateWorkspaceRequest{WorkspaceId: 42, UpdateMask: "managed_services_customer_managed_key_id",
			CustomerFacingWorkspace: provisioning.Workspace{ManagedServicesCustomerManagedKeyId: key}})
		require.NoError(t, err, "a PATCH replayed after a 401 carries its body")
	})

	t.Run("a workspace client whose first token fetch meets invalid_client re-reads and retries", func(t *testing.T) {
		f := newRotationFixture(t)
		f.putSecret(t, newSecret)
		f.db.RotateClientSecret(newSecret)
		w, err := f.factory.Workspace(rotation.WorkspaceTarget{WorkspaceID: "42", DeploymentName: "prod"})
		require.NoError(t, err)
		_, err = w.Clusters.ListAll(ctx, computeListRequest())
		require.NoError(t, err)
	})

	t.Run("a secret rotated in Databricks but not in Secrets Manager fails after one re-read, as unauthenticated", func(t *testing.T) {
		f := newRotationFixture(t)
		account, err := f.factory.Account()
		require.NoError(t, err)
		_, err = account.GetWorkspace(ctx, 42)
		require.NoError(t, err)
		f.db.RotateClientSecret(newSecret)
		reads := f.secretReads()
		_, err = account.GetWorkspace(ctx, 42)
		require.Error(t, err)
		assert.ErrorIs(t, err, apierr.ErrUnauthenticated)
		assert.LessOrEqual(t, f.secretReads()-reads, 2, "no loop of re-reads")
		assert.NotContains(t, err.Error(), oldSecret)
		assert.NotContains(t, err.Error(), newSecret)
	})
}

func computeListRequest() compute.ListClustersRequest { return compute.ListClustersRequest{} }
