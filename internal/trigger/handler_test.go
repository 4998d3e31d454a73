package trigger_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
)

func TestHandleStartsTheStateMachineWithTheDecidedInput(t *testing.T) {
	hs := newHarness(t)
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-updatealias-cloudtrail.json")))

	require.Len(t, hs.sfn.inputs, 1)
	in := hs.sfn.inputs[0]
	assert.Equal(t, stateMachineARN, aws.ToString(in.StateMachineArn))
	assert.Equal(t, "rotate-0987dcba-d7c56e6661c961275c1e245da47e5d9d29b40e54ca3d92fe221e3992ce1efa8e", aws.ToString(in.Name))
	assert.JSONEq(t, `{
		"workspace_ids": ["1234567890123456", "2345678901234567"],
		"key_arn": "`+key2+`",
		"key_alias": "alias/databricks/ws-cmk",
		"use_cases": ["MANAGED_SERVICES", "STORAGE"],
		"reuse_key_for_cluster_volumes": true,
		"trigger": {"event_id": "f72d3993-864f-48d6-8f16-e26e1ae8dff1", "event_name": "UpdateAlias",
		            "actor": "arn:aws:iam::111122223333:user/Alice", "event_time": "2020-11-13T23:18:15Z"}
	}`, aws.ToString(in.Input))

	// The input is what the Validate task parses: it must pass its own parser unchanged.
	parsed, err := rotation.ParseRequest([]byte(aws.ToString(in.Input)))
	require.NoError(t, err)
	assert.Equal(t, []string{"1234567890123456", "2345678901234567"}, parsed.WorkspaceIDs)

	recs := hs.logs.Records(t)
	require.Len(t, recs, 1)
	assert.Equal(t, "rotation started", recs[0]["msg"])
	assert.Equal(t, "Start", recs[0]["decision"])
	assert.Equal(t, key2, recs[0]["key_arn"])
	assert.Equal(t, []any{"1234567890123456", "2345678901234567"}, recs[0]["workspace_ids"])
	assert.Equal(t, aws.ToString(in.Name), recs[0]["execution_name"])
	assert.NotEmpty(t, recs[0]["reason"])
}

func TestHandleTheSameEventTwiceStartsTheSameExecution(t *testing.T) {
	hs := newHarness(t)
	ev := loadFixture(t, "kms-createkey-workspaces-usecases-cloudtrail.json")
	require.NoError(t, hs.h.Handle(context.Background(), ev))
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-createkey-workspaces-usecases-cloudtrail.json")))

	require.Len(t, hs.sfn.inputs, 2)
	assert.Equal(t, aws.ToString(hs.sfn.inputs[0].Name), aws.ToString(hs.sfn.inputs[1].Name))
	assert.Equal(t, []byte(aws.ToString(hs.sfn.inputs[0].Input)), []byte(aws.ToString(hs.sfn.inputs[1].Input)), "byte-identical input")
}

func TestHandleTreatsExecutionAlreadyExistsAsADuplicateDelivery(t *testing.T) {
	hs := newHarness(t)
	hs.sfn.err = &sfntypes.ExecutionAlreadyExists{Message: aws.String("Execution Already Exists: 'arn:...'")}
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-createkey-cloudtrail.json")))

	recs := hs.logs.Records(t)
	require.Len(t, recs, 1)
	assert.Contains(t, recs[0]["msg"], "duplicate delivery")
	assert.Equal(t, "INFO", recs[0]["level"])
}

func TestHandleReturnsAWSFailuresSoTheyAreRetriedOrEscalated(t *testing.T) {
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded", Fault: smithy.FaultClient}
	denied := &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized to perform states:StartExecution", Fault: smithy.FaultClient}
	network := &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	tests := []struct {
		name      string
		fixture   string
		setup     func(hs *harness)
		retryable bool
		wantErr   error
	}{
		{"throttled StartExecution", "kms-createkey-cloudtrail.json", func(hs *harness) { hs.sfn.err = throttled }, true, throttled},
		{"a 5xx from StartExecution", "kms-createkey-cloudtrail.json", func(hs *harness) {
			hs.sfn.err = &smithy.GenericAPIError{Code: "ServiceUnavailable", Fault: smithy.FaultServer}
		}, true, nil},
		{"a network failure on StartExecution", "kms-createkey-cloudtrail.json", func(hs *harness) { hs.sfn.err = network }, true, nil},
		{"access denied on StartExecution", "kms-createkey-cloudtrail.json", func(hs *harness) { hs.sfn.err = denied }, false, denied},
		{"throttled ListResourceTags", "kms-createalias-cloudtrail.json", func(hs *harness) { hs.kms.err = throttled }, true, throttled},
		{"access denied on ListResourceTags", "kms-tagresource-cloudtrail.json", func(hs *harness) {
			hs.kms.err = &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "kms:ListResourceTags", Fault: smithy.FaultClient}
		}, false, nil},
		{"throttled PutEvents", "kms-cmk-rotation.json", func(hs *harness) { hs.events.err = throttled }, true, throttled},
		{"a PutEvents entry refused with throttling", "kms-rotatekeyondemand-cloudtrail.json", func(hs *harness) {
			hs.events.out = &eventbridge.PutEventsOutput{FailedEntryCount: 1, Entries: []ebtypes.PutEventsResultEntry{{ErrorCode: aws.String("ThrottlingException"), ErrorMessage: aws.String("slow down")}}}
		}, true, nil},
		{"a PutEvents entry refused for access", "kms-rotatekeyondemand-cloudtrail.json", func(hs *harness) {
			hs.events.out = &eventbridge.PutEventsOutput{FailedEntryCount: 1, Entries: []ebtypes.PutEventsResultEntry{{ErrorCode: aws.String("AccessDeniedException"), ErrorMessage: aws.String("no")}}}
		}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := newHarness(t)
			tt.setup(hs)
			err := hs.h.Handle(context.Background(), loadFixture(t, tt.fixture))
			require.Error(t, err)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr, "the AWS error stays in the chain")
			}
			recs := hs.logs.Records(t)
			require.NotEmpty(t, recs)
			last := recs[len(recs)-1]
			assert.Equal(t, tt.retryable, last["retryable"])
			if tt.retryable {
				assert.Equal(t, "WARN", last["level"])
			} else {
				assert.Equal(t, "ERROR", last["level"])
			}
			assert.NotEmpty(t, last["error"])
		})
	}
}

