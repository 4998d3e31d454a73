package keyguard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/client"
	"github.com/databricks/databricks-sdk-go/config"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyguard"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policysnap"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

const (
	wsAnalytics = 1234567890123456
	wsML        = 2345678901234567
)

func TestScheduledDeletionOfAKeyInUseIsReportedAndLeftPendingWhenUndoIsOff(t *testing.T) {
	r := newRig(t, false)
	keyID, keyARN := r.createKey("analytics managed services")
	cfgID := r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices)
	r.workspace(wsAnalytics, "analytics", cfgID, "")
	r.scheduleDeletion(keyARN)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-schedulekeydeletion-cloudtrail.json", keyID)))

	got := r.atRiskEvents()
	require.Len(t, got, 1)
	d := got[0]
	assert.Equal(t, keyguard.SeverityCritical, d.Severity)
	assert.Equal(t, keyARN, d.KeyARN)
	assert.Equal(t, "ScheduleKeyDeletion", d.EventName)
	assert.Equal(t, "3c4226b0-1e81-48a8-a333-7fa5f3cbd118", d.EventID)
	assert.Equal(t, "arn:aws:iam::111122223333:user/Alice", d.Actor)
	assert.Equal(t, []keyguard.WorkspaceAtRisk{{WorkspaceID: "1234567890123456", WorkspaceName: "analytics", Use: keyguard.UseManagedServices, KeyConfigID: cfgID}}, d.Workspaces)
	assert.False(t, d.Undone)
	assert.Empty(t, d.UndoAction)
	assert.Empty(t, d.UndoError)
	assert.Contains(t, d.Message, "notebooks, secrets, SQL queries")
	assert.Contains(t, d.Message, "UNDO_KEY_CHANGES is off")

	assert.Equal(t, kmstypes.KeyStatePendingDeletion, r.keyState(keyARN), "undo is off: the key is left as it is")
	assert.NotContains(t, r.guard.Calls(), "CancelKeyDeletion")

	recs := r.logs.Records(t)
	require.Len(t, recs, 1)
	assert.Equal(t, "ERROR", recs[0]["level"])
	assert.Equal(t, []any{"1234567890123456"}, recs[0]["workspace_ids"])
}

func TestScheduledDeletionIsCancelledWhenUndoIsOn(t *testing.T) {
	r := newRig(t, true)
	keyID, keyARN := r.createKey("analytics managed services")
	cfgID := r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices)
	r.workspace(wsAnalytics, "analytics", cfgID, "")
	r.scheduleDeletion(keyARN)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-schedulekeydeletion-cloudtrail.json", keyID)))

	assert.Equal(t, kmstypes.KeyStateEnabled, r.keyState(keyARN))
	// local-kms leaves a cancelled key Enabled, so no EnableKey is needed.
	assert.Equal(t, []string{"DescribeKey", "CancelKeyDeletion", "DescribeKey"}, r.guard.Calls())
	got := r.atRiskEvents()
	require.Len(t, got, 1)
	assert.True(t, got[0].Undone)
	assert.Equal(t, keyguard.UndoCancelKeyDeletion, got[0].UndoAction)
	assert.Empty(t, got[0].UndoError)
	assert.Equal(t, "Enabled", got[0].KeyState)
	assert.Contains(t, got[0].Message, "undid the change (CancelKeyDeletion)")
}

func TestCancelledDeletionIsEnabledAgainWhereKMSLeavesTheKeyDisabled(t *testing.T) {
	r := newRig(t, true)
	r.guard.awsLikeCancel = true
	keyID, keyARN := r.createKey("analytics managed services")
	r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
	r.scheduleDeletion(keyARN)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-schedulekeydeletion-cloudtrail.json", keyID)))

	assert.Equal(t, []string{"DescribeKey", "CancelKeyDeletion", "DescribeKey", "EnableKey"}, r.guard.Calls())
	assert.Equal(t, kmstypes.KeyStateEnabled, r.keyState(keyARN))
	got := r.atRiskEvents()
	require.Len(t, got, 1)
	assert.True(t, got[0].Undone)
	assert.Equal(t, keyguard.UndoCancelKeyDeletion, got[0].UndoAction)
}

