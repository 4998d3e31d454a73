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

// The workspace lock names every workspace another execution holds (wslock.busy reads the
// cancellation reasons item by item), so the reasons must come one per item, in request order, with
// ConditionalCheckFailed on each item whose condition fails and None on the others, as the API
// reference describes CancellationReasons. This is the reason DynamoDB is not served by minidyn
// v0.8.2: its TransactWriteItems stops at the first failed condition and reports None for the rest.
func TestACancelledTransactionGivesOneReasonPerItemInRequestOrder(t *testing.T) {
	srv, err := Start(Config{Region: "us-west-2"})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	srv.CreateTable("locks", "id")
	db := dynamodb.New(dynamodb.Options{Region: "us-west-2", BaseEndpoint: aws.String(srv.URL()), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("x", "y", "")})
	ctx := context.Background()
	claim := func(id, owner string) types.TransactWriteItem {
		return types.TransactWriteItem{Put: &types.Put{TableName: aws.String("locks"),
			Item:                      map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}, "owner": &types.AttributeValueMemberS{Value: owner}},
			ConditionExpression:       aws.String("attribute_not_exists(id) OR #o = :o"),
			ExpressionAttributeNames:  map[string]string{"#o": "owner"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":o": &types.AttributeValueMemberS{Value: owner}}}}
	}
	_, err = db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{claim("2", "a"), claim("3", "a")}})
	require.NoError(t, err)

	_, err = db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{claim("1", "b"), claim("2", "b"), claim("3", "b")}})
	var canceled *types.TransactionCanceledException
	require.True(t, errors.As(err, &canceled), "got %v", err)
	var codes []string
	for _, r := range canceled.CancellationReasons {
		codes = append(codes, aws.ToString(r.Code))
	}
	assert.Equal(t, []string{"None", "ConditionalCheckFailed", "ConditionalCheckFailed"}, codes)
	assert.Contains(t, aws.ToString(canceled.Message), "[None, ConditionalCheckFailed, ConditionalCheckFailed]")
	assert.Len(t, srv.Items("locks"), 2, "nothing of the cancelled transaction was written")
}
