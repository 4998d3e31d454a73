package rig_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/operator"
)

// cmkrotate runs the operator CLI against the rig's Step Functions endpoint.
func (s *scenario) cmkrotate(args ...string) (code int, stdout, stderr string) {
	s.t.Helper()
	var out, errOut bytes.Buffer
	app := &operator.App{
		Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(""),
		Env:    func(k string) string { return map[string]string{"ROTATOR_STATE_MACHINE_ARN": s.rig.RotationARN}[k] },
		NewSFN: func(context.Context) (*sfn.Client, error) { return s.rig.SFN, nil },
		Now:    time.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
				return nil
			}
		},
		MinPoll: 50 * time.Millisecond, MaxPoll: 50 * time.Millisecond,
		Terminal: func(io.Writer) bool { return false },
	}
	code = app.Run(s.ctx, args)
	return code, out.String(), errOut.String()
}

// rotateAnalyticsAndFinish runs one rotation of the analytics workspace onto the alias target key
// and returns its execution, with the workspace on the new configuration and compute restored.
func (s *scenario) rotateAnalyticsAndFinish() (awsfake.Execution, string) {
	s.t.Helper()
	arn := s.rotateAnalytics()
	s.rig.WaitForAll(s.ctx)
	exec, ok := s.rig.AWS.Execution(arn)
	require.True(s.t, ok)
	s.assertRotated(exec)
	return exec, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId
}

func TestRollbackOfARotationEndsOnThePreviousConfigurationWithComputeRestored(t *testing.T) {
	s := start(t, nil)
	rotated, _ := s.rotateAnalyticsAndFinish()
	configsBefore := len(s.rig.Fake.KeyConfigs())

	code, stdout, stderr := s.cmkrotate("rollback", rotated.ExecutionArn, "--watch")
	require.Equal(t, operator.ExitOK, code, "stdout: %s\nstderr: %s", stdout, stderr)
	assert.Contains(t, stdout, "Started rollback rollback-")

	s.rig.WaitForAll(s.ctx)
	rotations := s.rig.Rotations()
	require.Len(t, rotations, 2)
	rollback := rotations[1]
	assert.Equal(t, awsfake.StatusSucceeded, rollback.Status, "%s: %s", rollback.Error, rollback.Cause)
	assert.Contains(t, rollback.Input, `"rollback_of"`)
	assert.Equal(t, rig.OldKeyConfigID, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId,
		"the workspace is back on the configuration it used before the rotation")
	assert.Len(t, s.rig.Fake.KeyConfigs(), configsBefore, "the previous configuration is reused, none is registered")
	s.assertAnalyticsComputeRestored()
	assert.Len(t, s.events("Rotation Succeeded"), 2, "the rotation and its rollback")
	assert.Empty(t, s.events("Rotation Failed"))

	// The same rollback again starts nothing: its name is taken, and the workspace has moved anyway.
	code, _, stderr = s.cmkrotate("rollback", rotated.ExecutionArn)
	assert.Equal(t, operator.ExitFailure, code)
	assert.Contains(t, stderr, "already exists")
	assert.Len(t, s.rig.Rotations(), 2)
}

func TestRollbackAfterThePreviousKeyWasDisabledIsRefusedBeforeAnyStop(t *testing.T) {
	s := start(t, nil)
	rotated, newConfig := s.rotateAnalyticsAndFinish()
	_, err := s.rig.KMS.DisableKey(s.ctx, &kms.DisableKeyInput{KeyId: aws.String(rig.OldKeyID)})
	require.NoError(t, err)
	requestsBefore := len(s.rig.Fake.Requests())

	code, stdout, stderr := s.cmkrotate("rollback", rotated.ExecutionArn, "--watch")
	assert.Equal(t, operator.ExitFailure, code, "stdout: %s\nstderr: %s", stdout, stderr)

	s.rig.WaitForAll(s.ctx)
	rotations := s.rig.Rotations()
	require.Len(t, rotations, 2)
	rollback := rotations[1]
	assert.Equal(t, awsfake.StatusFailed, rollback.Status)
	assert.Equal(t, "KeyNotUsable", rollback.Error, rollback.Cause)
	assert.Contains(t, rollback.Cause, "Disabled")
	assert.NotContains(t, s.statesVisited(rollback.ExecutionArn), "StopCompute")
	for _, r := range s.rig.Fake.Requests()[requestsBefore:] {
		if strings.HasPrefix(r.Path, "/oidc/") {
			continue // the functions' OAuth token
		}
		assert.Equal(t, "GET", r.Method, "the refused rollback changed something: %s %s", r.Method, r.Path)
	}
	assert.Equal(t, newConfig, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId, "the workspace stays where the rotation put it")
	s.assertAnalyticsComputeRestored()
	require.Len(t, s.events("Rotation Rejected"), 1)
}

