package approval_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/approval"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

type fakeEvents struct{ in []*eventbridge.PutEventsInput }

func (f *fakeEvents) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.in = append(f.in, in)
	return &eventbridge.PutEventsOutput{}, nil
}

func TestTheApprovalRequestPublishesThePlanButNotTheToken(t *testing.T) {
	ev := &fakeEvents{}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	task := approval.Task{Events: ev, EventBusName: "bus", Now: func() time.Time { return now }}
	in := approval.Input{TaskToken: "SECRET-TOKEN-123", Execution: "rotate-x", ExecutionARN: "arn:aws:states:us-west-2:111122223333:execution:m:rotate-x",
		Policy: policy.TaskOutput{Decision: policy.Decision{Rules: []string{"prod"}, Mode: "approval", ApprovalRequired: true, ApprovalTimeoutSeconds: 3600}, BudgetSeconds: 4500},
		Plan: rotation.Plan{KeyARN: "arn:aws:kms:us-west-2:111122223333:key/k", UseCases: []string{"MANAGED_SERVICES"},
			Workspaces: []rotation.WorkspaceTarget{{WorkspaceID: "1", WorkspaceName: "one"}, {WorkspaceID: "2", WorkspaceName: "two"}}},
		Inventories: []approval.PlannedWorkspace{{WorkspaceID: "1", Outcome: rotation.OutcomePlanned,
			Inventory: &rotation.Inventory{Clusters: []rotation.ClusterRef{{ID: "a"}, {ID: "b"}}}},
			{WorkspaceID: "2", Outcome: "PLAN_FAILED", Error: &rotation.StepError{Error: "DatabricksUnavailable", Cause: "503 from clusters/list"}}}}
	_, err := task.Handle(context.Background(), in)
	require.NoError(t, err)
	require.Len(t, ev.in, 1)
	entry := ev.in[0].Entries[0]
	assert.Equal(t, approval.DetailAwaitingApproval, aws.ToString(entry.DetailType))
	assert.Equal(t, "bus", aws.ToString(entry.EventBusName))
	detail := aws.ToString(entry.Detail)
	assert.False(t, strings.Contains(detail, "SECRET-TOKEN-123"), "the token is the approval capability: never in the event")
	var d approval.Detail
	require.NoError(t, json.Unmarshal([]byte(detail), &d))
	assert.Equal(t, "2026-12-02T13:00:00Z", d.Until)
	assert.Equal(t, 2, d.Workspaces[0].WillStop.Clusters)
	assert.Empty(t, d.Workspaces[0].PlanError)
	assert.Equal(t, "DatabricksUnavailable: 503 from clusters/list", d.Workspaces[1].PlanError, "a plan that could not be read is named, not shown as stopping nothing")
	assert.Equal(t, "cmkrotate approve rotate-x", d.Approve)

	_, err = task.Handle(context.Background(), approval.Input{Execution: "rotate-x"})
	var invalid *taskerr.InvalidInput
	assert.ErrorAs(t, err, &invalid)
}