func TestRedeliveredScheduledDeletionConvergesWithoutASecondCancel(t *testing.T) {
	r := newRig(t, true)
	keyID, keyARN := r.createKey("analytics managed services")
	r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
	r.scheduleDeletion(keyARN)
	ev := fixture(t, "kms-schedulekeydeletion-cloudtrail.json", keyID)

	require.NoError(t, r.h.Handle(context.Background(), ev))
	require.NoError(t, r.h.Handle(context.Background(), ev))

	assert.Equal(t, []string{"DescribeKey", "CancelKeyDeletion", "DescribeKey", "DescribeKey"}, r.guard.Calls())
	got := r.atRiskEvents()
	require.Len(t, got, 2, "each delivery publishes; consumers deduplicate on event_id")
	assert.Equal(t, got[0].EventID, got[1].EventID)
	assert.True(t, got[1].Undone)
}

func TestDisabledKeyIsEnabledAgainWhenUndoIsOn(t *testing.T) {
	r := newRig(t, true)
	keyID, keyARN := r.createKey("ml storage")
	cfgID := r.keyConfig(keyARN, provisioning.KeyUseCaseStorage)
	r.workspace(wsML, "ml", "", cfgID)
	r.disable(keyARN)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-disablekey-cloudtrail.json", keyID)))

	assert.Equal(t, kmstypes.KeyStateEnabled, r.keyState(keyARN))
	assert.Equal(t, []string{"DescribeKey", "EnableKey"}, r.guard.Calls())
	got := r.atRiskEvents()
	require.Len(t, got, 1)
	d := got[0]
	assert.Equal(t, "DisableKey", d.EventName)
	assert.Equal(t, []keyguard.WorkspaceAtRisk{{WorkspaceID: "2345678901234567", WorkspaceName: "ml", Use: keyguard.UseStorage, KeyConfigID: cfgID}}, d.Workspaces)
	assert.True(t, d.Undone)
	assert.Equal(t, keyguard.UndoEnableKey, d.UndoAction)
	assert.Contains(t, d.Message, "DBFS")
}

func TestAKeyUsedForBothUsesNamesEachUse(t *testing.T) {
	r := newRig(t, false)
	keyID, keyARN := r.createKey("shared")
	managed := r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices)
	storage := r.keyConfig(keyARN, provisioning.KeyUseCaseStorage)
	r.workspace(wsML, "ml", managed, storage)
	r.workspace(wsAnalytics, "analytics", managed, "")
	r.workspace(3456789012345678, "unrelated", r.keyConfig("arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321", provisioning.KeyUseCaseManagedServices), "")
	r.disable(keyARN)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-disablekey-cloudtrail.json", keyID)))

	got := r.atRiskEvents()
	require.Len(t, got, 1)
	assert.Equal(t, []keyguard.WorkspaceAtRisk{
		{WorkspaceID: "1234567890123456", WorkspaceName: "analytics", Use: keyguard.UseManagedServices, KeyConfigID: managed},
		{WorkspaceID: "2345678901234567", WorkspaceName: "ml", Use: keyguard.UseManagedServices, KeyConfigID: managed},
		{WorkspaceID: "2345678901234567", WorkspaceName: "ml", Use: keyguard.UseStorage, KeyConfigID: storage},
	}, got[0].Workspaces)
	assert.Equal(t, kmstypes.KeyStateDisabled, r.keyState(keyARN))
}

// reminderInput is what ScheduleRetirementReminder passes: the rotation's Summarize output with the
// per-workspace results of the Map.
func reminderInput(execution, newKeyARN, newConfigID string, workspaces ...map[string]any) map[string]any {
	return map[string]any{"execution": execution, "key_arn": newKeyARN, "key_config_id": newConfigID, "workspaces": workspaces}
}

