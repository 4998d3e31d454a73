package trigger_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
)

const alice = "arn:aws:iam::111122223333:user/Alice"

var (
	managed = []string{rotation.UseCaseManagedServices}
	both    = []string{rotation.UseCaseManagedServices, rotation.UseCaseStorage}
)

func ptr[T any](v T) *T { return &v }

type fixtureCase struct {
	fixture string
	action  trigger.Action
	// reason must be contained in Decision.Reason.
	reason  string
	keyARN  string
	request *rotation.Request // Start only
	name    string            // Start only: the exact execution name
	audit   *trigger.KeyMaterialRotated
	// lookups are the keys whose tags Decide must read, in order.
	lookups []string
}

// fixtureCases covers every file under events/kms (TestEveryFixtureHasACase keeps it that way).
var fixtureCases = []fixtureCase{
	{
		fixture: "kms-createkey-cloudtrail.json",
		action:  trigger.ActionStart,
		reason:  "CreateKey: rotate workspace(s) 1234567890123456 onto key " + key1 + " for MANAGED_SERVICES",
		keyARN:  key1,
		request: &rotation.Request{
			WorkspaceIDs: []string{"1234567890123456"}, KeyARN: key1, UseCases: managed,
			Trigger: &rotation.Trigger{EventID: "ba116326-1792-4784-87dd-a688d1cb42ec", EventName: "CreateKey", Actor: alice, EventTime: "2020-06-30T02:34:07Z"},
		},
		name: "rotate-1234abcd-d56b0dd673fb36cab0c96a849ae0296a5452890accaff67572341649a00d3356",
	},
	{
		fixture: "kms-createkey-workspaces-usecases-cloudtrail.json",
		action:  trigger.ActionStart,
		reason:  "CreateKey: plan (dry run) workspace(s) 1234567890123456, 2345678901234567 onto key " + key4 + " for MANAGED_SERVICES and STORAGE",
		keyARN:  key4,
		request: &rotation.Request{
			WorkspaceIDs: []string{"1234567890123456", "2345678901234567"}, KeyARN: key4, UseCases: both,
			ReuseKeyForClusterVolumes: ptr(false), DryRun: true,
			Trigger: &rotation.Trigger{EventID: "4f2d8a7e-1b3c-4d5e-8f9a-0b1c2d3e4f51", EventName: "CreateKey", Actor: alice, EventTime: "2020-06-30T02:34:07Z"},
		},
		name: "rotate-6a1b2c3d-36d0bc62fd7fcde09674cfa4fe1c67f6f31297b294f83bdffc0c6cba1448e0da",
	},
	{
		fixture: "kms-createkey-untagged-cloudtrail.json",
		action:  trigger.ActionIgnore,
		reason:  "key " + key3 + " has no databricks:workspace tag, so it has not opted in",
		keyARN:  key3,
	},
	{
		fixture: "kms-createkey-bad-tag-cloudtrail.json",
		action:  trigger.ActionIgnore,
		reason:  `key ` + key1 + `: tag databricks:use-cases="MANAGED_SERVICE" is invalid: "MANAGED_SERVICE" is not a use case (want MANAGED_SERVICES, STORAGE or both); nothing started`,
		keyARN:  key1,
	},
	{
		fixture: "kms-tagresource-cloudtrail.json",
		action:  trigger.ActionStart,
		reason:  "TagResource: rotate workspace(s) 1234567890123456 onto key " + key1,
		keyARN:  key1,
		request: &rotation.Request{
			WorkspaceIDs: []string{"1234567890123456"}, KeyARN: key1, UseCases: managed,
			Trigger: &rotation.Trigger{EventID: "0a091b9b-0df5-4cf9-b667-6f2879532b8f", EventName: "TagResource", Actor: alice, EventTime: "2020-07-01T21:19:25Z"},
		},
		name:    "rotate-1234abcd-384514ee1a7fa5ac497cea8fc92511f711db6c3b2cd1da8b99e7e20f9128fdbe",
		lookups: []string{key1, key1},
	},
	{
		fixture: "kms-tagresource-other-tags-cloudtrail.json",
		action:  trigger.ActionIgnore,
		reason:  "TagResource added no tag under databricks:",
		keyARN:  key1,
	},
	{
		fixture: "kms-createalias-cloudtrail.json",
		action:  trigger.ActionStart,
		reason:  "CreateAlias alias/databricks/ws-cmk: rotate workspace(s) 1234567890123456 onto key " + key1,
		keyARN:  key1,
		request: &rotation.Request{
			WorkspaceIDs: []string{"1234567890123456"}, KeyARN: key1, KeyAlias: "alias/databricks/ws-cmk", UseCases: managed,
			Trigger: &rotation.Trigger{EventID: "f72d3993-864f-48d6-8f16-e26e1ae8dff0", EventName: "CreateAlias", Actor: alice, EventTime: "2020-11-13T23:18:15Z"},
		},
		name:    "rotate-1234abcd-0a30b7b11cac6186f2e4773463122432a3603e8f6dfad53870fe58a6bfdd06b7",
		lookups: []string{key1, key1},
	},
	{
		fixture: "kms-updatealias-cloudtrail.json",
		action:  trigger.ActionStart,
		reason:  "UpdateAlias alias/databricks/ws-cmk: rotate workspace(s) 1234567890123456, 2345678901234567 onto key " + key2 + " for MANAGED_SERVICES and STORAGE",
		keyARN:  key2,
		request: &rotation.Request{
			WorkspaceIDs: []string{"1234567890123456", "2345678901234567"}, KeyARN: key2, KeyAlias: "alias/databricks/ws-cmk", UseCases: both,
			ReuseKeyForClusterVolumes: ptr(true),
			Trigger:                   &rotation.Trigger{EventID: "f72d3993-864f-48d6-8f16-e26e1ae8dff1", EventName: "UpdateAlias", Actor: alice, EventTime: "2020-11-13T23:18:15Z"},
		},
		name:    "rotate-0987dcba-d7c56e6661c961275c1e245da47e5d9d29b40e54ca3d92fe221e3992ce1efa8e",
		lookups: []string{key2, key2, key2},
	},
	{
		fixture: "kms-updatealias-other-prefix-cloudtrail.json",
		action:  trigger.ActionIgnore,
		reason:  "alias alias/databricks-ws-cmk is outside ALIAS_PREFIX alias/databricks/",
	},
	{
		fixture: "kms-createalias-untagged-key-cloudtrail.json",
		action:  trigger.ActionIgnore,
		reason:  "key " + key3 + " has no databricks:workspace tag, so it has not opted in",
		keyARN:  key3,
		lookups: []string{key3},
	},
	{
		fixture: "kms-createalias-govcloud-cloudtrail.json",
		action:  trigger.ActionStart,
		reason:  "CreateAlias alias/databricks/gov-ws: rotate workspace(s) 3456789012345678 onto key " + govKey1,
		keyARN:  govKey1,
		request: &rotation.Request{
			WorkspaceIDs: []string{"3456789012345678"}, KeyARN: govKey1, KeyAlias: "alias/databricks/gov-ws", UseCases: managed,
			Trigger: &rotation.Trigger{EventID: "4f2d8a7e-1b3c-4d5e-8f9a-0b1c2d3e4f57", EventName: "CreateAlias", Actor: "arn:aws-us-gov:iam::111122223333:user/Alice", EventTime: "2020-11-13T23:18:15Z"},
		},
		name:    "rotate-1234abcd-9a2780aa1cc2603e9340db5717dbd955cdea0ba4094736985bafd5d86b9d8f17",
		lookups: []string{govKey1},
	},
	{
		fixture: "kms-createalias-failed-cloudtrail.json",
		action:  trigger.ActionIgnore,
		reason:  "the CreateAlias call failed with AlreadyExistsException, so nothing changed",
	},
	{
		fixture: "kms-updatealias-by-rotator-role-cloudtrail.json",
		action:  trigger.ActionIgnore,
		reason:  "the call was made by " + rotatorRoleARN + ", which IGNORED_PRINCIPAL_ARNS lists",
	},
	{
		fixture: "kms-rotatekeyondemand-cloudtrail.json",
		action:  trigger.ActionAudit,
		reason:  "RotateKeyOnDemand: key material of " + key1 + " rotated; the key ARN is unchanged",
		keyARN:  key1,
		audit: &trigger.KeyMaterialRotated{KeyARN: key1, EventName: "RotateKeyOnDemand", EventID: "00a09fbc-20d6-4a58-9b92-7da85984ab77",
			WorkspaceIDs: []string{"1234567890123456"}, Message: "Key material rotated; the key ARN is unchanged, so Databricks needs no update."},
		lookups: []string{key1, key1},
	},
	{
		fixture: "kms-rotatekey-service-event-cloudtrail.json",
		action:  trigger.ActionAudit,
		reason:  "RotateKey: key material of " + key1 + " rotated",
		keyARN:  key1,
		audit: &trigger.KeyMaterialRotated{KeyARN: key1, EventName: "RotateKey", EventID: "a24b3967-ddad-417f-9b22-2332b918db06",
			WorkspaceIDs: []string{"1234567890123456"}, Message: "Key material rotated; the key ARN is unchanged, so Databricks needs no update."},
		lookups: []string{key1, key1},
	},
	{
		fixture: "kms-cmk-rotation.json",
		action:  trigger.ActionAudit,
		reason:  "KMS CMK Rotation: key material of " + key1 + " rotated",
		keyARN:  key1,
		audit: &trigger.KeyMaterialRotated{KeyARN: key1, EventName: "KMS CMK Rotation", EventID: "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
			WorkspaceIDs: []string{"1234567890123456"}, Message: "Key material rotated; the key ARN is unchanged, so Databricks needs no update."},
		lookups: []string{key1, key1},
	},
	{fixture: "kms-schedulekeydeletion-cloudtrail.json", action: trigger.ActionIgnore, reason: "ScheduleKeyDeletion is handled by the key guard", keyARN: key1},
	{fixture: "kms-disablekey-cloudtrail.json", action: trigger.ActionIgnore, reason: "DisableKey is handled by the key guard", keyARN: key1},
	{fixture: "kms-putkeypolicy-cloudtrail.json", action: trigger.ActionIgnore, reason: "PutKeyPolicy"},
	{fixture: "kms-cmk-deletion.json", action: trigger.ActionIgnore, reason: "KMS CMK Deletion is handled by the key guard", keyARN: key1},
	{fixture: "kms-imported-key-material-expiration.json", action: trigger.ActionIgnore, reason: "KMS Imported Key Material Expiration is handled by the key guard", keyARN: key1},
}

var executionNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func TestDecideOverEveryFixture(t *testing.T) {
	cfg := testConfig(t)
	for _, tc := range fixtureCases {
		t.Run(strings.TrimSuffix(tc.fixture, ".json"), func(t *testing.T) {
			ev := loadFixture(t, tc.fixture)
			fk := &fakeKMS{tags: keyTags()}
			d, err := trigger.Decide(context.Background(), cfg, ev, fk.lookup())
			require.NoError(t, err)
			assert.Equal(t, tc.action, d.Action, "reason: %s", d.Reason)
			assert.Contains(t, d.Reason, tc.reason)
			assert.Equal(t, tc.keyARN, d.KeyARN)
			assert.Equal(t, tc.lookups, fk.calls, "ListResourceTags calls (one per tag page)")
			switch tc.action {
			case trigger.ActionStart:
				require.NotNil(t, tc.request)
				assert.Equal(t, *tc.request, d.Request)
				assert.Equal(t, tc.name, d.ExecutionName)
				assert.Regexp(t, executionNameRE, d.ExecutionName)
				assert.Equal(t, tc.request.WorkspaceIDs, d.WorkspaceIDs)
				assert.Nil(t, d.Audit)
			case trigger.ActionAudit:
				assert.Equal(t, tc.audit, d.Audit)
				assert.Empty(t, d.ExecutionName)
			case trigger.ActionIgnore:
				assert.Empty(t, d.ExecutionName)
				assert.Equal(t, rotation.Request{}, d.Request)
				assert.Nil(t, d.Audit)
			}
		})
	}
}

