package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
)

const (
	parentARN = "arn:aws:states:us-east-1:123456789012:stateMachine:sandbox"
	childARN  = "arn:aws:states:us-east-1:123456789012:stateMachine:child"
	echoARN   = "arn:aws:lambda:us-east-1:123456789012:function:echo"
	slowARN   = "arn:aws:lambda:us-east-1:123456789012:function:echo-slow"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return string(b)
}

func newRunner(t *testing.T, tools Tools, cfg EngineConfig) *EngineRunner {
	t.Helper()
	cfg.Node, cfg.Script = tools.Node, tools.Engine
	r, err := NewEngineRunner(cfg)
	require.NoError(t, err)
	return r
}

func TestEngineRunsTheDefinitionAgainstTheSandbox(t *testing.T) {
	t.Parallel()
	tools := requireTools(t)
	fake, err := awsfake.Start(awsfake.Config{})
	require.NoError(t, err)
	t.Cleanup(fake.Close)

	echo := startEcho(t, tools, FunctionSpec{Name: "echo", TimeoutSeconds: 5})
	slow := startEcho(t, tools, FunctionSpec{Name: "echo-slow", TimeoutSeconds: 1})

	child := newRunner(t, tools, EngineConfig{Definition: readTestdata(t, "child.asl.json"), AWSEndpoint: fake.URL()})
	fake.RegisterStateMachine(childARN, child)
	parent := newRunner(t, tools, EngineConfig{
		Definition: readTestdata(t, "sandbox.asl.json"),
		Substitutions: map[string]string{
			"EchoFunctionArn":      echoARN,
			"SlowFunctionArn":      slowARN,
			"EventBusName":         "sandbox-bus",
			"ChildStateMachineArn": childARN,
		},
		Lambdas:          map[string][]string{echoARN: {echo.InvokeURL()}, slowARN: {slow.InvokeURL()}},
		AWSEndpoint:      fake.URL(),
		WaitOverridesMS:  map[string]int{"Pause": 50},
		RetryOverridesMS: map[string]int{"*": 0},
		JobDir:           t.TempDir(),
	})
	fake.RegisterStateMachine(parentARN, parent)

	client := sfn.New(sfn.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(fake.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSANDBOX", "sandbox", ""),
	})
	started, err := client.StartExecution(t.Context(), &sfn.StartExecutionInput{
		StateMachineArn: aws.String(parentARN), Name: aws.String("run-1"),
		Input: aws.String(`{"value":"v","items":[1,2,3]}`),
	})
	require.NoError(t, err)
	execARN := aws.ToString(started.ExecutionArn)

	// A generous deadline: it only bounds a hang. Node's start and the engine's load take seconds on
	// a CI machine that runs the rig's emulators beside this package.
	ctx, cancel := context.WithTimeout(t.Context(), engineDeadline)
	defer cancel()
	exec := fake.WaitExecution(ctx, execARN)
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "error %s: %s\nlogs:\n%s", exec.Error, exec.Cause, strings.Join(echo.Logs(), "\n"))

	var out struct {
		Echo     map[string]string `json:"echo"`
		Flaky    map[string]int    `json:"flaky"`
		Caught   errorOutput       `json:"caught"`
		TimedOut errorOutput       `json:"timedOut"`
		Mapped   []string          `json:"mapped"`
		Announce map[string]int    `json:"announced"`
		Child    struct {
			ExecutionArn string
			StartDate    int64
		} `json:"child"`
		Duplicate errorOutput `json:"duplicate"`
	}
	require.NoError(t, json.Unmarshal([]byte(exec.Output), &out), exec.Output)

	t.Run("a Lambda task returns the function's payload", func(t *testing.T) {
		assert.Equal(t, map[string]string{"function": "echo", "value": "v"}, out.Echo)
	})
	t.Run("Retry matches the Go error type name", func(t *testing.T) {
		assert.Equal(t, map[string]int{"attempt": 3}, out.Flaky)
	})
	t.Run("Catch gets the error name and the error JSON as Cause", func(t *testing.T) {
		assert.Equal(t, "BadThing", out.Caught.Error)
		assert.JSONEq(t, `{"errorType":"BadThing","errorMessage":"bad thing for bad"}`, out.Caught.Cause)
	})
	t.Run("a function timeout is caught as Sandbox.Timedout", func(t *testing.T) {
		assert.Equal(t, "Sandbox.Timedout", out.TimedOut.Error)
		assert.Contains(t, out.TimedOut.Cause, "Task timed out after 1.00 seconds")
	})
	t.Run("the Map runs its three items", func(t *testing.T) {
		assert.Equal(t, []string{"item-1", "item-2", "item-3"}, out.Mapped)
	})
	t.Run("putEvents reaches the fake EventBridge", func(t *testing.T) {
		assert.Equal(t, map[string]int{"failed": 0}, out.Announce)
		events := fake.Events()
		require.Len(t, events, 1)
		assert.Equal(t, "acme.sandbox", events[0].Source)
		assert.Equal(t, "Sandbox Test", events[0].DetailType)
		assert.Equal(t, "sandbox-bus", events[0].EventBusName)
		assert.JSONEq(t, `{"mapped":["item-1","item-2","item-3"],"execution":"run-1"}`, events[0].Detail)
		assert.Equal(t, []string{execARN, parentARN}, events[0].Resources, "the integration appends the execution and state machine ARNs")
	})
	t.Run("startExecution reaches the fake Step Functions", func(t *testing.T) {
		childExec := "arn:aws:states:us-east-1:123456789012:execution:child:run-1-child"
		assert.Equal(t, childExec, out.Child.ExecutionArn)
		assert.InDelta(t, time.Now().UnixMilli(), out.Child.StartDate, 60_000)
		got := fake.WaitExecution(ctx, childExec)
		require.Equal(t, awsfake.StatusSucceeded, got.Status, "%s: %s", got.Error, got.Cause)
		assert.JSONEq(t, `{"greeted":"`+execARN+`"}`, got.Output)
		assert.Equal(t, "StepFunctions.ExecutionAlreadyExistsException", out.Duplicate.Error)
		assert.Contains(t, out.Duplicate.Cause, "Error Code: ExecutionAlreadyExists")
	})

	tl, ok := parent.Timeline(execARN)
	require.True(t, ok)
	t.Run("the timeline has every step", func(t *testing.T) {
		count := func(typ, state string) int {
			n := 0
			for _, ev := range tl {
				if ev.Type == typ && ev.State == state {
					n++
				}
			}
			return n
		}
		assert.Equal(t, "ExecutionStarted", tl[0].Type)
		assert.Equal(t, "ExecutionSucceeded", tl[len(tl)-1].Type)
		assert.Equal(t, 2, count("StateRetried", "Flaky"))
		assert.Equal(t, 2, count("StateFailed", "Flaky"))
		assert.Equal(t, 1, count("StateCaught", "Bad"))
		assert.Equal(t, 1, count("StateCaught", "Slow"))
		assert.Equal(t, 3, count("MapIterationStarted", "Fanout"))
		var indexes []int
		for _, ev := range tl {
			if ev.Type == "StateEntered" && ev.State == "EchoItem" {
				indexes = append(indexes, ev.Index)
				assert.Equal(t, echoARN, ev.Resource)
			}
		}
		slices.Sort(indexes)
		assert.Equal(t, []int{0, 1, 2}, indexes)

		var entered, exited time.Time
		for _, ev := range tl {
			if ev.State == "Pause" && ev.Type == "StateEntered" {
				entered = ev.Time
			}
			if ev.State == "Pause" && ev.Type == "StateExited" {
				exited = ev.Time
			}
		}
		assert.GreaterOrEqual(t, exited.Sub(entered), 45*time.Millisecond, "the Wait override of 50 ms applied")
		assert.Less(t, exited.Sub(entered), time.Minute, "…instead of the hour in the definition")

		var table bytes.Buffer
		require.NoError(t, FormatTimeline(&table, tl))
		t.Log("\n" + table.String())
		for _, want := range []string{"Flaky", "retried ×2 (BadThing), ok", "caught BadThing", "caught Sandbox.Timedout", "EchoItem ×3", "(execution succeeded)"} {
			assert.Contains(t, table.String(), want)
		}
	})
	t.Run("the execution history shows the states", func(t *testing.T) {
		hist, err := client.GetExecutionHistory(t.Context(), &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(execARN), MaxResults: 1000})
		require.NoError(t, err)
		var seen []string
		for _, ev := range hist.Events {
			if ev.StateEnteredEventDetails != nil {
				seen = append(seen, string(ev.Type)+":"+aws.ToString(ev.StateEnteredEventDetails.Name))
			}
			if ev.Type == sfntypes.HistoryEventTypeLambdaFunctionFailed {
				seen = append(seen, "LambdaFunctionFailed:"+aws.ToString(ev.LambdaFunctionFailedEventDetails.Error))
			}
		}
		for _, want := range []string{"TaskStateEntered:Echo", "LambdaFunctionFailed:BadThing", "WaitStateEntered:Pause", "MapStateEntered:Fanout", "TaskStateEntered:EchoItem", "SucceedStateEntered:Done"} {
			assert.Contains(t, seen, want)
		}
		assert.Equal(t, sfntypes.HistoryEventTypeExecutionSucceeded, hist.Events[len(hist.Events)-1].Type)
	})
}

