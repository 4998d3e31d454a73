package keyguard_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyguard"
)

// TestParseEventOverEveryFixture holds what the guard makes of every file under events/kms: the
// three changes it guards, and a Skip for everything else.
func TestParseEventOverEveryFixture(t *testing.T) {
	guarded := map[string]keyguard.KeyChange{
		"kms-schedulekeydeletion-cloudtrail.json": {
			Change: keyguard.ChangeScheduleKeyDeletion, KeyARN: fixtureKey, EventID: "3c4226b0-1e81-48a8-a333-7fa5f3cbd118",
			EventName: "ScheduleKeyDeletion", Actor: "arn:aws:iam::111122223333:user/Alice", EventTime: "2021-03-23T18:58:30Z",
		},
		"kms-disablekey-cloudtrail.json": {
			Change: keyguard.ChangeDisableKey, KeyARN: fixtureKey, EventID: "995c4653-3c53-4a06-a0f0-f5531997b741",
			EventName: "DisableKey", Actor: "arn:aws:iam::111122223333:user/Alice", EventTime: "2014-11-04T00:52:43Z",
		},
		"kms-putkeypolicy-cloudtrail.json": {
			Change: keyguard.ChangePutKeyPolicy, KeyARN: fixtureKey, EventID: "c217db1f-903f-4a2f-8f88-9580182d6313",
			EventName: "PutKeyPolicy", Actor: "arn:aws:iam::111122223333:user/Alice", EventTime: "2026-11-30T09:12:44Z",
			Policy: "{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::111122223333:root\"\n    },\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  } ]\n}",
		},
		"kms-cmk-deletion.json": {
			Change: keyguard.ChangeKeyDeleted, KeyARN: fixtureKey, EventID: "e9ce3425-7d22-412a-a699-e7a5fc3fbc9a",
			EventName: "KMS CMK Deletion", Actor: "kms.amazonaws.com", EventTime: "2022-08-10T16:37:50Z",
		},
	}
	entries, err := os.ReadDir(fixtureDir)
	require.NoError(t, err)
	seen := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			got, err := keyguard.ParseEvent(fixture(t, e.Name(), ""), []string{rotatorRole})
			want, ok := guarded[e.Name()]
			if !ok {
				var sk *keyguard.Skip
				require.ErrorAs(t, err, &sk)
				assert.False(t, sk.Malformed, "a well-formed fixture: %s", sk.Reason)
				return
			}
			seen++
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
	assert.Equal(t, len(guarded), seen, "every guarded fixture exists")
}

func TestParseEventFindsTheKey(t *testing.T) {
	const (
		alias    = "alias/databricks/ws-cmk"
		aliasARN = "arn:aws:kms:us-west-2:111122223333:" + alias
		otherKey = "arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
	)
	schedule := func(keyID any, resources ...any) func(map[string]any) {
		return func(d map[string]any) {
			d["requestParameters"] = map[string]any{"keyId": keyID, "pendingWindowInDays": 7}
			d["resources"] = resources
		}
	}
	resource := func(arn string) map[string]any {
		return map[string]any{"accountId": "111122223333", "type": "AWS::KMS::Key", "ARN": arn}
	}
	for _, tc := range []struct {
		name           string
		edit           func(map[string]any)
		keyARN, keyRef string
	}{
		{"a key ARN in keyId is the key", schedule(fixtureKey), fixtureKey, ""},
		{"a key id is matched with the resources", schedule(fixtureKeyID, resource(otherKey), resource(fixtureKey)), fixtureKey, ""},
		{"a key id without resources is resolved later", schedule(fixtureKeyID), "", fixtureKeyID},
		{"an alias is the key the resources name", schedule(alias, resource(fixtureKey)), fixtureKey, ""},
		{"an alias without resources is resolved later", schedule(alias), "", alias},
		{"an alias ARN without resources is resolved later", schedule(aliasARN), "", aliasARN},
		{"no keyId falls back to the resources", schedule("", resource(fixtureKey)), fixtureKey, ""},
		{"a multi-Region key id", schedule("mrk-1234abcd12ab34cd56ef1234567890ab"), "", "mrk-1234abcd12ab34cd56ef1234567890ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := editDetail(t, fixture(t, "kms-schedulekeydeletion-cloudtrail.json", ""), tc.edit)
			got, err := keyguard.ParseEvent(ev, nil)
			require.NoError(t, err)
			assert.Equal(t, keyguard.ChangeScheduleKeyDeletion, got.Change)
			assert.Equal(t, tc.keyARN, got.KeyARN)
			assert.Equal(t, tc.keyRef, got.KeyRef)
		})
	}
}

func TestParseEventSkipsWithAReason(t *testing.T) {
	cloudTrail := func(edit func(map[string]any)) events.CloudWatchEvent {
		return editDetail(t, fixture(t, "kms-disablekey-cloudtrail.json", ""), edit)
	}
	deletion := fixture(t, "kms-cmk-deletion.json", "")
	trimmedDeletion := deletion
	trimmedDeletion.Resources = nil
	noKeyDeletion := trimmedDeletion
	noKeyDeletion.Detail = []byte(`{"key-id": "not-a-key"}`)
	otherSource := deletion
	otherSource.Source = "aws.s3"

	for _, tc := range []struct {
		name      string
		ev        events.CloudWatchEvent
		malformed bool
		reason    string
	}{
		{"a failed call", cloudTrail(func(d map[string]any) { d["errorCode"] = "DisabledException" }), false, "failed with \"DisabledException\""},
		{"a call by an ignored principal", cloudTrail(func(d map[string]any) {
			d["userIdentity"] = map[string]any{"arn": "arn:aws:sts::111122223333:assumed-role/databricks-cmk-rotator/s",
				"sessionContext": map[string]any{"sessionIssuer": map[string]any{"arn": rotatorRole}}}
		}), false, "IGNORED_PRINCIPAL_ARNS"},
		{"another KMS call", cloudTrail(func(d map[string]any) { d["eventName"] = "EnableKey" }), false, "do not concern"},
		{"another event source", cloudTrail(func(d map[string]any) { d["eventSource"] = "s3.amazonaws.com" }), false, "eventSource"},
		{"another EventBridge source", otherSource, false, "source \"aws.s3\""},
		{"a keyId that is no key reference", cloudTrail(func(d map[string]any) { d["requestParameters"] = map[string]any{"keyId": "my key"} }), true, "neither a key ARN"},
		{"a keyId ARN of another service", cloudTrail(func(d map[string]any) {
			d["requestParameters"] = map[string]any{"keyId": "arn:aws:s3:::bucket/key"}
		}), true, "requestParameters.keyId"},
		{"a keyId of the wrong type", cloudTrail(func(d map[string]any) { d["requestParameters"] = map[string]any{"keyId": 42} }), true, "malformed requestParameters"},
		{"no key at all", cloudTrail(func(d map[string]any) { delete(d, "requestParameters"); delete(d, "resources") }), true, "keyId is missing"},
		{"a deletion naming no key", noKeyDeletion, true, "names no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keyguard.ParseEvent(tc.ev, []string{rotatorRole})
			var sk *keyguard.Skip
			require.True(t, errors.As(err, &sk), "got %v", err)
			assert.Equal(t, tc.malformed, sk.Malformed)
			assert.Contains(t, sk.Reason, tc.reason)
		})
	}

	t.Run("a deletion without resources is built from key-id, region and account", func(t *testing.T) {
		got, err := keyguard.ParseEvent(trimmedDeletion, nil)
		require.NoError(t, err)
		assert.Equal(t, fixtureKey, got.KeyARN)
	})
}
