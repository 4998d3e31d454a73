package sandbox

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func startEcho(t *testing.T, tools Tools, spec FunctionSpec) *Function {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "echo"
	}
	spec.Bootstrap, spec.Emulator = echoBootstrap, tools.Emulator
	f, err := StartFunction(t.Context(), spec)
	require.NoError(t, err)
	t.Cleanup(f.Stop)
	require.True(t, strings.HasPrefix(f.InvokeURL(), "http://127.0.0.1:"), f.InvokeURL())
	return f
}

type echoed struct {
	Function string          `json:"function"`
	Attempt  int             `json:"attempt"`
	Env      *string         `json:"env"`
	Input    json.RawMessage `json:"input"`
}

func invokeEcho(t *testing.T, f *Function, payload string) (echoed, *FunctionError) {
	t.Helper()
	out, ferr, err := f.Invoke(t.Context(), []byte(payload))
	require.NoError(t, err)
	var got echoed
	if ferr == nil {
		require.NoError(t, json.Unmarshal(out, &got), "%s", out)
	}
	return got, ferr
}

func TestLocalKMSAnswersTheSDK(t *testing.T) {
	t.Parallel()
	tools := requireTools(t)
	endpoint, stop, err := StartLocalKMS(t.Context(), tools.LocalKMS, "", "eu-west-1", "111122223333")
	require.NoError(t, err)
	t.Cleanup(stop)
	require.True(t, strings.HasPrefix(endpoint, "http://127.0.0.1:"), endpoint)

	client := kms.New(kms.Options{
		Region: "eu-west-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSANDBOX", "sandbox", ""),
	})
	created, err := client.CreateKey(t.Context(), &kms.CreateKeyInput{Description: aws.String("sandbox test key")})
	require.NoError(t, err)
	keyID := aws.ToString(created.KeyMetadata.KeyId)
	assert.Equal(t, "arn:aws:kms:eu-west-1:111122223333:key/"+keyID, aws.ToString(created.KeyMetadata.Arn))

	described, err := client.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	require.NoError(t, err)
	assert.Equal(t, kmstypes.KeyStateEnabled, described.KeyMetadata.KeyState)
	assert.Equal(t, "sandbox test key", aws.ToString(described.KeyMetadata.Description))

	_, err = client.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String("alias/missing")})
	var notFound *kmstypes.NotFoundException
	require.ErrorAs(t, err, &notFound)
}

func TestFunctionUnderTheEmulator(t *testing.T) {
	tools := requireTools(t)
	t.Setenv("SANDBOX_PARENT_ONLY", "must not reach the function")
	f := startEcho(t, tools, FunctionSpec{TimeoutSeconds: 1, Env: map[string]string{"ECHO_SETTING": "from-spec"}})

	t.Run("a result comes back as the payload", func(t *testing.T) {
		got, ferr := invokeEcho(t, f, `{"key":"ok","value":42}`)
		require.Nil(t, ferr)
		assert.Equal(t, "echo", got.Function)
		assert.JSONEq(t, `{"key":"ok","value":42}`, string(got.Input))
	})
	t.Run("the function sees its Env and not the parent's environment", func(t *testing.T) {
		got, ferr := invokeEcho(t, f, `{"mode":"env","env_name":"ECHO_SETTING"}`)
		require.Nil(t, ferr)
		require.NotNil(t, got.Env)
		assert.Equal(t, "from-spec", *got.Env)
		got, ferr = invokeEcho(t, f, `{"mode":"env","env_name":"SANDBOX_PARENT_ONLY"}`)
		require.Nil(t, ferr)
		assert.Nil(t, got.Env)
		got, ferr = invokeEcho(t, f, `{"mode":"env","env_name":"AWS_LAMBDA_FUNCTION_TIMEOUT"}`)
		require.Nil(t, ferr)
		assert.Equal(t, "1", *got.Env)
	})
	t.Run("a typed Go error is its type name", func(t *testing.T) {
		_, ferr := invokeEcho(t, f, `{"mode":"bad","key":"k1"}`)
		require.NotNil(t, ferr)
		assert.Equal(t, "BadThing", ferr.ErrorType)
		assert.Equal(t, "bad thing for k1", ferr.ErrorMessage)
		assert.JSONEq(t, `{"errorType":"BadThing","errorMessage":"bad thing for k1"}`, string(ferr.Payload))
	})
	t.Run("a timeout is Sandbox.Timedout and the next call works", func(t *testing.T) {
		start := time.Now()
		_, ferr := invokeEcho(t, f, `{"mode":"sleep","sleep_ms":10000}`)
		require.NotNil(t, ferr)
		assert.Equal(t, ErrorTypeTimedOut, ferr.ErrorType)
		assert.Regexp(t, `^RequestId: [0-9a-f-]{36} Error: Task timed out after 1\.00 seconds$`, ferr.ErrorMessage)
		// Cut at the 1 s timeout, not after the 10 s sleep; the margin is for a loaded machine.
		assert.Less(t, time.Since(start), 6*time.Second)

		got, ferr := invokeEcho(t, f, `{"key":"after-timeout"}`)
		require.Nil(t, ferr)
		assert.Equal(t, 1, got.Attempt, "the runtime was restarted: its memory is fresh")
	})
	t.Run("a crash is Runtime.ExitError and the next call works", func(t *testing.T) {
		_, ferr := invokeEcho(t, f, `{"mode":"crash"}`)
		require.NotNil(t, ferr)
		assert.Equal(t, ErrorTypeExit, ferr.ErrorType)
		assert.Contains(t, ferr.ErrorMessage, "Runtime exited with error: exit status 3")
		_, ferr = invokeEcho(t, f, `{"key":"after-crash"}`)
		require.Nil(t, ferr)
	})
	t.Run("concurrent calls are queued, never sent to the emulator together", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 6 {
			wg.Go(func() {
				_, ferr, err := f.Invoke(context.Background(), []byte(`{"mode":"sleep","sleep_ms":20}`))
				if err == nil && ferr != nil {
					err = ferr
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err)
		}
	})
	t.Run("the function's log lines are kept", func(t *testing.T) {
		logs := strings.Join(f.Logs(), "\n")
		assert.Contains(t, logs, `"msg":"invoked","mode":"bad","key":"k1"`)
		assert.Contains(t, logs, "START RequestId:")
		assert.Contains(t, strings.Join(f.EmulatorLogs(), "\n"), "Runtime.ExitError")
	})
}

func TestFunctionPoolServesConcurrentCalls(t *testing.T) {
	t.Parallel()
	tools := requireTools(t)
	f := startEcho(t, tools, FunctionSpec{Name: "pooled", Instances: 3, TimeoutSeconds: 5})

	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			_, ferr, err := f.Invoke(context.Background(), []byte(`{"mode":"sleep","sleep_ms":2000}`))
			assert.NoError(t, err)
			assert.Nil(t, ferr)
		})
	}
	wg.Wait()
	// One instance would need 6 s; three run the calls side by side in about 2 s (init included).
	// The bound sits halfway, so a loaded machine does not make it flake and two calls in a row
	// already break it.
	assert.Less(t, time.Since(start), 4*time.Second)
}