type errorOutput struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

// TestEngineReadsTheEmulatorsOwnAnswers points the engine at aws-lambda-rie directly (not the
// Function's front URL, which already answers the AWS way) to pin how it reads the emulator.
func TestEngineReadsTheEmulatorsOwnAnswers(t *testing.T) {
	t.Parallel()
	tools := requireTools(t)
	f := startEcho(t, tools, FunctionSpec{Name: "raw", TimeoutSeconds: 1})
	r := newRunner(t, tools, EngineConfig{
		Definition:    readTestdata(t, "raw-emulator.asl.json"),
		Substitutions: map[string]string{"FunctionArn": echoARN},
		Lambdas:       map[string][]string{echoARN: {f.instances[0].url}},
	})
	output, eerr := r.Run(t.Context(), awsfake.Execution{
		ExecutionArn: "arn:aws:states:us-east-1:123456789012:execution:raw:r1", StateMachineArn: "arn:aws:states:us-east-1:123456789012:stateMachine:raw",
		Name: "r1", Input: "{}", StartDate: time.Now(),
	})
	require.Nil(t, eerr, "%+v", eerr)
	var out struct {
		Bad, Slow, Crash errorOutput
		Fine             map[string]string
	}
	require.NoError(t, json.Unmarshal([]byte(output), &out))
	assert.Equal(t, "BadThing", out.Bad.Error)
	assert.JSONEq(t, `{"errorMessage":"bad thing for raw","errorType":"BadThing"}`, out.Bad.Cause)
	assert.Equal(t, "Sandbox.Timedout", out.Slow.Error)
	assert.Regexp(t, `"errorMessage":"RequestId: [0-9a-f-]{36} Error: Task timed out after 1.00 seconds"`, out.Slow.Cause)
	assert.Equal(t, "Runtime.ExitError", out.Crash.Error)
	assert.Contains(t, out.Crash.Cause, "Runtime exited with error: exit status 3")
	assert.Equal(t, map[string]string{"function": "raw"}, out.Fine)
}

