package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/operator"
)

// The composition root takes its endpoint, region, credentials and state machine from the
// environment, as an operator's shell (or CI job) sets them.
func TestTheCommandFindsStepFunctionsAndTheStateMachineInTheEnvironment(t *testing.T) {
	srv, err := awsfake.Start(awsfake.Config{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	const machine = "arn:aws:states:us-east-1:123456789012:stateMachine:rotation"
	srv.RegisterStateMachine(machine, awsfake.RunnerFunc(func(context.Context, awsfake.Execution) (string, *awsfake.ExecError) {
		return `{"results":[{"workspace_id":"1234567890123456","outcome":"ROTATED"}]}`, nil
	}))
	nowhere := filepath.Join(t.TempDir(), "absent")
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_SFN": srv.URL(), "AWS_REGION": "us-east-1",
		"AWS_ACCESS_KEY_ID": "AKIDCMKROTATETEST", "AWS_SECRET_ACCESS_KEY": "cmkrotate-test-secret", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": nowhere, "AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_EC2_METADATA_DISABLED": "true",
		"ROTATOR_STATE_MACHINE_ARN": machine,
	} {
		t.Setenv(k, v)
	}
	var stdout, stderr bytes.Buffer
	code := operator.Run(context.Background(), []string{"start", "--workspace", "1234567890123456",
		"--key-arn", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "--name", "from-env", "--watch"},
		&stdout, &stderr, os.Getenv, newSFN)

	require.Equal(t, operator.ExitOK, code, "stdout: %s\nstderr: %s", &stdout, &stderr)
	require.Len(t, srv.Executions(), 1)
	assert.Equal(t, "from-env", srv.Executions()[0].Name)
	assert.Contains(t, stdout.String(), "1234567890123456  -  ROTATED")
}