func TestEveryFixtureHasACase(t *testing.T) {
	entries, err := os.ReadDir(fixtureDir)
	require.NoError(t, err)
	covered := map[string]bool{}
	for _, tc := range fixtureCases {
		covered[tc.fixture] = true
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			assert.True(t, covered[e.Name()], "fixture %s has no case in fixtureCases", e.Name())
		}
	}
}

func TestDecideIsDeterministicForTheSameEvent(t *testing.T) {
	cfg := testConfig(t)
	for _, tc := range fixtureCases {
		if tc.action != trigger.ActionStart {
			continue
		}
		t.Run(strings.TrimSuffix(tc.fixture, ".json"), func(t *testing.T) {
			ev := loadFixture(t, tc.fixture)
			first, err := trigger.Decide(context.Background(), cfg, ev, (&fakeKMS{tags: keyTags()}).lookup())
			require.NoError(t, err)
			second, err := trigger.Decide(context.Background(), cfg, loadFixture(t, tc.fixture), (&fakeKMS{tags: keyTags()}).lookup())
			require.NoError(t, err)
			in1, err := first.Input()
			require.NoError(t, err)
			in2, err := second.Input()
			require.NoError(t, err)
			assert.Equal(t, first.ExecutionName, second.ExecutionName)
			assert.Equal(t, in1, in2, "the input must be byte-identical")
		})
	}
}

