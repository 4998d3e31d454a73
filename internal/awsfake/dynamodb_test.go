package awsfake

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConditionalPutAndDeleteHoldOrRefuseAsDynamoDBDoes(t *testing.T) {
	srv, err := Start(Config{Region: "us-west-2"})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	srv.CreateTable("locks", "id")
	db := dynamodb.New(dynamodb.Options{Region: "us-west-2", BaseEndpoint: aws.String(srv.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("x", "y", "")})
	ctx := context.Background()
	put := func(owner string) error {
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("locks"),
			Item:                      map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "1"}, "owner": &types.AttributeValueMemberS{Value: owner}},
			ConditionExpression:       aws.String("attribute_not_exists(id) OR #o = :o"),
			ExpressionAttributeNames:  map[string]string{"#o": "owner"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":o": &types.AttributeValueMemberS{Value: owner}}})
		return err
	}
	var failed *types.ConditionalCheckFailedException

	require.NoError(t, put("a"))
	require.NoError(t, put("a"), "the owner may write again")
	assert.True(t, errors.As(put("b"), &failed), "another owner is refused")
	assert.Equal(t, []map[string]string{{"id": "1", "owner": "a"}}, srv.Items("locks"))

	del := func(owner string) error {
		_, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("locks"),
			Key:                       map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "1"}},
			ConditionExpression:       aws.String("#o = :o"),
			ExpressionAttributeNames:  map[string]string{"#o": "owner"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":o": &types.AttributeValueMemberS{Value: owner}}})
		return err
	}
	assert.True(t, errors.As(del("b"), &failed))
	require.NoError(t, del("a"))
	assert.Empty(t, srv.Items("locks"))

	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("missing"),
		Item: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "1"}}})
	var notFound *types.ResourceNotFoundException
	assert.True(t, errors.As(err, &notFound), "got %v", err)
}