func TestEngineKeepsOneInvocationInFlightPerPoolInstance(t *testing.T) {
	t.Parallel()
	tools := requireTools(t)
	f := startEcho(t, tools, FunctionSpec{Name: "pooled", Instances: 3, TimeoutSeconds: 5})
	r := newRunner(t, tools, EngineConfig{
		Definition: `{"StartAt":"Fan","States":{"Fan":{"Type":"Map","ItemProcessor":{"ProcessorConfig":{"Mode":"INLINE"},"StartAt":"Sleep",` +
			`"States":{"Sleep":{"Type":"Task","Resource":"` + echoARN + `","Parameters":{"mode":"sleep","sleep_ms":1500},"OutputPath":"$.function","End":true}}},"End":true}}}`,
		Lambdas: map[string][]string{echoARN: f.InvokeURLs()},
	})
	require.Len(t, f.InvokeURLs(), 3)
	// Warm the three runtimes first, so the timing below measures only the invocations.
	warm := make(chan struct{}, 3)
	for range 3 {
		go func() {
			_, _, _ = f.Invoke(t.Context(), []byte(`{"mode":"sleep","sleep_ms":50}`))
			warm <- struct{}{}
		}()
	}
	for range 3 {
		<-warm
	}
	output, eerr := r.Run(t.Context(), awsfake.Execution{
		ExecutionArn: "arn:aws:states:us-east-1:123456789012:execution:x:pool", StateMachineArn: "arn:aws:states:us-east-1:123456789012:stateMachine:x",
		Name: "pool", Input: "[1,2,3]", StartDate: time.Now(),
	})
	require.Nil(t, eerr, "%+v", eerr)
	assert.JSONEq(t, `["pooled","pooled","pooled"]`, output)
	// Side by side, not one after another: one after another, three 1.5 s calls take at least 4.5 s;
	// side by side about 1.5 s. The bound sits halfway, 1.5 s above the parallel time, so that a
	// loaded machine does not make it flake, and two calls in a row already break it.
	tl, _ := r.Timeline("arn:aws:states:us-east-1:123456789012:execution:x:pool")
	var mapStart, mapEnd time.Time
	for _, ev := range tl {
		if ev.State == "Fan" && ev.Type == "StateEntered" {
			mapStart = ev.Time
		}
		if ev.State == "Fan" && ev.Type == "StateExited" {
			mapEnd = ev.Time
		}
	}
	assert.Less(t, mapEnd.Sub(mapStart), 3*time.Second, "three 1.5 s calls ran side by side (4.5 s one after another)")
}