const analyticsOnlyConfig = "a11a0000-0000-4000-8000-0000000000a2"

// twoPreviousConfigurations: the analytics workspace alone uses analyticsOnlyConfig (created 400
// days ago); ML stays on the shared rig.OldKeyConfigID, for managed services and for storage.
func twoPreviousConfigurations(o *rig.Options) {
	o.FunctionEnv = map[string]string{"KEY_CONFIG_HYGIENE": "true"}
	o.Seed.KeyConfigs = append(o.Seed.KeyConfigs, provisioning.CustomerManagedKey{
		CustomerManagedKeyId: analyticsOnlyConfig, AccountId: rig.DatabricksAccountID,
		CreationTime: time.Now().Add(-400 * 24 * time.Hour).UnixMilli(),
		UseCases:     []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices},
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: "arn:aws:kms:" + rig.DefaultRegion + ":" + rig.AWSAccount + ":key/" + rig.OldKeyID,
			KeyAlias: "alias/databricks/previous", KeyRegion: rig.DefaultRegion}})
	for i := range o.Seed.Workspaces {
		if o.Seed.Workspaces[i].Workspace.WorkspaceId == rig.AnalyticsWorkspace {
			o.Seed.Workspaces[i].Workspace.ManagedServicesCustomerManagedKeyId = analyticsOnlyConfig
		}
	}
}

func TestHygieneAfterTheReminderDeletesAnUnreferencedConfigurationAndKeepsAReferencedOne(t *testing.T) {
	s := start(t, twoPreviousConfigurations)
	arn := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456", "2345678901234567"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	s.rig.WaitForAll(s.ctx)
	exec, ok := s.rig.AWS.Execution(arn)
	require.True(t, ok)
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	require.Len(t, s.events("Previous Key Retirable"), 1, "the reminder ran")

	// How "never deleted while referenced" is proven: the fake records every request, and the only
	// DELETE of the whole run is the unreferenced configuration's. (The fake, like Databricks, would
	// also refuse to delete a configuration a workspace uses; the hygiene task must not even ask.)
	var deletes []string
	for _, r := range s.rig.Fake.Requests() {
		if r.Method == "DELETE" {
			deletes = append(deletes, r.Path)
		}
	}
	assert.Equal(t, []string{"/api/2.0/accounts/" + rig.DatabricksAccountID + "/customer-managed-keys/" + analyticsOnlyConfig}, deletes)
	var left []string
	for _, c := range s.rig.Fake.KeyConfigs() {
		left = append(left, c.CustomerManagedKeyId)
	}
	assert.NotContains(t, left, analyticsOnlyConfig)
	assert.Contains(t, left, rig.OldKeyConfigID)

	deleted := s.events("Key Configuration Deleted")
	require.Len(t, deleted, 1)
	assert.Equal(t, analyticsOnlyConfig, deleted[0]["key_config_id"])
	kept := s.events("Key Configuration Kept")
	require.Len(t, kept, 1)
	assert.Equal(t, rig.OldKeyConfigID, kept[0]["key_config_id"])
	assert.Equal(t, []any{map[string]any{"workspace_id": "2345678901234567", "workspace_name": "ml-prod", "as": "storage"}}, kept[0]["referenced_by"])
	assert.Contains(t, kept[0]["reason"], "still referenced")
}