func TestExecutionNameFollowsTheDocumentedFormat(t *testing.T) {
	sum := sha256.Sum256([]byte(key2 + "\n1234567890123456,2345678901234567\nevent-1"))
	want := "rotate-0987dcba-" + hex.EncodeToString(sum[:])
	assert.Len(t, want, 80)
	got := trigger.ExecutionName(key2, []string{"2345678901234567", "1234567890123456"}, "event-1")
	assert.Equal(t, want, got, "workspace ids are sorted before hashing")
	assert.NotEqual(t, got, trigger.ExecutionName(key2, []string{"1234567890123456"}, "event-1"), "the workspace set is part of the name")
	assert.NotEqual(t, got, trigger.ExecutionName(key2, []string{"1234567890123456", "2345678901234567"}, "event-2"), "the event id is part of the name")
	assert.Regexp(t, executionNameRE, trigger.ExecutionName("arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", nil, "x"))
}

func TestDecideIgnoresUnusableEvents(t *testing.T) {
	cfg := testConfig(t)
	createKey := loadFixture(t, "kms-createkey-cloudtrail.json")
	withDetail := func(detail string) events.CloudWatchEvent {
		ev := createKey
		ev.Detail = json.RawMessage(detail)
		return ev
	}
	tests := []struct {
		name   string
		ev     events.CloudWatchEvent
		reason string
	}{
		{"malformed JSON detail is ignored with the parser's complaint", withDetail(`{"eventName":`), "malformed detail: unexpected end of JSON input"},
		{"a detail that is not an object is ignored", withDetail(`"CreateKey"`), "malformed detail: json: cannot unmarshal string"},
		{"a detail with a wrongly typed field is ignored", withDetail(`{"eventName":42}`), "malformed detail"},
		{"a missing detail is ignored", withDetail(``), "has no detail"},
		{"requestParameters of the wrong shape are named", withDetail(`{"eventSource":"kms.amazonaws.com","eventName":"CreateAlias","requestParameters":"oops"}`),
			"malformed CreateAlias event: detail.requestParameters is malformed"},
		{"CreateKey without the key ARN names the missing field", withDetail(`{"eventSource":"kms.amazonaws.com","eventName":"CreateKey","requestParameters":{"tags":[]},"responseElements":null}`),
			"malformed CreateKey event: responseElements.keyMetadata.arn is missing"},
		{"an alias event with an alias as target is ignored", withDetail(`{"eventSource":"kms.amazonaws.com","eventName":"UpdateAlias","awsRegion":"us-west-2","recipientAccountId":"111122223333","requestParameters":{"aliasName":"alias/databricks/x","targetKeyId":"alias/other"}}`),
			`requestParameters.targetKeyId "alias/other" is an alias name, not a key`},
		{"a bare key id without region or account anywhere is ignored", func() events.CloudWatchEvent {
			ev := withDetail(`{"eventSource":"kms.amazonaws.com","eventName":"TagResource","requestParameters":{"keyId":"1234abcd-12ab-34cd-56ef-1234567890ab","tags":[{"tagKey":"databricks:workspace","tagValue":"1"}]}}`)
			ev.Region, ev.AccountID = "", ""
			return ev
		}(),
			`requestParameters.keyId "1234abcd-12ab-34cd-56ef-1234567890ab" does not make a key ARN`},
		{"another service's CloudTrail event is ignored", withDetail(`{"eventSource":"s3.amazonaws.com","eventName":"CreateBucket"}`), `eventSource "s3.amazonaws.com" is not kms.amazonaws.com`},
		{"an unknown KMS call is ignored", withDetail(`{"eventSource":"kms.amazonaws.com","eventName":"Encrypt"}`), "KMS Encrypt events do not concern the trigger"},
		{"an unknown detail-type is ignored", func() events.CloudWatchEvent { ev := createKey; ev.DetailType = "KMS Something New"; return ev }(), `detail-type "KMS Something New" is not one the trigger handles`},
		{"another source is ignored", func() events.CloudWatchEvent { ev := createKey; ev.Source = "aws.s3"; return ev }(), `source "aws.s3" is not aws.kms`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fk := &fakeKMS{tags: keyTags()}
			d, err := trigger.Decide(context.Background(), cfg, tt.ev, fk.lookup())
			require.NoError(t, err)
			assert.Equal(t, trigger.ActionIgnore, d.Action)
			assert.Contains(t, d.Reason, tt.reason)
		})
	}
}

