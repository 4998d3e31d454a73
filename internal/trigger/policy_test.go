package trigger_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
)

const strictPolicy = `
version: 1
rules:
  - name: analytics
    workspaces: ["1234567890123456"]
    key_accounts: ["111122223333"]
    principals: ["arn:aws:iam::111122223333:role/KeyAdministrator"]
    mode: automatic
  - name: ml
    workspaces: ["2345678901234567"]
    key_accounts: ["111122223333"]
    principals: ["arn:aws:iam::111122223333:user/Alice"]
    use_cases: [MANAGED_SERVICES]
    mode: automatic
  - name: audit
    workspaces: ["3456789012345678"]
    key_accounts: ["111122223333"]
    principals: ["arn:aws:iam::111122223333:user/Alice"]
    mode: plan-only
`

func withPolicy(t *testing.T, doc string) *harness {
	t.Helper()
	hs := newHarness(t)
	p, err := policy.Parse([]byte(doc))
	require.NoError(t, err)
	hs.h.Policy = p
	return hs
}

func rejection(t *testing.T, hs *harness) trigger.PolicyRejection {
	t.Helper()
	require.Len(t, hs.events.inputs, 1, "exactly one event: the refusal")
	entry := hs.events.inputs[0].Entries[0]
	assert.Equal(t, rotation.DetailRotationRejected, aws.ToString(entry.DetailType))
	var d trigger.PolicyRejection
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(entry.Detail)), &d))
	return d
}

func TestAPrincipalThePolicyDoesNotAllowIsRefusedWithTheRuleNamed(t *testing.T) {
	hs := withPolicy(t, strictPolicy)
	// Alice creates a key tagged for 1234567890123456, whose rule allows only KeyAdministrator.
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-createkey-cloudtrail.json")))
	assert.Empty(t, hs.sfn.inputs, "nothing started")
	d := rejection(t, hs)
	assert.Equal(t, "analytics", d.Rule)
	assert.Equal(t, "REJECTED", d.Outcome)
	assert.Equal(t, "PolicyRejected", d.Error.Type)
	assert.Contains(t, d.Message, "arn:aws:iam::111122223333:user/Alice is not allowed")
	assert.Equal(t, []string{"1234567890123456"}, d.WorkspaceIDs)
}

func TestAWorkspaceNotInThePolicyIsRefusedByDefault(t *testing.T) {
	hs := withPolicy(t, strings.Replace(strictPolicy, `["1234567890123456"]`, `["1111111111111111"]`, 1))
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-createkey-cloudtrail.json")))
	assert.Empty(t, hs.sfn.inputs)
	assert.Equal(t, policy.DefaultDeny, rejection(t, hs).Rule)
}

func TestStorageWhereThePolicyForbidsItIsRefused(t *testing.T) {
	hs := withPolicy(t, strictPolicy)
	hs.kms.tags[key2] = map[string]string{"databricks:workspace": "2345678901234567", "databricks:use-cases": "MANAGED_SERVICES STORAGE"}
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-updatealias-cloudtrail.json")))
	assert.Empty(t, hs.sfn.inputs)
	d := rejection(t, hs)
	assert.Equal(t, "ml", d.Rule)
	assert.Contains(t, d.Message, "use case STORAGE is not allowed")
}

func TestAPlanOnlyWorkspaceGetsADryRun(t *testing.T) {
	hs := withPolicy(t, strictPolicy)
	hs.kms.tags[key2] = map[string]string{"databricks:workspace": "3456789012345678"}
	require.NoError(t, hs.h.Handle(context.Background(), loadFixture(t, "kms-updatealias-cloudtrail.json")))
	require.Len(t, hs.sfn.inputs, 1)
	req, err := rotation.ParseRequest([]byte(aws.ToString(hs.sfn.inputs[0].Input)))
	require.NoError(t, err)
	assert.True(t, req.DryRun)
}

func TestAnEventFromAnotherAccountIsIgnoredBeforeAnythingIsRead(t *testing.T) {
	for name, doc := range map[string]string{
		"not listed":                      strictPolicy,
		"listed by the policy's accounts": strings.Replace(strictPolicy, "version: 1", "version: 1\naccounts: [\"444455556666\"]", 1),
	} {
		t.Run(name, func(t *testing.T) {
			hs := withPolicy(t, strings.ReplaceAll(doc, "user/Alice", "*"))
			ev := loadFixture(t, "kms-updatealias-cloudtrail.json")
			ev.AccountID = "444455556666"
			require.NoError(t, hs.h.Handle(context.Background(), ev))
			if strings.Contains(doc, "444455556666") {
				assert.NotEmpty(t, hs.kms.calls, "a listed account's event is considered")
				return
			}
			assert.Empty(t, hs.kms.calls, "no key was read")
			assert.Empty(t, hs.sfn.inputs)
			assert.Empty(t, hs.events.inputs)
			recs := hs.logs.Records(t)
			require.Len(t, recs, 1)
			assert.Contains(t, recs[0]["reason"], `account "444455556666"`)
		})
	}
}
