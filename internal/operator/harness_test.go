package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/operator"
)

const (
	smARN     = "arn:aws:states:us-east-1:123456789012:stateMachine:rotation"
	execPfx   = "arn:aws:states:us-east-1:123456789012:execution:rotation:"
	keyARN    = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	oldKeyARN = "arn:aws:kms:us-east-1:123456789012:key/00000000-aaaa-4bbb-8ccc-000000000001"
	newConfig = "7e3c1d2a-0000-4000-8000-0000000000b2"
	oldConfig = "0c6f4a55-0000-4000-8000-0000000000a1"
)

// harness is the CLI wired to a real aws-sdk-go-v2 Step Functions client and an awsfake endpoint
// on 127.0.0.1. Its Sleep advances a stepped runner by one step per poll, so that a watch sees
// every step of the execution, deterministically.
type harness struct {
	t      *testing.T
	srv    *awsfake.Server
	client *sfn.Client
	// The command writes from the test's goroutine only: the runners never touch these.
	stdout *bytes.Buffer
	stderr *bytes.Buffer
	env    map[string]string
	stdin  io.Reader
	// stepper, when set, is advanced by every Sleep of a watch; onSleep, when set, is called instead.
	stepper *stepper
	onSleep func(ctx context.Context) error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv, err := awsfake.Start(awsfake.Config{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	require.True(t, strings.HasPrefix(srv.URL(), "http://127.0.0.1:"), "the fake binds loopback only: %s", srv.URL())
	return &harness{
		t:   t,
		srv: srv,
		client: sfn.New(sfn.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider("AKIDOPERATORTEST", "operator-test-secret", ""),
			HTTPClient:  &http.Client{Transport: bufferedBodies{next: http.DefaultTransport.(*http.Transport).Clone()}},
		}),
		stdout: &bytes.Buffer{},
		stderr: &bytes.Buffer{},
		env:    map[string]string{"ROTATOR_STATE_MACHINE_ARN": smARN},
		stdin:  strings.NewReader(""),
	}
}

// run runs the command line and returns its exit code.
func (h *harness) run(args ...string) int {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	app := &operator.App{
		Stdout: h.stdout, Stderr: h.stderr, Stdin: h.stdin,
		Env:    func(k string) string { return h.env[k] },
		NewSFN: func(context.Context) (*sfn.Client, error) { return h.client, nil },
		Now:    time.Now,
		Sleep:  h.sleep,
		// One poll per runner step: the backoff bounds do not matter to the stepped runner.
		MinPoll: time.Millisecond, MaxPoll: 5 * time.Millisecond,
		Terminal: func(io.Writer) bool { return false },
	}
	return app.Run(ctx, args)
}

func (h *harness) sleep(ctx context.Context, _ time.Duration) error {
	if h.onSleep != nil {
		return h.onSleep(ctx)
	}
	if h.stepper == nil {
		return errors.New("harness: a watch needs a stepper to advance the execution")
	}
	return h.stepper.advance(ctx, h.srv)
}

// startDirect starts an execution the way the trigger or the console would, without the CLI.
func (h *harness) startDirect(name, input string) string {
	h.t.Helper()
	out, err := h.client.StartExecution(context.Background(), &sfn.StartExecutionInput{
		StateMachineArn: aws.String(smARN), Name: aws.String(name), Input: aws.String(input),
	})
	require.NoError(h.t, err)
	return aws.ToString(out.ExecutionArn)
}

func (h *harness) waitClosed(arn string) awsfake.Execution {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	exec := h.srv.WaitExecution(ctx, arn)
	require.NotEqual(h.t, awsfake.StatusRunning, exec.Status, "execution %s still running", arn)
	return exec
}

// bufferedBodies hands the transport its own copy of each request body. smithy-go closes the
// request body as soon as the response headers arrive, while net/http may still make its final read
// of the body (the check that it holds no more than Content-Length); the local fake answers fast
// enough to lose that race, and the transport then closes the connection under the response being
// read ("use of closed network connection" in about 5% of large GetExecutionHistory answers).
type bufferedBodies struct{ next http.RoundTripper }

func (b bufferedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return b.next.RoundTrip(r)
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(raw))
	return b.next.RoundTrip(r)
}

// script is what a runner records and how the execution ends.
type script struct {
	steps  [][]awsfake.HistoryEvent
	output string
	fail   *awsfake.ExecError
}

// immediate records every step at once and ends.
func immediate(build func(exec awsfake.Execution) script) awsfake.Runner {
	return awsfake.RunnerFunc(func(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
		s := build(exec)
		for _, step := range s.steps {
			awsfake.RecordHistory(ctx, step...)
		}
		return s.output, s.fail
	})
}

// stepper records one step of its script each time the test lets it: a watch's Sleep, or
// advanceTo for a status snapshot in the middle of a rotation. It runs one execution.
type stepper struct {
	build   func(exec awsfake.Execution) script
	release chan struct{}
	at      chan struct{}
	done    chan struct{}
}

func newStepper(build func(exec awsfake.Execution) script) *stepper {
	return &stepper{build: build, release: make(chan struct{}), at: make(chan struct{}, 1), done: make(chan struct{})}
}

func (s *stepper) Run(ctx context.Context, exec awsfake.Execution) (string, *awsfake.ExecError) {
	defer close(s.done)
	sc := s.build(exec)
	for i, step := range sc.steps {
		select {
		case <-s.release:
		case <-ctx.Done():
			return "", &awsfake.ExecError{Error: "Test.Cancelled", Cause: ctx.Err().Error()}
		}
		awsfake.RecordHistory(ctx, step...)
		if i < len(sc.steps)-1 {
			s.at <- struct{}{}
		}
	}
	return sc.output, sc.fail
}

// advance lets the runner record its next step and waits until it has (or, after the last step,
// until the execution has closed).
func (s *stepper) advance(ctx context.Context, srv *awsfake.Server) error {
	select {
	case s.release <- struct{}{}:
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-s.at:
	case <-s.done:
		for _, e := range srv.Executions() {
			srv.WaitExecution(ctx, e.ExecutionArn)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func mustJSON(_ testing.TB, v any) string {
	b, err := json.Marshal(v)
	check(err)
	return string(b)
}