func TestEngineReportsUncaughtFailures(t *testing.T) {
	t.Parallel()
	tools := requireTools(t)
	f := startEcho(t, tools, FunctionSpec{Name: "echo", TimeoutSeconds: 5})
	exec := awsfake.Execution{
		ExecutionArn: "arn:aws:states:us-east-1:123456789012:execution:x:e", StateMachineArn: "arn:aws:states:us-east-1:123456789012:stateMachine:x",
		Name: "e", Input: "{}", StartDate: time.Now(),
	}
	for _, tc := range []struct {
		name, definition string
		want             awsfake.ExecError
	}{
		{
			name:       "a function error nobody catches fails the execution with its name and JSON",
			definition: `{"StartAt":"Call","States":{"Call":{"Type":"Task","Resource":"` + echoARN + `","Parameters":{"mode":"bad","key":"u"},"End":true}}}`,
			want:       awsfake.ExecError{Error: "BadThing", Cause: `{"errorMessage":"bad thing for u","errorType":"BadThing"}`},
		},
		{
			name:       "a Fail state fails it with its Error and Cause",
			definition: `{"StartAt":"Stop","States":{"Stop":{"Type":"Fail","Error":"KeyNotUsable","Cause":"key is disabled"}}}`,
			want:       awsfake.ExecError{Error: "KeyNotUsable", Cause: "key is disabled"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t, tools, EngineConfig{Definition: tc.definition, Lambdas: map[string][]string{echoARN: {f.InvokeURL()}}})
			_, eerr := r.Run(t.Context(), exec)
			require.NotNil(t, eerr)
			assert.Equal(t, tc.want, *eerr)
			var table bytes.Buffer
			tl, _ := r.Timeline(exec.ExecutionArn)
			require.NoError(t, FormatTimeline(&table, tl))
			assert.Contains(t, table.String(), "failed "+tc.want.Error)
		})
	}
}