func TestPreviousKeyOfARunningRetirementReminderIsAtRisk(t *testing.T) {
	r := newRig(t, false)
	oldKeyID, oldKeyARN := r.createKey("previous managed services key")
	_, newKeyARN := r.createKey("new managed services key")
	oldConfig := r.keyConfig(oldKeyARN, provisioning.KeyUseCaseManagedServices)
	newConfig := r.keyConfig(newKeyARN, provisioning.KeyUseCaseManagedServices)
	// The rotation moved both workspaces onto the new key; the old key is in no workspace any more.
	r.workspace(wsAnalytics, "analytics", newConfig, "")
	r.workspace(wsML, "ml", newConfig, "")
	r.startReminder("retire-a1", reminderInput("rotate-aaaa1111-01", newKeyARN, newConfig,
		map[string]any{"workspace_id": "1234567890123456", "workspace_name": "analytics", "outcome": rotation.OutcomeRotated,
			"previous_key_config_id": oldConfig, "previous_key_arn": oldKeyARN},
		map[string]any{"workspace_id": "2345678901234567", "workspace_name": "ml", "outcome": rotation.OutcomeFailed,
			"previous_key_config_id": oldConfig, "previous_key_arn": oldKeyARN, "error": map[string]any{"Error": "ComputeStopTimedOut", "Cause": "..."},
			"summary": map[string]any{"outcome": rotation.OutcomeFailed, "patched": false}},
	))
	// Another rotation, off another key: not this key's business.
	r.startReminder("retire-b2", reminderInput("rotate-bbbb2222-02", newKeyARN, newConfig,
		map[string]any{"workspace_id": "3456789012345678", "workspace_name": "bi", "outcome": rotation.OutcomeRotated,
			"previous_key_config_id": "9c1d2e3f-0000-4a4a-8b8b-1234567890ab", "previous_key_arn": "arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"},
	))
	r.scheduleDeletion(oldKeyARN)
	ev := fixture(t, "kms-schedulekeydeletion-cloudtrail.json", oldKeyID)

	require.NoError(t, r.h.Handle(context.Background(), ev))

	got := r.atRiskEvents()
	require.Len(t, got, 1)
	require.Len(t, got[0].Workspaces, 1)
	w := got[0].Workspaces[0]
	assert.Equal(t, "1234567890123456", w.WorkspaceID)
	assert.Equal(t, "analytics", w.WorkspaceName)
	assert.Equal(t, keyguard.UsePreviousKey, w.Use)
	assert.Equal(t, "previous key within 24 h", string(w.Use))
	assert.Equal(t, oldConfig, w.KeyConfigID)
	assert.Equal(t, "rotate-aaaa1111-01", w.RotationExecution)
	retirable, err := time.Parse(time.RFC3339, w.RetirableAt)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(24*time.Hour), retirable, time.Minute)
	assert.Contains(t, got[0].Message, "less than 24 hours ago")

	t.Run("once the reminder is 24 hours old the key is no longer at risk", func(t *testing.T) {
		r.h.Now = func() time.Time { return time.Now().Add(24*time.Hour + time.Minute) }
		require.NoError(t, r.h.Handle(context.Background(), ev))
		assert.Len(t, r.atRiskEvents(), 1, "nothing new published")
	})
}

func TestAKeyNobodyUsesPublishesNothingAndUndoesNothing(t *testing.T) {
	r := newRig(t, true)
	keyID, keyARN := r.createKey("scratch")
	_, otherARN := r.createKey("in use")
	r.workspace(wsAnalytics, "analytics", r.keyConfig(otherARN, provisioning.KeyUseCaseManagedServices), "")
	r.startReminder("retire-c3", reminderInput("rotate-cccc3333-03", otherARN, "cfg",
		map[string]any{"workspace_id": "1234567890123456", "workspace_name": "analytics", "outcome": rotation.OutcomeRotated,
			"previous_key_config_id": "", "previous_key_arn": ""}))
	r.scheduleDeletion(keyARN)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-schedulekeydeletion-cloudtrail.json", keyID)))

	assert.Empty(t, r.aws.Events())
	assert.Empty(t, r.guard.Calls())
	assert.Equal(t, kmstypes.KeyStatePendingDeletion, r.keyState(keyARN))
	recs := r.logs.Records(t)
	require.Len(t, recs, 1)
	assert.Equal(t, "INFO", recs[0]["level"])
	assert.Contains(t, recs[0]["msg"], "no Databricks workspace depends on the key")
	assert.Equal(t, keyARN, recs[0]["key_arn"])
}

