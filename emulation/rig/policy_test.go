package rig_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
)

// policyDoc is a rotation policy with one rule for the given workspaces; extra lines are appended to
// the rule (mode, window, ...).
func policyDoc(workspaces []string, extra ...string) string {
	return fmt.Sprintf(`version: 1
rules:
  - name: sandbox
    workspaces: ["%s"]
    key_accounts: ["%s"]
    principals: ["arn:aws:iam::%s:user/Alice"]
    use_cases: [MANAGED_SERVICES]
%s`, strings.Join(workspaces, `", "`), rig.AWSAccount, rig.AWSAccount, "    "+strings.Join(append([]string{"mode: automatic"}, extra...), "\n    ")+"\n")
}

// policyAllowing is policyDoc in automatic mode.
func policyAllowing(workspaces ...string) string { return policyDoc(workspaces) }

// approvalPolicy puts the analytics workspace in approval mode.
func approvalPolicy(timeout string) string {
	return strings.Replace(policyDoc([]string{"1234567890123456"}, "approval_timeout: "+timeout), "mode: automatic", "mode: approval", 1)
}

// laterWindow is a weekly window that opens tomorrow at 00:00 UTC (so it is not open now) and
// holds any rotation's budget.
func laterWindow() string {
	return time.Now().UTC().Add(24 * time.Hour).Weekday().String()[:3] + " 00:00-23:00 UTC"
}

// assertNeverLockedOrRead: the refusal came before LockWorkspaces and before any Databricks call.
func (s *scenario) assertNeverLockedOrRead(arn string) {
	s.t.Helper()
	visited := s.statesVisited(arn)
	assert.NotContains(s.t, visited, "LockWorkspaces")
	assert.NotContains(s.t, visited, "Validate")
	assert.Empty(s.t, s.rig.Fake.Requests(), "Databricks was called")
}

func (s *scenario) deliverEdited(name string, edit func(map[string]any)) {
	s.t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", "kms", name))
	require.NoError(s.t, err)
	var ev map[string]any
	require.NoError(s.t, json.Unmarshal(raw, &ev))
	edit(ev)
	raw, err = json.Marshal(ev)
	require.NoError(s.t, err)
	require.NoError(s.t, s.rig.Deliver(s.ctx, raw))
}

func TestPolicy_TheTriggerRefusesWhatThePolicyDoesNotAllowBeforeAnyLock(t *testing.T) {
	cases := []struct {
		name, policy, rule, reason string
	}{
		{"a principal the policy does not allow", strings.Replace(policyAllowing("1234567890123456"), "user/Alice", "role/KeyAdministrator", 1), "sandbox", "user/Alice is not allowed"},
		{"a workspace the policy does not name", policyAllowing("2345678901234567"), "default-deny", "workspace 1234567890123456"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, func(o *rig.Options) { o.Policy = tc.policy })
			s.deliverFile("kms-createkey-cloudtrail.json")
			assert.Empty(t, s.finish(), "no execution started")
			assert.Empty(t, s.rig.AWS.Items(rig.LockTable), "no lock taken")
			assert.Empty(t, s.rig.Fake.Requests(), "Databricks was not called")
			require.Len(t, s.rig.AWS.Events(), 1, "only the refusal event")
			rejected := s.events("Rotation Rejected")
			require.Len(t, rejected, 1)
			assert.Equal(t, tc.rule, rejected[0]["rule"])
			assert.Contains(t, rejected[0]["message"], tc.reason)
		})
	}
}

func TestPolicy_AnEventFromAnotherAccountIsIgnored(t *testing.T) {
	s := start(t, func(o *rig.Options) { o.Policy = policyAllowing("1234567890123456") })
	s.deliverEdited("kms-createkey-cloudtrail.json", func(ev map[string]any) { ev["account"] = "444455556666" })
	assert.Empty(t, s.finish(), "no execution started")
	assert.Empty(t, s.rig.AWS.Events(), "not even a refusal: the event is not ours")
	assert.Empty(t, s.rig.Fake.Requests())
}

func TestPolicy_StorageWhereThePolicyForbidsItIsRefusedBeforeAnyRead(t *testing.T) {
	s := start(t, func(o *rig.Options) { o.Policy = policyAllowing("1234567890123456") })
	arn := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID),
		"use_cases": []string{"MANAGED_SERVICES", "STORAGE"}})
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status)
	assert.Equal(t, "PolicyRejected", exec.Error, exec.Cause)
	assert.Contains(t, exec.Cause, "use case STORAGE is not allowed")
	s.assertNeverLockedOrRead(arn)
	rejected := s.events("Rotation Rejected")
	require.Len(t, rejected, 1)
	assert.Contains(t, rejected[0]["message"], `rule "sandbox"`)
}

// waitForEvent polls the published events until one of detailType appears.
func (s *scenario) waitForEvent(detailType string, n int) []map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if got := s.events(detailType); len(got) >= n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("no %d %q event within 90 s", n, detailType)
	return nil
}

// cli runs the operator CLI (scenario.cmkrotate) and returns its exit code and everything it wrote.
func (s *scenario) cli(args ...string) (int, string) {
	s.t.Helper()
	code, stdout, stderr := s.cmkrotate(args...)
	return code, stdout + stderr
}

