package policy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	bundled "github.com/cmk-rotator/databricks-cmk-rotator/policy"
)

// The CI gate for the deployed policy: the committed file must load, and must allow the sandbox's
// demo (make demo rotates workspace 1234567890123456 from a CreateKey by user/Alice).
func TestTheBundledPolicyIsValid(t *testing.T) {
	p, err := policy.Load(func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	_, err = p.Evaluate(policy.Request{WorkspaceIDs: []string{"1234567890123456"},
		KeyARN:   "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		UseCases: []string{"MANAGED_SERVICES"}, Automatic: true, Actor: "arn:aws:iam::111122223333:user/Alice"})
	assert.NoError(t, err, "the demo's rotation must be allowed by the bundled policy")
	assert.NotEmpty(t, bundled.Document)
}

const base = `
version: 1
rules:
  - name: prod
    workspaces: ["1111111111111111", "2222222222222222"]
    key_accounts: ["111122223333"]
    keys: ["arn:aws:kms:us-west-2:111122223333:key/*"]
    alias_prefixes: ["alias/databricks/"]
    principals: ["arn:aws:iam::111122223333:role/KeyAdmin", "arn:aws:sts::111122223333:assumed-role/KeyAdmin/*"]
    use_cases: [MANAGED_SERVICES]
    mode: approval
    window: "Sun 02:00-05:00 Europe/Berlin"
    approval_timeout: 2h
  - name: dev
    workspaces: ["3333333333333333"]
    key_accounts: ["111122223333", "444455556666"]
    principals: ["arn:aws:iam::111122223333:user/*"]
    use_cases: [MANAGED_SERVICES, STORAGE]
    mode: automatic
  - name: audit-only
    workspaces: ["5555555555555555"]
    key_accounts: ["111122223333"]
    mode: plan-only
`

func mustParse(t *testing.T, doc string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(doc))
	require.NoError(t, err)
	return p
}

func TestAMalformedPolicyIsAnErrorNamingEachBadEntry(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"an unknown field (a typo must not drop a restriction)", strings.Replace(base, "principals: [\"arn:aws:iam::111122223333:user/*\"]", "principal: [\"x\"]", 1), []string{"principal"}},
		{"a bad mode", strings.Replace(base, "mode: automatic", "mode: yolo", 1), []string{`rule "dev"`, `mode "yolo"`}},
		{"a bad time zone", strings.Replace(base, "Europe/Berlin", "Europe/Atlantis", 1), []string{`rule "prod"`, "Europe/Atlantis"}},
		{"a window shorter than the rotation", strings.Replace(base, "02:00-05:00", "02:00-02:30", 1), []string{`rule "prod"`, "shorter than"}},
		{"an unquoted workspace id", strings.Replace(base, `"3333333333333333"`, "3333333333333333.5", 1), []string{`rule "dev"`, "3333333333333333.5"}},
		{"a workspace in two rules", strings.Replace(base, `["5555555555555555"]`, `["1111111111111111"]`, 1), []string{`rule "audit-only"`, "already governed by rule \"prod\""}},
		{"a bad account", strings.Replace(base, `"444455556666"`, `"4444"`, 1), []string{`rule "dev"`, `"4444"`}},
		{"a bad use case", strings.Replace(base, "[MANAGED_SERVICES, STORAGE]", "[MANAGED_SERVICES, DBFS]", 1), []string{`rule "dev"`, "DBFS"}},
		{"a bad principal", strings.Replace(base, "arn:aws:iam::111122223333:user/*", "Alice", 1), []string{`rule "dev"`, `"Alice"`}},
		{"a rule without a name", strings.Replace(base, "name: dev", "name: \"\"", 1), []string{"rules[1]: name is required"}},
		{"a wrong version", strings.Replace(base, "version: 1", "version: 2", 1), []string{"version is 2"}},
		{"a bad approval timeout", strings.Replace(base, "approval_timeout: 2h", "approval_timeout: soon", 1), []string{`rule "prod"`, `"soon"`}},
		{"no rules", "version: 1\nrules: []\n", []string{"rules: none"}},
		{"two documents", base + "---\nversion: 1\n", []string{"more than one"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Parse([]byte(tc.doc))
			var perr *policy.Error
			require.ErrorAs(t, err, &perr)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	p := mustParse(t, base)
	key := "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	admin := "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice"
	cases := []struct {
		name     string
		req      policy.Request
		wantRule string // refusal rule; "" when allowed
		wantText string
		want     policy.Decision
	}{
		{name: "an allowed principal in approval mode must wait for an approval and the window",
			req:  policy.Request{WorkspaceIDs: []string{"1111111111111111"}, KeyARN: key, UseCases: []string{"MANAGED_SERVICES"}, Automatic: true, Actor: admin},
			want: policy.Decision{Rules: []string{"prod"}, Mode: "approval", ApprovalRequired: true, ApprovalTimeoutSeconds: 7200, Window: "Sun 02:00-05:00 Europe/Berlin"}},
		{name: "a principal the rule does not name is refused",
			req:      policy.Request{WorkspaceIDs: []string{"1111111111111111"}, KeyARN: key, Automatic: true, Actor: "arn:aws:iam::111122223333:user/mallory"},
			wantRule: "prod", wantText: "principal arn:aws:iam::111122223333:user/mallory is not allowed"},
		{name: "the role behind an assumed-role session can be the allowed principal",
			req:  policy.Request{WorkspaceIDs: []string{"3333333333333333"}, KeyARN: key, Automatic: true, Actor: "arn:aws:sts::111122223333:assumed-role/Ops/x", SessionIssuer: "arn:aws:iam::111122223333:user/ops"},
			want: policy.Decision{Rules: []string{"dev"}, Mode: "automatic"}},
		{name: "a workspace no rule names is refused by default",
			req:      policy.Request{WorkspaceIDs: []string{"9999999999999999"}, KeyARN: key},
			wantRule: policy.DefaultDeny, wantText: "9999999999999999"},
		{name: "STORAGE where the rule allows only managed services is refused",
			req:      policy.Request{WorkspaceIDs: []string{"1111111111111111"}, KeyARN: key, UseCases: []string{"MANAGED_SERVICES", "STORAGE"}},
			wantRule: "prod", wantText: "use case STORAGE"},
		{name: "a key in an account the rule does not list is refused",
			req:      policy.Request{WorkspaceIDs: []string{"1111111111111111"}, KeyARN: "arn:aws:kms:us-west-2:999988887777:key/x"},
			wantRule: "prod", wantText: "account 999988887777"},
		{name: "a key outside the patterns but under an allowed alias prefix is allowed",
			req:  policy.Request{WorkspaceIDs: []string{"1111111111111111"}, KeyARN: "arn:aws:kms:eu-west-1:111122223333:key/y", KeyAlias: "alias/databricks/prod", Emergency: true},
			want: policy.Decision{Rules: []string{"prod"}, Mode: "approval"}},
		{name: "a key outside the patterns and aliases is refused",
			req:      policy.Request{WorkspaceIDs: []string{"1111111111111111"}, KeyARN: "arn:aws:kms:eu-west-1:111122223333:key/y", KeyAlias: "alias/other/prod"},
			wantRule: "prod", wantText: "matches neither"},
		{name: "a start by hand is not matched against principals (IAM governs it)",
			req:  policy.Request{WorkspaceIDs: []string{"3333333333333333"}, KeyARN: key},
			want: policy.Decision{Rules: []string{"dev"}, Mode: "automatic"}},
		{name: "a rule without principals allows no automatic trigger",
			req:      policy.Request{WorkspaceIDs: []string{"5555555555555555"}, KeyARN: key, DryRun: true, Automatic: true, Actor: admin},
			wantRule: "audit-only", wantText: "principals is empty"},
		{name: "plan-only allows a dry run without approval or window",
			req:  policy.Request{WorkspaceIDs: []string{"5555555555555555"}, KeyARN: key, DryRun: true},
			want: policy.Decision{Rules: []string{"audit-only"}, Mode: "plan-only"}},
		{name: "plan-only refuses a rotation",
			req:      policy.Request{WorkspaceIDs: []string{"5555555555555555"}, KeyARN: key},
			wantRule: "audit-only", wantText: "plan-only"},
		{name: "an emergency skips the window and, unless the rule says otherwise, the approval",
			req:  policy.Request{WorkspaceIDs: []string{"1111111111111111"}, KeyARN: key, Emergency: true},
			want: policy.Decision{Rules: []string{"prod"}, Mode: "approval"}},
		{name: "several rules: the strictest mode wins",
			req:  policy.Request{WorkspaceIDs: []string{"3333333333333333", "2222222222222222"}, KeyARN: key},
			want: policy.Decision{Rules: []string{"dev", "prod"}, Mode: "approval", ApprovalRequired: true, ApprovalTimeoutSeconds: 7200, Window: "Sun 02:00-05:00 Europe/Berlin"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := p.Evaluate(tc.req)
			if tc.wantRule != "" {
				var r *policy.Refusal
				require.ErrorAs(t, err, &r)
				assert.Equal(t, tc.wantRule, r.Rule)
				assert.Contains(t, r.Error(), tc.wantText)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want.Rules, d.Rules)
			assert.Equal(t, tc.want.Mode, d.Mode)
			assert.Equal(t, tc.want.ApprovalRequired, d.ApprovalRequired)
			assert.Equal(t, tc.want.ApprovalTimeoutSeconds, d.ApprovalTimeoutSeconds)
			assert.Equal(t, tc.want.Window, d.Window)
		})
	}
}

func TestEmergenciesCanBeMadeToNeedApproval(t *testing.T) {
	p := mustParse(t, strings.Replace(base, "approval_timeout: 2h", "approval_timeout: 2h\n    emergency_requires_approval: true", 1))
	d, err := p.Evaluate(policy.Request{WorkspaceIDs: []string{"1111111111111111"}, KeyARN: "arn:aws:kms:us-west-2:111122223333:key/k", Emergency: true})
	require.NoError(t, err)
	assert.True(t, d.ApprovalRequired)
	assert.Empty(t, d.Window, "an emergency still skips the window")
}

func TestAccountsOnASharedBus(t *testing.T) {
	p := mustParse(t, strings.Replace(base, "version: 1", "version: 1\naccounts: [\"444455556666\"]", 1))
	assert.True(t, p.AcceptsAccount("111122223333", "111122223333"))
	assert.True(t, p.AcceptsAccount("111122223333", "444455556666"))
	assert.False(t, p.AcceptsAccount("111122223333", "777788889999"))
	assert.False(t, p.AcceptsAccount("111122223333", ""))
}

func TestWindowNext(t *testing.T) {
	w, err := policy.ParseWindow("Sun 02:00-05:00 Europe/Berlin")
	require.NoError(t, err)
	budget := 75 * time.Minute
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return v
	}
	cases := []struct {
		name, now, start, closes string
	}{
		// 2026-12-02 is a Wednesday; Berlin is UTC+1 in winter.
		{"midweek: the coming Sunday 02:00 Berlin", "2026-12-02T12:00:00Z", "2026-12-06T01:00:00Z", "2026-12-06T04:00:00Z"},
		{"inside the window with the budget left: now", "2026-12-06T02:00:00Z", "2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z"},
		{"inside the window without the budget left: next week", "2026-12-06T03:00:00Z", "2026-12-13T01:00:00Z", "2026-12-13T04:00:00Z"},
		{"exactly the budget left: now", "2026-12-06T02:45:00Z", "2026-12-06T02:45:00Z", "2026-12-06T04:00:00Z"},
		// Summer time: Berlin is UTC+2, so the same wall-clock window is an hour earlier in UTC.
		{"summer time moves the opening with the wall clock", "2026-07-01T12:00:00Z", "2026-07-05T00:00:00Z", "2026-07-05T03:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start, closes, err := w.Next(at(tc.now), budget)
			require.NoError(t, err)
			assert.Equal(t, at(tc.start), start)
			assert.Equal(t, at(tc.closes), closes)
		})
	}

	overnight, err := policy.ParseWindow("Fri,Sat 23:00-02:00 UTC")
	require.NoError(t, err)
	start, closes, err := overnight.Next(at("2026-12-05T00:30:00Z"), budget) // Saturday 00:30, Friday's window still open
	require.NoError(t, err)
	assert.Equal(t, at("2026-12-05T00:30:00Z"), start)
	assert.Equal(t, at("2026-12-05T02:00:00Z"), closes)
}

func TestParseWindowRejects(t *testing.T) {
	for _, s := range []string{"", "Sun", "Sun 02:00-05:00", "Sun 2:00-05:00 UTC", "Xyz 02:00-05:00 UTC", "Sun 25:00-05:00 UTC", "Sun 02:00-05:00 Local", "Sun 02:00-05:00 Mars/Olympus"} {
		_, err := policy.ParseWindow(s)
		assert.Error(t, err, s)
	}
}

func TestLoadPrefersTheInlineDocumentAndNamesIt(t *testing.T) {
	env := map[string]string{policy.EnvDocument: "version: 1\nrules: []\n"}
	_, err := policy.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.Error(t, err)
	assert.Contains(t, err.Error(), policy.EnvDocument)
	var perr *policy.Error
	assert.True(t, errors.As(err, &perr))
}