func TestEngineRefusesWhatItCannotServe(t *testing.T) {
	t.Parallel()
	tools := requireTools(t)
	exec := awsfake.Execution{
		ExecutionArn: "arn:aws:states:us-east-1:123456789012:execution:x:e", StateMachineArn: "arn:aws:states:us-east-1:123456789012:stateMachine:x",
		Name: "e", Input: "{}", StartDate: time.Now(),
	}
	for _, tc := range []struct {
		name, definition string
		cfg              EngineConfig
		want             string
	}{
		{
			name:       "an integration it does not implement",
			definition: `{"StartAt":"Send","States":{"Send":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage","Parameters":{"QueueUrl":"q","MessageBody":"m"},"End":true}}}`,
			want:       "Send: arn:aws:states:::sqs:sendMessage",
		},
		{
			name:       "a Lambda ARN it was not given",
			definition: `{"StartAt":"Call","States":{"Call":{"Type":"Task","Resource":"` + echoARN + `","End":true}}}`,
			want:       "Call: " + echoARN,
		},
		{
			name:       "a Wait override naming no Wait state",
			definition: `{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":1,"End":true}}}`,
			cfg:        EngineConfig{WaitOverridesMS: map[string]int{"Typo": 0}},
			want:       `wait override "Typo" does not name a Wait state`,
		},
		{
			name:       "an invalid definition",
			definition: `{"StartAt":"Nowhere","States":{"P":{"Type":"Pass","End":true}}}`,
			want:       "State machine definition is invalid",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Definition = tc.definition
			_, eerr := newRunner(t, tools, cfg).Run(t.Context(), exec)
			require.NotNil(t, eerr)
			assert.Equal(t, "Sandbox.EngineError", eerr.Error)
			assert.Contains(t, eerr.Cause, tc.want)
		})
	}
}

// engineDeadline bounds a wait for the engine to get somewhere. It only catches a hang, so it is
// far above what a loaded machine needs (10 s was once too short in CI, with the rig beside it):
// a wait that succeeds returns as soon as its condition holds.
const engineDeadline = 2 * time.Minute

func TestEngineAbortsWhenTheExecutionIsStopped(t *testing.T) {
	t.Parallel()
	tools := requireTools(t)
	srv, err := awsfake.Start(awsfake.Config{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	r := newRunner(t, tools, EngineConfig{Definition: `{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"End":true}}}`})
	srv.RegisterStateMachine(parentARN, r)
	client := sfn.New(sfn.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})

	started, err := client.StartExecution(t.Context(), &sfn.StartExecutionInput{StateMachineArn: aws.String(parentARN), Name: aws.String("long")})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		tl, _ := r.Timeline(aws.ToString(started.ExecutionArn))
		return len(tl) >= 2
	}, engineDeadline, 20*time.Millisecond, "the engine entered the Wait")
	_, err = client.StopExecution(t.Context(), &sfn.StopExecutionInput{ExecutionArn: started.ExecutionArn})
	require.NoError(t, err)
	assert.Equal(t, awsfake.StatusAborted, srv.WaitExecution(t.Context(), aws.ToString(started.ExecutionArn)).Status)
	require.Eventually(t, func() bool {
		tl, _ := r.Timeline(aws.ToString(started.ExecutionArn))
		return tl[len(tl)-1].Type == "ExecutionAborted"
	}, engineDeadline, 20*time.Millisecond, "the engine aborted rather than being killed")
}

func TestSubstituteDefinition(t *testing.T) {
	got, err := SubstituteDefinition(`{"A":"${Fn}","B":"${Quote}"}`, map[string]string{"Fn": "arn:aws:lambda:x", "Quote": `say "hi"`})
	require.NoError(t, err)
	assert.JSONEq(t, `{"A":"arn:aws:lambda:x","B":"say \"hi\""}`, got)

	_, err = SubstituteDefinition(`{"A":"${Fn}","B":"${Other}","C":"${Fn}"}`, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Fn, Other")
}