func TestKeyDeletionIsReportedAndNothingIsUndone(t *testing.T) {
	r := newRig(t, true)
	keyID, keyARN := r.createKey("analytics managed services")
	cfgID := r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices)
	r.workspace(wsAnalytics, "analytics", cfgID, "")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-cmk-deletion.json", keyID)))

	assert.Empty(t, r.guard.Calls(), "the key is gone: no KMS call at all")
	got := r.atRiskEvents()
	require.Len(t, got, 1)
	d := got[0]
	assert.Equal(t, "KMS CMK Deletion", d.EventName)
	assert.Equal(t, "e9ce3425-7d22-412a-a699-e7a5fc3fbc9a", d.EventID)
	assert.Equal(t, keyARN, d.KeyARN)
	assert.False(t, d.Undone)
	assert.Empty(t, d.UndoAction)
	assert.Contains(t, d.Message, "cannot be recovered")
	assert.Contains(t, d.Message, "Nothing can be undone")
}

func TestEventsTheGuardDoesNotActOnTouchNothing(t *testing.T) {
	r := newRig(t, true)
	keyID, keyARN := r.createKey("analytics managed services")
	r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
	r.db.ClearRequests()

	for _, tc := range []struct {
		name, fixture string
		edit          func(map[string]any)
		level         string
	}{
		{"a ScheduleKeyDeletion call that failed", "kms-schedulekeydeletion-cloudtrail.json", func(d map[string]any) {
			d["errorCode"], d["errorMessage"] = "KMSInvalidStateException", "arn:... is pending deletion."
			d["responseElements"] = nil
		}, "INFO"},
		{"a DisableKey call that was denied", "kms-disablekey-cloudtrail.json", func(d map[string]any) {
			d["errorCode"] = "AccessDenied"
		}, "INFO"},
		{"a DisableKey by the rotator's own role", "kms-disablekey-cloudtrail.json", func(d map[string]any) {
			d["userIdentity"] = map[string]any{"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/databricks-cmk-rotator/session",
				"sessionContext": map[string]any{"sessionIssuer": map[string]any{"type": "Role", "arn": rotatorRole}}}
		}, "INFO"},
		{"a DisableKey that names no key", "kms-disablekey-cloudtrail.json", func(d map[string]any) {
			d["requestParameters"], d["resources"] = map[string]any{}, []any{}
		}, "WARN"},
		{"a DisableKey of a key id KMS does not know", "kms-disablekey-cloudtrail.json", func(d map[string]any) {
			d["requestParameters"], d["resources"] = map[string]any{"keyId": "00000000-1111-2222-3333-444444444444"}, []any{}
		}, "WARN"},
		{"a CreateKey", "kms-createkey-cloudtrail.json", nil, "INFO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.logs.Records(t))
			ev := fixture(t, tc.fixture, keyID)
			if tc.edit != nil {
				ev = editDetail(t, ev, tc.edit)
			}
			require.NoError(t, r.h.Handle(context.Background(), ev))
			assert.Empty(t, r.aws.Events())
			assert.Empty(t, r.db.Requests(), "Databricks is not asked")
			assert.NotContains(t, r.guard.Calls(), "CancelKeyDeletion")
			assert.NotContains(t, r.guard.Calls(), "EnableKey")
			recs := r.logs.Records(t)
			require.Len(t, recs, before+1)
			assert.Equal(t, "event ignored", recs[before]["msg"])
			assert.Equal(t, tc.level, recs[before]["level"])
			assert.NotEmpty(t, recs[before]["reason"])
		})
	}
}

func TestAnAliasIsResolvedWithDescribeKey(t *testing.T) {
	r := newRig(t, true)
	_, keyARN := r.createKey("analytics managed services")
	_, err := r.kms.CreateAlias(context.Background(), &kms.CreateAliasInput{AliasName: aws.String("alias/databricks/ws-cmk"), TargetKeyId: aws.String(keyARN)})
	require.NoError(t, err)
	r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
	r.disable(keyARN)
	ev := editDetail(t, fixture(t, "kms-disablekey-cloudtrail.json", ""), func(d map[string]any) {
		d["requestParameters"] = map[string]any{"keyId": "alias/databricks/ws-cmk"}
		delete(d, "resources")
	})

	require.NoError(t, r.h.Handle(context.Background(), ev))

	got := r.atRiskEvents()
	require.Len(t, got, 1)
	assert.Equal(t, keyARN, got[0].KeyARN)
	assert.True(t, got[0].Undone)
	assert.Equal(t, kmstypes.KeyStateEnabled, r.keyState(keyARN))
}