func TestDecideIgnoresInvalidTagValuesNamingTheTag(t *testing.T) {
	cfg := testConfig(t)
	tests := []struct {
		name   string
		tags   map[string]string
		reason string
	}{
		{"a workspace id with letters", map[string]string{"databricks:workspace": "123 abc"},
			`tag databricks:workspace="123 abc" is invalid: "abc" is not a Databricks workspace id`},
		{"an empty workspace tag", map[string]string{"databricks:workspace": ""},
			`tag databricks:workspace="" is invalid: it names no workspace id`},
		{"an unknown use case", map[string]string{"databricks:workspace": "1", "databricks:use-cases": "EBS"},
			`tag databricks:use-cases="EBS" is invalid: "EBS" is not a use case`},
		{"reuse without STORAGE", map[string]string{"databricks:workspace": "1", "databricks:reuse-key-for-cluster-volumes": "true"},
			`tag databricks:reuse-key-for-cluster-volumes="true" is invalid: it only applies when databricks:use-cases includes STORAGE`},
		{"dry-run that is not a boolean", map[string]string{"databricks:workspace": "1", "databricks:dry-run": "yes"},
			`tag databricks:dry-run="yes" is invalid: want true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fk := &fakeKMS{tags: map[string]map[string]string{key1: tt.tags}}
			d, err := trigger.Decide(context.Background(), cfg, loadFixture(t, "kms-tagresource-cloudtrail.json"), fk.lookup())
			require.NoError(t, err)
			assert.Equal(t, trigger.ActionIgnore, d.Action)
			assert.Contains(t, d.Reason, tt.reason)
			assert.Contains(t, d.Reason, "nothing started")
		})
	}
}

func TestDecideIgnoresAKeyThatNoLongerExists(t *testing.T) {
	fk := &fakeKMS{tags: map[string]map[string]string{}}
	d, err := trigger.Decide(context.Background(), testConfig(t), loadFixture(t, "kms-createalias-cloudtrail.json"), fk.lookup())
	require.NoError(t, err)
	assert.Equal(t, trigger.ActionIgnore, d.Action)
	assert.Contains(t, d.Reason, "which no longer exists")
}

func TestDecideHonoursACustomPrefix(t *testing.T) {
	cfg := testConfig(t)
	cfg.TagPrefix, cfg.AliasPrefix = "acme/dbx:", "alias/databricks-"
	fk := &fakeKMS{tags: map[string]map[string]string{key2: {"acme/dbx:workspace": "42"}}}
	d, err := trigger.Decide(context.Background(), cfg, loadFixture(t, "kms-updatealias-other-prefix-cloudtrail.json"), fk.lookup())
	require.NoError(t, err)
	assert.Equal(t, trigger.ActionStart, d.Action, d.Reason)
	assert.Equal(t, []string{"42"}, d.Request.WorkspaceIDs)
	assert.Equal(t, "alias/databricks-ws-cmk", d.Request.KeyAlias)
}

func TestDecideUsesTheEnvelopeWhenTheDetailLacksIDs(t *testing.T) {
	ev := events.CloudWatchEvent{
		ID: "envelope-id", DetailType: trigger.DetailTypeAPICall, Source: "aws.kms", AccountID: "111122223333",
		Region: "us-west-2", Time: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Detail: json.RawMessage(`{"eventSource":"kms.amazonaws.com","eventName":"CreateAlias","requestParameters":{"aliasName":"alias/databricks/a","targetKeyId":"1234abcd-12ab-34cd-56ef-1234567890ab"}}`),
	}
	fk := &fakeKMS{tags: keyTags()}
	d, err := trigger.Decide(context.Background(), testConfig(t), ev, fk.lookup())
	require.NoError(t, err)
	require.Equal(t, trigger.ActionStart, d.Action, d.Reason)
	assert.Equal(t, &rotation.Trigger{EventID: "envelope-id", EventName: "CreateAlias", EventTime: "2026-03-04T05:06:07Z"}, d.Request.Trigger)
	assert.Equal(t, key1, d.Request.KeyARN, "the ARN is built from the envelope's region and account")
}