func TestCmkrotateKeysListsEveryWorkspaceWithSinceWhenAndFlagsOldKeys(t *testing.T) {
	s := start(t, func(o *rig.Options) {
		twoPreviousConfigurations(o)
		o.FunctionEnv = map[string]string{"MAX_KEY_AGE_DAYS": "365"} // hygiene off, as by default
		o.KeyAgeCheck = true
	})
	_, err := s.rig.KMS.CreateAlias(s.ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/databricks/prod"), TargetKeyId: aws.String(rig.AliasTargetKeyID)})
	require.NoError(t, err)
	rotated, _ := s.rotateAnalyticsAndFinish()
	assert.Empty(t, s.events("Key Configuration Deleted"), "hygiene is off by default")
	assert.Empty(t, s.events("Key Configuration Kept"))

	// Age the ML workspace's shared configuration: Databricks says when it was created, nothing else.
	old := time.Now().Add(-400 * 24 * time.Hour)
	for _, c := range s.rig.Fake.KeyConfigs() {
		if c.CustomerManagedKeyId == rig.OldKeyConfigID {
			c.CreationTime = old.UnixMilli()
			s.rig.Fake.AddKeyConfig(c)
		}
	}
	account, err := dbclient.NewFactory(dbclient.Settings{AccountHost: s.rig.Fake.URL(), AccountID: rig.DatabricksAccountID,
		Credentials: dbclient.Credentials{ClientID: rig.ClientID, ClientSecret: testSecret}}).Account()
	require.NoError(t, err)
	var out, errOut bytes.Buffer
	app := &operator.App{
		Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(""),
		Env:    func(k string) string { return map[string]string{"ROTATOR_STATE_MACHINE_ARN": s.rig.RotationARN}[k] },
		NewSFN: func(context.Context) (*sfn.Client, error) { return s.rig.SFN, nil },
		NewKeySources: func(context.Context) (operator.KeySources, error) {
			return operator.KeySources{Account: account, Aliases: s.rig.KMS}, nil
		},
		Now: time.Now, Terminal: func(io.Writer) bool { return false },
	}
	code := app.Run(s.ctx, []string{"keys", "--max-age-days", "365"})
	require.Equal(t, operator.ExitOK, code, "stderr: %s", errOut.String())
	t.Logf("cmkrotate keys:\n%s", out.String())
	lines := strings.Split(out.String(), "\n")
	row := func(workspace, use string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, workspace+" ") && strings.Contains(l, " "+use+" ") {
				return l
			}
		}
		t.Fatalf("no %s row for workspace %s in:\n%s", use, workspace, out.String())
		return ""
	}
	analytics := row("1234567890123456", "managed_services")
	assert.Contains(t, analytics, s.rig.KeyARN(rig.AliasTargetKeyID))
	assert.Contains(t, analytics, "alias/databricks/prod", "the alias comes from KMS")
	assert.Contains(t, analytics, time.Now().UTC().Format("2006-01-02")+" ("+rotated.Name+")", "since the rotation, from the rotator's history")
	assert.NotContains(t, analytics, "EXCEEDED")
	mlStorage := row("2345678901234567", "storage")
	assert.Contains(t, mlStorage, rig.OldKeyConfigID)
	assert.Contains(t, mlStorage, old.UTC().Format("2006-01-02")+" (key configuration created)")
	assert.Contains(t, mlStorage, "EXCEEDED (max 365 d)")
	assert.Contains(t, out.String(), "Without a customer-managed key: 3456789012345678")

	// The daily check (the real bootstrap) publishes the same two uses.
	result, err := s.rig.CheckKeyAge(s.ctx)
	require.NoError(t, err)
	assert.JSONEq(t, `{"checked": 3, "exceeded": 2}`, string(result))
	exceeded := s.events("Key Age Exceeded")
	require.Len(t, exceeded, 2)
	for _, d := range exceeded {
		assert.Equal(t, "2345678901234567", d["workspace_id"])
		assert.Equal(t, rig.OldKeyConfigID, d["key_config_id"])
		assert.Equal(t, true, d["age_exceeded"])
	}
}

func TestRollbackAfterALaterRotationIsRefusedBeforeAnyStop(t *testing.T) {
	s := start(t, nil)
	first, _ := s.rotateAnalyticsAndFinish()
	later := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.EventKeyID)})
	s.rig.WaitForAll(s.ctx)
	exec, ok := s.rig.AWS.Execution(later)
	require.True(t, ok)
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	current := s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.EventKeyID))
	requestsBefore := len(s.rig.Fake.Requests())

	code, stdout, stderr := s.cmkrotate("rollback", first.ExecutionArn, "--watch")
	assert.Equal(t, operator.ExitFailure, code, "stdout: %s\nstderr: %s", stdout, stderr)

	s.rig.WaitForAll(s.ctx)
	rotations := s.rig.Rotations()
	require.Len(t, rotations, 3)
	rollback := rotations[2]
	assert.Equal(t, "RollbackRefused", rollback.Error, rollback.Cause)
	assert.Contains(t, rollback.Cause, "a later rotation happened since")
	assert.NotContains(t, s.statesVisited(rollback.ExecutionArn), "StopCompute")
	for _, r := range s.rig.Fake.Requests()[requestsBefore:] {
		if !strings.HasPrefix(r.Path, "/oidc/") {
			assert.Equal(t, "GET", r.Method, "the refused rollback changed something: %s %s", r.Method, r.Path)
		}
	}
	assert.Equal(t, current, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId, "the later rotation stands")
	s.assertAnalyticsComputeRestored()
}