func TestHandlePublishesTheAuditEventForKeyMaterialRotation(t *testing.T) {
	hs := newHarness(t)
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-rotatekey-service-event-cloudtrail.json")))

	assert.Empty(t, hs.sfn.inputs, "a key material rotation starts nothing")
	require.Len(t, hs.events.inputs, 1)
	require.Len(t, hs.events.inputs[0].Entries, 1)
	e := hs.events.inputs[0].Entries[0]
	assert.Equal(t, "databricks-cmk-rotator", aws.ToString(e.Source))
	assert.Equal(t, "Key Material Rotated", aws.ToString(e.DetailType))
	assert.Equal(t, "default", aws.ToString(e.EventBusName))
	assert.Equal(t, []string{key1}, e.Resources)
	assert.JSONEq(t, `{
		"key_arn": "`+key1+`",
		"event_name": "RotateKey",
		"event_id": "a24b3967-ddad-417f-9b22-2332b918db06",
		"workspace_ids": ["1234567890123456"],
		"message": "Key material rotated; the key ARN is unchanged, so Databricks needs no update."
	}`, aws.ToString(e.Detail))
}

func TestHandleAuditsARotatedKeyWithoutTags(t *testing.T) {
	hs := newHarness(t)
	hs.kms.tags = map[string]map[string]string{key1: {}}
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-cmk-rotation.json")))
	require.Len(t, hs.events.inputs, 1)
	assert.NotContains(t, aws.ToString(hs.events.inputs[0].Entries[0].Detail), "workspace_ids")
}

func TestHandleAcknowledgesEventsItCannotUse(t *testing.T) {
	createKey := loadFixture(t, "kms-createkey-cloudtrail.json")
	malformed := createKey
	malformed.Detail = json.RawMessage(`{"eventName":`)
	tests := []struct {
		name   string
		ev     events.CloudWatchEvent
		reason string
	}{
		{"malformed JSON detail", malformed, "malformed detail"},
		{"a failed call", loadFixture(t, "kms-createalias-failed-cloudtrail.json"), "failed with AlreadyExistsException"},
		{"a call by the rotator's own role", loadFixture(t, "kms-updatealias-by-rotator-role-cloudtrail.json"), "IGNORED_PRINCIPAL_ARNS"},
		{"a bad tag value", loadFixture(t, "kms-createkey-bad-tag-cloudtrail.json"), `tag databricks:use-cases="MANAGED_SERVICE" is invalid`},
		{"a deletion", loadFixture(t, "kms-schedulekeydeletion-cloudtrail.json"), "handled by the key guard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := newHarness(t)
			require.NoError(t, hs.h.Handle(context.Background(), tt.ev))
			assert.Empty(t, hs.sfn.inputs)
			assert.Empty(t, hs.events.inputs)
			recs := hs.logs.Records(t)
			require.Len(t, recs, 1)
			assert.Equal(t, "INFO", recs[0]["level"])
			assert.Equal(t, "event ignored", recs[0]["msg"])
			assert.Equal(t, "Ignore", recs[0]["decision"])
			assert.Contains(t, recs[0]["reason"], tt.reason)
		})
	}
}

func TestHandleNeverLogsTheKeyPolicyOrRequestParameters(t *testing.T) {
	hs := newHarness(t)
	for _, f := range []string{"kms-createkey-cloudtrail.json", "kms-createkey-untagged-cloudtrail.json", "kms-createkey-bad-tag-cloudtrail.json"} {
		require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, f)))
	}
	logs := hs.logs.String()
	assert.NotContains(t, logs, "Statement")
	assert.NotContains(t, logs, "EXAMPLE_KEY_ID")
	assert.NotContains(t, logs, "192.0.2.0")
}

func TestHandleWithoutALoggerDoesNotPanic(t *testing.T) {
	hs := newHarness(t)
	hs.h.Log = nil
	assert.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-createkey-cloudtrail.json")))
}

func TestLookupTagsReadsEveryPageAndMapsNotFound(t *testing.T) {
	fk := &fakeKMS{tags: keyTags()}
	h := &trigger.Handler{KMS: fk}
	tags, err := h.LookupTags(context.Background(), key2)
	require.NoError(t, err)
	assert.Equal(t, keyTags()[key2], tags)
	assert.Len(t, fk.calls, 3, "one call per page")

	_, err = h.LookupTags(context.Background(), key4)
	assert.ErrorIs(t, err, trigger.ErrKeyNotFound)
}
