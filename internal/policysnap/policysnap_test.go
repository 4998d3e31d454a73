package policysnap_test

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

func TestASnapshotIsKeptPerKeyAndTheLatestWins(t *testing.T) {
	fake, err := awsfake.Start(awsfake.Config{Region: "us-west-2", AccountID: "111122223333"})
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	fake.CreateBucket("b")
	store := &policysnap.Store{Bucket: "b", S3: s3.New(s3.Options{Region: "us-west-2", BaseEndpoint: aws.String(fake.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""), UsePathStyle: true})}
	ctx := context.Background()
	key := "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

	_, found, err := store.Load(ctx, key)
	require.NoError(t, err)
	assert.False(t, found, "a key no rotation validated has no snapshot")

	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	require.NoError(t, store.Save(ctx, policysnap.Snapshot{KeyARN: key, Policy: `{"v":1}`, ValidatedAt: t0}))
	require.NoError(t, store.Save(ctx, policysnap.Snapshot{KeyARN: key, Policy: `{"v":2}`, ValidatedAt: t0.Add(time.Hour)}))
	snap, found, err := store.Load(ctx, "arn:aws:kms:us-west-2:111122223333:key/1234ABCD-12ab-34cd-56ef-1234567890ab")
	require.NoError(t, err)
	require.True(t, found, "key ids are hex: any case names the same key")
	assert.Equal(t, `{"v":2}`, snap.Policy)
	assert.Equal(t, t0.Add(time.Hour), snap.ValidatedAt)
	objects := fake.Objects("b")
	assert.Len(t, objects, 1)
	for k := range objects {
		assert.Regexp(t, `^key-policies/`, k)
	}
}
