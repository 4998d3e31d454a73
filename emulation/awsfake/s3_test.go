package awsfake_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
)

// What the inventory store (internal/invstore) relies on of the S3 endpoint, now served by gofakes3:
// path-style PutObject and GetObject with the SDK's own checksummed uploads, the content type kept,
// a typed NoSuchKey for a missing object, and a bucket the stack did not create refused as AWS
// refuses it, not silently created.
func TestS3KeepsObjectsByPathAndAnswersWithTheErrorsTheSDKTypes(t *testing.T) {
	srv, err := awsfake.Start(awsfake.Config{Region: "us-west-2"})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	srv.CreateBucket("inventories")
	srv.CreateBucket("inventories") // the rig and a test may both declare it
	client := s3.New(s3.Options{Region: "us-west-2", BaseEndpoint: aws.String(srv.URL()), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("x", "y", "")})
	ctx := context.Background()
	doc := []byte(`{"workspace_id":"11","clusters":[]}`)

	_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("inventories"), Key: aws.String("inventories/exec-a/11.json"),
		Body: bytes.NewReader(doc), ContentType: aws.String("application/json")})
	require.NoError(t, err)

	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("inventories"), Key: aws.String("inventories/exec-a/11.json")})
	require.NoError(t, err)
	got, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	require.NoError(t, out.Body.Close())
	assert.Equal(t, doc, got)
	assert.Equal(t, "application/json", aws.ToString(out.ContentType))

	stored, ok := srv.Object("inventories", "inventories/exec-a/11.json")
	require.True(t, ok)
	assert.Equal(t, doc, stored)
	assert.Equal(t, map[string]int{"inventories/exec-a/11.json": len(doc)}, srv.Objects("inventories"))
	_, ok = srv.Object("inventories", "inventories/exec-a/12.json")
	assert.False(t, ok)

	_, err = client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("inventories"), Key: aws.String("inventories/exec-a/12.json")})
	var noSuchKey *s3types.NoSuchKey
	assert.True(t, errors.As(err, &noSuchKey), "a missing object is NoSuchKey: %v", err)

	_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("not-created"), Key: aws.String("k"), Body: bytes.NewReader(doc)})
	var apiErr smithy.APIError
	require.True(t, errors.As(err, &apiErr), "%v", err)
	assert.Equal(t, "NoSuchBucket", apiErr.ErrorCode())
	assert.Empty(t, srv.Objects("not-created"), "a bucket the stack did not create is not created by a write")

	assert.Equal(t, []awsfake.Request{
		{Target: "s3.PUT", Status: 200},
		{Target: "s3.GET", Status: 200},
		{Target: "s3.GET", Status: 404},
		{Target: "s3.PUT", Status: 404},
	}, srv.Requests())
}
