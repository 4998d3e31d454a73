// Package wslock makes sure a workspace has at most one rotation in progress.
//
// Mechanism: one DynamoDB item per workspace, written with a condition. Acquire writes the items of
// every workspace of an execution in TransactWriteItems of at most 100 items (DynamoDB's limit), each
// Put conditioned on "no item, or an expired lease, or already ours". DynamoDB evaluates a condition
// and applies the write atomically, so two executions that race for a workspace cannot both win,
// whatever the timing: there is no read-then-write window. A request of more than 100 workspaces
// takes its locks in several transactions, in workspace-id order; when one is refused, Acquire gives
// back the locks the earlier ones took, so the request still holds all of its locks or none. Release deletes only
// items the execution owns (conditional delete), so a late release can never free another
// execution's lock. The lease (expires_at, also the table's TTL attribute) frees a lock whose
// execution was aborted or timed out without releasing; it outlasts the state machine's own
// TimeoutSeconds, so a live execution never loses its lock.
//
// Execution naming alone cannot do this: Step Functions refuses a reused name for 90 days even after
// the execution closed, and different keys for one workspace give different names.
package wslock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/polling"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// DynamoDB is the part of the DynamoDB API the lock uses.
type DynamoDB interface {
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

var _ DynamoDB = (*dynamodb.Client)(nil)

// Locks acquires and releases workspace locks in one table.
type Locks struct {
	DB    DynamoDB
	Table string
	// Lease is how long a lock holds without its owner; longer than the state machine's timeout.
	Lease time.Duration
	Clock polling.Clock
}

// DefaultLease outlasts the rotation state machine's TimeoutSeconds (4 hours).
const DefaultLease = 5 * time.Hour

// Lock is what Acquire returns and Release takes: stored at $.lock.
type Lock struct {
	Owner        string    `json:"owner"`
	WorkspaceIDs []string  `json:"workspace_ids"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// AcquireInput is the task input: the execution name and the raw execution input.
type AcquireInput struct {
	Execution string          `json:"execution"`
	Request   json.RawMessage `json:"request"`
}

// transactionItems is DynamoDB's limit on the actions of one TransactWriteItems.
const transactionItems = 100

// Acquire takes the locks of every workspace of the request for the execution, or none. Each batch
// of transactionItems workspaces is one transaction; every batch is tried even after one is refused,
// so that the refusal names every busy workspace, and then the batches that succeeded are released.
func (l *Locks) Acquire(ctx context.Context, in AcquireInput) (Lock, error) {
	if in.Execution == "" {
		return Lock{}, taskerr.Errorf[taskerr.InvalidInput]("LockWorkspaces needs the execution name")
	}
	req, err := rotation.ParseRequest(in.Request)
	if err != nil {
		return Lock{}, err
	}
	ids := slices.Clone(req.WorkspaceIDs)
	slices.Sort(ids)
	now := l.Clock.Now()
	lock := Lock{Owner: in.Execution, WorkspaceIDs: ids, ExpiresAt: now.Add(l.Lease)}
	var taken, held []string
	var failure error
	for batch := range slices.Chunk(ids, transactionItems) {
		items := make([]types.TransactWriteItem, 0, len(batch))
		for _, id := range batch {
			items = append(items, l.claim(id, in.Execution, now, lock.ExpiresAt))
		}
		_, err := l.DB.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		var canceled *types.TransactionCanceledException
		switch {
		case errors.As(err, &canceled):
			held = append(held, l.holders(ctx, batch, canceled)...)
		case err != nil:
			failure = fmt.Errorf("acquiring the rotation locks of workspaces %s: %w", strings.Join(batch, ", "), err)
		default:
			taken = append(taken, batch...)
		}
		if failure != nil {
			break
		}
	}
	if failure == nil && len(held) == 0 {
		return lock, nil
	}
	if len(taken) > 0 {
		// All or none: the locks of the batches that went through are given back. A release that
		// fails leaves them to their lease, which the refusal then says.
		if _, err := l.Release(ctx, ReleaseInput{Lock: &Lock{Owner: in.Execution, WorkspaceIDs: taken}}); err != nil {
			failure = errors.Join(failure, fmt.Errorf("and the locks already taken could not be given back (they expire at %s): %w", lock.ExpiresAt.Format(time.RFC3339), err))
		}
	}
	if len(held) > 0 {
		return Lock{}, busyError(held, in.Execution, failure)
	}
	return Lock{}, failure
}

// claim is the conditional write that takes or keeps one workspace's lock for owner: it succeeds
// only when the lock is absent, expired, or already owner's, so two executions cannot both hold it.
func (l *Locks) claim(workspaceID, owner string, now, expires time.Time) types.TransactWriteItem {
	return types.TransactWriteItem{Put: &types.Put{
		TableName: aws.String(l.Table),
		Item: map[string]types.AttributeValue{
			"workspace_id": &types.AttributeValueMemberS{Value: workspaceID},
			"owner":        &types.AttributeValueMemberS{Value: owner},
			"acquired_at":  &types.AttributeValueMemberS{Value: now.Format(time.RFC3339)},
			"expires_at":   &types.AttributeValueMemberN{Value: strconv.FormatInt(expires.Unix(), 10)},
		},
		ConditionExpression:      aws.String("attribute_not_exists(workspace_id) OR expires_at < :now OR #owner = :owner"),
		ExpressionAttributeNames: map[string]string{"#owner": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now":   &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)},
			":owner": &types.AttributeValueMemberS{Value: owner},
		},
	}}
}

// busy names each workspace whose lock is held, and by which execution since when.
func (l *Locks) busy(ctx context.Context, ids []string, canceled *types.TransactionCanceledException, self string) error {
	return busyError(l.holders(ctx, ids, canceled), self, nil)
}

// holders describes, for each item of a cancelled transaction whose condition failed, who holds
// that workspace's lock and since when.
func (l *Locks) holders(ctx context.Context, ids []string, canceled *types.TransactionCanceledException) []string {
	var held []string
	for i, reason := range canceled.CancellationReasons {
		if i >= len(ids) || aws.ToString(reason.Code) != "ConditionalCheckFailed" {
			continue
		}
		holder, since := "another execution", "unknown"
		out, err := l.DB.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(l.Table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{"workspace_id": &types.AttributeValueMemberS{Value: ids[i]}}})
		if err == nil && out.Item != nil {
			if v, ok := out.Item["owner"].(*types.AttributeValueMemberS); ok {
				holder = "execution " + v.Value
			}
			if v, ok := out.Item["acquired_at"].(*types.AttributeValueMemberS); ok {
				since = v.Value
			}
		}
		held = append(held, fmt.Sprintf("workspace %s is being rotated by %s since %s", ids[i], holder, since))
	}
	if len(held) == 0 {
		held = append(held, "a workspace lock is held by another execution")
	}
	return held
}

func busyError(held []string, self string, also error) error {
	reason := strings.Join(held, "; ") + ". One rotation per workspace at a time: this request (" + self +
		") was refused, not queued; start it again once that rotation has finished."
	if also != nil {
		reason += " " + also.Error()
	}
	return &taskerr.WorkspaceBusy{Reason: reason}
}

// ReleaseInput is the task input: the lock taken by Acquire.
type ReleaseInput struct {
	Lock *Lock `json:"lock"`
}

// Release frees the locks the execution owns. Items owned by someone else (or already gone) are
// left alone, so a release is always safe to retry or to call on a path that may not hold a lock.
func (l *Locks) Release(ctx context.Context, in ReleaseInput) (Released, error) {
	out := Released{Released: []string{}}
	if in.Lock == nil {
		return out, nil
	}
	for _, id := range in.Lock.WorkspaceIDs {
		_, err := l.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                 aws.String(l.Table),
			Key:                       map[string]types.AttributeValue{"workspace_id": &types.AttributeValueMemberS{Value: id}},
			ConditionExpression:       aws.String("#owner = :owner"),
			ExpressionAttributeNames:  map[string]string{"#owner": "owner"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":owner": &types.AttributeValueMemberS{Value: in.Lock.Owner}},
		})
		var notOurs *types.ConditionalCheckFailedException
		switch {
		case errors.As(err, &notOurs):
			continue
		case err != nil:
			return Released{}, fmt.Errorf("releasing the rotation lock of workspace %s: %w", id, err)
		}
		out.Released = append(out.Released, id)
	}
	return out, nil
}

// Released lists the workspaces whose lock this call freed.
type Released struct {
	Released []string `json:"released"`
}