// accountWithRetryBudget builds the account client as dbclient does, with a retry budget short
// enough for a test to outlast it.
func accountWithRetryBudget(t *testing.T, db *dbfake.Server, seconds int) *dbclient.Account {
	t.Helper()
	c, err := client.New(&config.Config{
		Host: db.URL(), AccountID: faketest.AccountID, Token: faketest.Token, AuthType: "pat",
		RetryTimeoutSeconds: seconds, HTTPTimeoutSeconds: 5, Loaders: []config.Loader{noLoader{}},
	})
	require.NoError(t, err)
	return &dbclient.Account{Workspaces: provisioning.NewWorkspaces(c), EncryptionKeys: provisioning.NewEncryptionKeys(c)}
}

// noLoader keeps DATABRICKS_* variables and ~/.databrickscfg out of the test's client.
type noLoader struct{}

func (noLoader) Name() string                   { return "none" }
func (noLoader) Configure(*config.Config) error { return nil }

func TestDatabricksUnavailableIsReturnedSoTheEventIsRetried(t *testing.T) {
	r := newRig(t, true)
	r.h.Account = accountWithRetryBudget(t, r.db, 1)
	keyID, keyARN := r.createKey("analytics managed services")
	r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
	r.scheduleDeletion(keyARN)
	r.db.InjectFault(dbfake.Fault{Method: http.MethodGet, Path: `/customer-managed-keys/?$`, Status: http.StatusServiceUnavailable})
	ev := fixture(t, "kms-schedulekeydeletion-cloudtrail.json", keyID)

	err := r.h.Handle(context.Background(), ev)

	require.Error(t, err)
	assert.True(t, errors.Is(err, apierr.ErrTemporarilyUnavailable), "got %v", err)
	assert.Contains(t, err.Error(), "3c4226b0-1e81-48a8-a333-7fa5f3cbd118")
	assert.Empty(t, r.aws.Events())
	assert.Empty(t, r.guard.Calls(), "nothing is undone before the guard knows the key is in use")
	recs := r.logs.Records(t)
	require.NotEmpty(t, recs)
	assert.Equal(t, true, recs[len(recs)-1]["retryable"])

	t.Run("the retry after Databricks recovers raises the alarm and undoes", func(t *testing.T) {
		r.db.ClearFaults()
		require.NoError(t, r.h.Handle(context.Background(), ev))
		require.Len(t, r.atRiskEvents(), 1)
		assert.Equal(t, kmstypes.KeyStateEnabled, r.keyState(keyARN))
	})
}

func TestATransientUndoFailureIsPublishedAndReturned(t *testing.T) {
	r := newRig(t, true)
	keyID, keyARN := r.createKey("analytics managed services")
	r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
	r.disable(keyARN)
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded", Fault: smithy.FaultClient}
	r.guard.failNext("EnableKey", throttled)
	ev := fixture(t, "kms-disablekey-cloudtrail.json", keyID)

	err := r.h.Handle(context.Background(), ev)

	require.Error(t, err)
	assert.ErrorIs(t, err, throttled)
	got := r.atRiskEvents()
	require.Len(t, got, 1, "the alarm goes out even though the undo failed")
	assert.False(t, got[0].Undone)
	assert.Equal(t, keyguard.UndoEnableKey, got[0].UndoAction)
	assert.Contains(t, got[0].UndoError, "ThrottlingException")
	assert.Contains(t, got[0].Message, "could not undo")
	assert.Equal(t, kmstypes.KeyStateDisabled, r.keyState(keyARN))

	t.Run("the retry enables the key", func(t *testing.T) {
		r.guard.failNext("EnableKey", nil)
		require.NoError(t, r.h.Handle(context.Background(), ev))
		got := r.atRiskEvents()
		require.Len(t, got, 2)
		assert.True(t, got[1].Undone)
		assert.Equal(t, kmstypes.KeyStateEnabled, r.keyState(keyARN))
	})
}