func TestPolicy_ApprovalModePublishesThePlanAndRotatesOnceApproved(t *testing.T) {
	s := start(t, func(o *rig.Options) { o.Policy = approvalPolicy("10m") })
	arn := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	awaiting := s.waitForEvent("Rotation Awaiting Approval", 1)[0]
	assert.Equal(t, "approval", awaiting["waiting_for"])
	assert.NotEmpty(t, awaiting["until"])
	assert.Equal(t, 4500.0, awaiting["max_downtime_seconds"])
	ws := awaiting["workspaces"].([]any)[0].(map[string]any)
	assert.Equal(t, map[string]any{"clusters": 4.0, "pools": 1.0, "warehouses": 1.0, "pipelines": 1.0}, ws["will_stop"], "the plan names what will stop")
	assert.NotContains(t, fmt.Sprint(awaiting), "sandbox-token", "the task token is not in the event")
	assert.Empty(t, s.rig.AWS.Items(rig.LockTable), "no lock is held while the approval is pending")

	code, out := s.cli("status", arn)
	assert.Contains(t, out, "awaiting approval until "+awaiting["until"].(string)[:13], "exit %d", code)
	assert.Contains(t, out, "\nChildren    none yet: the request is at AwaitApproval (awaiting approval)\n", "no child is started before the approval")
	code, out = s.cli("list")
	assert.Contains(t, out, "awaiting approval until "+awaiting["until"].(string)[:13], "exit %d", code)
	code, out = s.cli("approve", arn)
	require.Equal(t, 0, code, out)

	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.AliasTargetKeyID))
	s.assertAnalyticsComputeRestored()
	visited := s.statesVisited(arn)
	for _, st := range []string{"AwaitApproval", "RecheckPolicy", "LockWorkspaces", "Validate", "CheckNotSuperseded"} {
		assert.Contains(t, visited, st)
	}

	code, out = s.cli("approve", arn)
	assert.Equal(t, 1, code, "a closed execution cannot be approved again: %s", out)
}

func TestPolicy_ARejectedOrUnansweredApprovalEndsWithNothingStopped(t *testing.T) {
	cases := []struct {
		name, timeout, reason string
		reject                bool
	}{
		{"rejected", "10m", "change freeze until Monday", true},
		{"no answer within the approval timeout", "2s", "no approval within 2 seconds", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, func(o *rig.Options) { o.Policy = approvalPolicy(tc.timeout) })
			arn := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
			s.waitForEvent("Rotation Awaiting Approval", 1)
			if tc.reject {
				code, out := s.cli("reject", arn)
				require.Equal(t, 2, code, "--reason is required: %s", out)
				code, out = s.cli("reject", arn, "--reason", tc.reason)
				require.Equal(t, 0, code, out)
			}
			exec := s.onlyRotation()
			assert.Equal(t, awsfake.StatusFailed, exec.Status)
			assert.Equal(t, "ApprovalRejected", exec.Error, exec.Cause)
			assert.Contains(t, exec.Cause, tc.reason)
			rejected := s.events("Rotation Rejected")
			require.Len(t, rejected, 1)
			assert.Contains(t, rejected[0]["message"], tc.reason)
			assert.NotContains(t, s.statesVisited(arn), "LockWorkspaces")
			s.assertNothingChanged()
		})
	}
}

func TestPolicy_AnEmergencyDoesNotWaitBehindAPendingApprovalAndSupersedesIt(t *testing.T) {
	s := start(t, func(o *rig.Options) { o.Policy = approvalPolicy("10m") })
	pending := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.EventKeyID)})
	s.waitForEvent("Rotation Awaiting Approval", 1)

	emergency := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID), "emergency": true})
	done := s.rig.AWS.WaitExecution(s.ctx, emergency)
	require.Equal(t, awsfake.StatusSucceeded, done.Status, "%s: %s", done.Error, done.Cause)
	assert.NotContains(t, s.statesVisited(emergency), "AwaitApproval", "emergencies skip the approval (emergency_requires_approval: false)")
	newID := s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.AliasTargetKeyID))

	code, out := s.cli("approve", pending)
	require.Equal(t, 0, code, out)
	old := s.rig.AWS.WaitExecution(s.ctx, pending)
	assert.Equal(t, awsfake.StatusFailed, old.Status)
	assert.Equal(t, "RotationSuperseded", old.Error, old.Cause)
	assert.Contains(t, old.Cause, "superseded by a newer rotation")
	assert.Equal(t, newID, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId, "the emergency's key stays")
	s.finish()
	assert.Empty(t, s.rig.AWS.Items(rig.LockTable), "the superseded execution released its lock")
}

func TestPolicy_ARotationWaitsForItsWindowAndAnEmergencySkipsIt(t *testing.T) {
	window := laterWindow()
	s := start(t, func(o *rig.Options) {
		o.Policy = policyDoc([]string{"1234567890123456"}, fmt.Sprintf("window: %q", window))
	})
	arn := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.EventKeyID)})
	exec := s.rig.AWS.WaitExecution(s.ctx, arn)
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	assert.Contains(t, s.statesVisited(arn), "WaitForWindow")
	waiting := s.events("Rotation Waiting")
	require.Len(t, waiting, 1)
	tomorrow := time.Now().UTC().Add(24 * time.Hour)
	assert.Equal(t, time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), 0, 0, 0, 0, time.UTC).Format(time.RFC3339), waiting[0]["until"])
	assert.Equal(t, "maintenance window", waiting[0]["waiting_for"])
	assert.Equal(t, window, waiting[0]["window"])
	s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.EventKeyID))

	code, out := s.cli("start", "--workspace", "1234567890123456", "--key-arn", s.rig.KeyARN(rig.AliasTargetKeyID), "--emergency")
	require.Equal(t, 0, code, out)
	rotations := s.finish()
	require.Len(t, rotations, 2)
	second := rotations[1]
	require.Equal(t, awsfake.StatusSucceeded, second.Status, "%s: %s", second.Error, second.Cause)
	assert.NotContains(t, s.statesVisited(second.ExecutionArn), "WaitForWindow")
	assert.Len(t, s.events("Rotation Waiting"), 1, "the emergency did not wait")
	s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.AliasTargetKeyID))
}
