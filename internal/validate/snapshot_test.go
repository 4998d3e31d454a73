package validate_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policysnap"
)

func snapshotStore(t *testing.T, bucket string) (*policysnap.Store, *awsfake.Server) {
	t.Helper()
	fake, err := awsfake.Start(awsfake.Config{Region: "us-west-2", AccountID: "111122223333"})
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	fake.CreateBucket("policies")
	return &policysnap.Store{Bucket: bucket, S3: s3.New(s3.Options{Region: "us-west-2", BaseEndpoint: aws.String(fake.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""), UsePathStyle: true})}, fake
}

// Issue 9, item 4: the policy a validation accepted is kept, so that the key guard can put it back
// after a PutKeyPolicy takes Databricks' grant away; a refused policy is not kept.
func TestTheKeyPolicyAValidationAcceptsIsKeptForTheKeyGuard(t *testing.T) {
	at := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	t.Run("accepted: stored", func(t *testing.T) {
		f := newFixture(t)
		store, _ := snapshotStore(t, "policies")
		f.task.Snapshots, f.task.Now = store, func() time.Time { return at }
		f.keys.policy = storagePolicy(true)
		_, err := f.validate(t, `{"workspace_ids": ["15"], "key_arn": "`+newKeyARN+`", "use_cases": ["STORAGE"]}`)
		require.NoError(t, err)
		snap, found, err := store.Load(context.Background(), newKeyARN)
		require.NoError(t, err)
		require.True(t, found)
		assert.Equal(t, storagePolicy(true), snap.Policy)
		assert.Equal(t, newKeyARN, snap.KeyARN)
		assert.Equal(t, at, snap.ValidatedAt)
	})
	t.Run("refused: nothing stored", func(t *testing.T) {
		f := newFixture(t)
		store, _ := snapshotStore(t, "policies")
		f.task.Snapshots = store
		f.keys.policy = storagePolicy(false)
		_, err := f.validate(t, `{"workspace_ids": ["15"], "key_arn": "`+newKeyARN+`", "use_cases": ["STORAGE"]}`)
		require.Error(t, err)
		_, found, err := store.Load(context.Background(), newKeyARN)
		require.NoError(t, err)
		assert.False(t, found)
	})
	t.Run("a snapshot that cannot be stored does not hold the rotation up", func(t *testing.T) {
		f := newFixture(t)
		store, _ := snapshotStore(t, "no-such-bucket")
		f.task.Snapshots = store
		f.keys.policy = storagePolicy(true)
		_, err := f.validate(t, `{"workspace_ids": ["15"], "key_arn": "`+newKeyARN+`", "use_cases": ["STORAGE"]}`)
		require.NoError(t, err)
	})
}