func TestAPermanentUndoFailureIsPublishedButNotRetried(t *testing.T) {
	r := newRig(t, true)
	keyID, keyARN := r.createKey("analytics managed services")
	r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
	r.scheduleDeletion(keyARN)
	r.guard.failNext("CancelKeyDeletion", &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized to perform kms:CancelKeyDeletion", Fault: smithy.FaultClient})

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-schedulekeydeletion-cloudtrail.json", keyID)))

	got := r.atRiskEvents()
	require.Len(t, got, 1)
	assert.False(t, got[0].Undone)
	assert.Contains(t, got[0].UndoError, "AccessDeniedException")
	assert.Equal(t, kmstypes.KeyStatePendingDeletion, r.keyState(keyARN))
}

func TestAFailedPublishIsReturned(t *testing.T) {
	r := newRig(t, false)
	keyID, keyARN := r.createKey("analytics managed services")
	r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
	r.aws.FailPutEvents(1)

	err := r.h.Handle(context.Background(), fixture(t, "kms-disablekey-cloudtrail.json", keyID))

	var entry *keyguard.EntryError
	require.ErrorAs(t, err, &entry)
	assert.Equal(t, "InternalFailure", entry.Code)
	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-disablekey-cloudtrail.json", keyID)))
	assert.Len(t, r.atRiskEvents(), 1)
}

func TestRemindersArePagedAndAnUnreadableOneDoesNotHideTheOthers(t *testing.T) {
	r := newRig(t, false)
	oldKeyID, oldKeyARN := r.createKey("previous managed services key")
	_, newKeyARN := r.createKey("new managed services key")
	// The oldest reminder names the key; 120 newer ones push it onto the second page of 100. Its
	// workspace id is a JSON number, as a hand-started reminder may have it.
	r.startReminder("retire-oldest", reminderInput("rotate-oldest", newKeyARN, "new-cfg",
		map[string]any{"workspace_id": int64(wsML), "workspace_name": "ml", "outcome": rotation.OutcomeRotated,
			"previous_key_config_id": "old-cfg", "previous_key_arn": oldKeyARN}))
	r.startReminder("retire-unreadable", map[string]any{"execution": "rotate-x", "workspaces": "not a list"})
	for i := range 120 {
		r.startReminder(fmt.Sprintf("retire-%03d", i), reminderInput(fmt.Sprintf("rotate-%03d", i), newKeyARN, "new-cfg"))
	}

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-disablekey-cloudtrail.json", oldKeyID)))

	got := r.atRiskEvents()
	require.Len(t, got, 1)
	require.Len(t, got[0].Workspaces, 1)
	assert.Equal(t, "2345678901234567", got[0].Workspaces[0].WorkspaceID)
	assert.Equal(t, keyguard.UsePreviousKey, got[0].Workspaces[0].Use)
	var warned bool
	for _, rec := range r.logs.Records(t) {
		if rec["level"] == "WARN" && rec["msg"] == "retirement reminder input unreadable; its workspaces are not checked" {
			warned = true
		}
	}
	assert.True(t, warned, "the unreadable reminder is logged")
}

// Issue 9, item 4: the previous key is needed for 24 hours whenever the PATCH took, whatever the
// outcome: ROTATED_COMPUTE_DOWN, FAILED after the patch (its report says patched), a run the rescue
// ended after the patch, and a FAILED run whose report is missing (nothing says it was not patched).
func TestThePreviousKeyOfEveryPatchedWorkspaceIsAtRiskWhateverTheOutcome(t *testing.T) {
	r := newRig(t, false)
	oldKeyID, oldKeyARN := r.createKey("previous managed services key")
	_, newKeyARN := r.createKey("new managed services key")
	oldConfig := r.keyConfig(oldKeyARN, provisioning.KeyUseCaseManagedServices)
	newConfig := r.keyConfig(newKeyARN, provisioning.KeyUseCaseManagedServices)
	ws := func(id, name, outcome string, extra map[string]any) map[string]any {
		m := map[string]any{"workspace_id": id, "workspace_name": name, "outcome": outcome,
			"previous_key_config_id": oldConfig, "previous_key_arn": oldKeyARN}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	r.startReminder("retire-c3", reminderInput("rotate-cccc3333-03", newKeyARN, newConfig,
		ws("1000000000000001", "compute-down", rotation.OutcomeRotatedComputeDown, map[string]any{"summary": map[string]any{"patched": true}}),
		ws("1000000000000002", "failed-after-patch", rotation.OutcomeFailed, map[string]any{"summary": map[string]any{"patched": true}}),
		ws("1000000000000003", "failed-before-patch", rotation.OutcomeFailed, map[string]any{"summary": map[string]any{"patched": false}}),
		ws("1000000000000004", "failed-unreported", rotation.OutcomeFailed, nil),
		ws("1000000000000005", "rescued", rotation.OutcomeRescued, nil),
		ws("1000000000000006", "unchanged", rotation.OutcomeUnchanged, nil),
	))
	r.scheduleDeletion(oldKeyARN)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-schedulekeydeletion-cloudtrail.json", oldKeyID)))

	got := r.atRiskEvents()
	require.Len(t, got, 1)
	var names []string
	for _, w := range got[0].Workspaces {
		assert.Equal(t, keyguard.UsePreviousKey, w.Use)
		names = append(names, w.WorkspaceName)
	}
	assert.Equal(t, []string{"compute-down", "failed-after-patch", "failed-unreported", "rescued"}, names)
}

// Issue 9, item 4: a PutKeyPolicy that takes the Databricks grant away from a key in use raises the
// same critical event; one that keeps the grant raises nothing.
func TestAKeyPolicyThatDropsTheDatabricksGrantFromAKeyInUseIsReported(t *testing.T) {
	grant := `{"Sid":"Databricks","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/DatabricksAccountId":"` + faketest.AccountID + `"}}}`
	admin := `{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}`
	withPolicy := func(ev events.CloudWatchEvent, policy *string) events.CloudWatchEvent {
		return editDetail(t, ev, func(d map[string]any) {
			rp := d["requestParameters"].(map[string]any)
			if policy == nil {
				delete(rp, "policy")
			} else {
				rp["policy"] = *policy
			}
		})
	}
	setup := func(t *testing.T) (*rig, string) {
		r := newRig(t, true)
		r.h.Config.DatabricksAccountID = faketest.AccountID
		keyID, keyARN := r.createKey("managed services key")
		r.workspace(wsAnalytics, "analytics", r.keyConfig(keyARN, provisioning.KeyUseCaseManagedServices), "")
		return r, keyID
	}
	t.Run("the grant removed: a critical event naming what is missing, and no undo without a snapshot", func(t *testing.T) {
		r, keyID := setup(t)
		require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-putkeypolicy-cloudtrail.json", keyID)))
		got := r.atRiskEvents()
		require.Len(t, got, 1)
		assert.Equal(t, keyguard.SeverityCritical, got[0].Severity)
		assert.Equal(t, "PutKeyPolicy", got[0].EventName)
		assert.Contains(t, got[0].PolicyProblem, "kms:Encrypt, kms:Decrypt")
		assert.Contains(t, got[0].Message, "no longer lets Databricks use the key")
		assert.Contains(t, got[0].Message, "could not restore the previous policy")
		assert.Contains(t, got[0].UndoError, "previous policy is unknown")
		assert.False(t, got[0].Undone)
		assert.Empty(t, r.guard.Calls(), "nothing was called on the key")
	})
	// Item 4's optional undo: the policy Validate last accepted is put back.
	keyARNOf := func(id string) string { return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", region, awsAccount, id) }
	snapshots := func(t *testing.T, r *rig) *policysnap.Store {
		r.aws.CreateBucket("policies")
		store := &policysnap.Store{Bucket: "policies", S3: s3.New(s3.Options{Region: region, BaseEndpoint: aws.String(r.aws.URL()),
			Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""), UsePathStyle: true})}
		r.h.Policies = store
		return store
	}
	keyPolicy := func(t *testing.T, r *rig, keyID string) string {
		out, err := r.kms.GetKeyPolicy(context.Background(), &kms.GetKeyPolicyInput{KeyId: aws.String(keyID), PolicyName: aws.String("default")})
		require.NoError(t, err)
		return aws.ToString(out.Policy)
	}
	t.Run("the grant removed, undo on, a validated snapshot: the snapshot is put back", func(t *testing.T) {
		r, keyID := setup(t)
		store := snapshots(t, r)
		good := `{"Version":"2012-10-17","Statement":[` + admin + `,` + grant + `]}`
		validatedAt := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
		require.NoError(t, store.Save(context.Background(), policysnap.Snapshot{KeyARN: keyARNOf(keyID), Policy: good, ValidatedAt: validatedAt, Execution: "rotate-1"}))
		// What the CloudTrail record says was put (the fixture's policy, without the grant).
		bad := `{"Version":"2012-10-17","Statement":[` + admin + `]}`
		_, err := r.kms.PutKeyPolicy(context.Background(), &kms.PutKeyPolicyInput{KeyId: aws.String(keyID), PolicyName: aws.String("default"), Policy: aws.String(bad)})
		require.NoError(t, err)

		require.NoError(t, r.h.Handle(context.Background(), withPolicy(fixture(t, "kms-putkeypolicy-cloudtrail.json", keyID), &bad)))

		got := r.atRiskEvents()
		require.Len(t, got, 1)
		assert.True(t, got[0].Undone, got[0].UndoError)
		assert.Equal(t, keyguard.UndoPutKeyPolicy, got[0].UndoAction)
		assert.Contains(t, got[0].RestoredPolicy, "2026-11-20T08:00:00Z")
		assert.Contains(t, got[0].Message, "put back the policy a rotation validated")
		assert.JSONEq(t, good, keyPolicy(t, r, keyID), "local-kms holds the validated policy again")
		assert.Equal(t, []string{"PutKeyPolicy"}, r.guard.Calls())
	})
	t.Run("a snapshot that lacks the grant too is not put back", func(t *testing.T) {
		r, keyID := setup(t)
		store := snapshots(t, r)
		stale := `{"Version":"2012-10-17","Statement":[` + admin + `]}`
		require.NoError(t, store.Save(context.Background(), policysnap.Snapshot{KeyARN: keyARNOf(keyID), Policy: stale, ValidatedAt: time.Now()}))
		require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-putkeypolicy-cloudtrail.json", keyID)))
		got := r.atRiskEvents()
		require.Len(t, got, 1)
		assert.False(t, got[0].Undone)
		assert.Contains(t, got[0].UndoError, "does not let the workspaces use the key either")
		assert.Empty(t, r.guard.Calls())
	})
	t.Run("undo off: a snapshot is not used", func(t *testing.T) {
		r, keyID := setup(t)
		r.h.Config.UndoKeyChanges = false
		store := snapshots(t, r)
		require.NoError(t, store.Save(context.Background(), policysnap.Snapshot{KeyARN: keyARNOf(keyID),
			Policy: `{"Version":"2012-10-17","Statement":[` + admin + `,` + grant + `]}`, ValidatedAt: time.Now()}))
		require.NoError(t, r.h.Handle(context.Background(), fixture(t, "kms-putkeypolicy-cloudtrail.json", keyID)))
		got := r.atRiskEvents()
		require.Len(t, got, 1)
		assert.False(t, got[0].Undone)
		assert.Contains(t, got[0].Message, "UNDO_KEY_CHANGES is off")
		assert.Empty(t, r.guard.Calls())
	})
	t.Run("the grant kept: nothing published", func(t *testing.T) {
		r, keyID := setup(t)
		p := `{"Version":"2012-10-17","Statement":[` + admin + `,` + grant + `]}`
		require.NoError(t, r.h.Handle(context.Background(), withPolicy(fixture(t, "kms-putkeypolicy-cloudtrail.json", keyID), &p)))
		assert.Empty(t, r.atRiskEvents())
	})
	t.Run("a record without the policy is reported: it cannot be checked", func(t *testing.T) {
		r, keyID := setup(t)
		require.NoError(t, r.h.Handle(context.Background(), withPolicy(fixture(t, "kms-putkeypolicy-cloudtrail.json", keyID), nil)))
		got := r.atRiskEvents()
		require.Len(t, got, 1)
		assert.Contains(t, got[0].PolicyProblem, "does not carry the new policy")
	})
}
