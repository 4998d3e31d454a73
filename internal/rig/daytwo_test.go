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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acme/databricks-cmk-rotator/internal/awsfake"
	"github.com/acme/databricks-cmk-rotator/internal/operator"
	"github.com/acme/databricks-cmk-rotator/internal/rig"
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
