package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// FunctionSpec describes a Lambda function to serve from its bootstrap binary under aws-lambda-rie.
type FunctionSpec struct {
	// Name becomes AWS_LAMBDA_FUNCTION_NAME.
	Name string
	// Bootstrap is the function's executable (a Go binary built with -tags lambda.norpc).
	Bootstrap string
	// Emulator is the aws-lambda-rie binary.
	Emulator string
	// Env is the function's configuration; it is added to (and wins over) the defaults
	// AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_TIMEOUT, AWS_LAMBDA_FUNCTION_VERSION,
	// AWS_REGION and AWS_DEFAULT_REGION. Of the parent's environment only PATH, HOME and TMPDIR
	// are passed, so no developer credentials or profile leak into a function.
	Env map[string]string
	// TimeoutSeconds is the function's timeout (AWS_LAMBDA_FUNCTION_TIMEOUT). Default 3, as in AWS.
	TimeoutSeconds int
	// Region is the function's AWS_REGION. Default us-east-1.
	Region string
	// Instances is how many emulators to run: each serves one invocation at a time, as one Lambda
	// execution environment does, so N instances serve N concurrent invocations. Default 1.
	Instances int
	// LogOutput, if set, receives every log line as it is written, prefixed with "[Name] ".
	LogOutput io.Writer
}

// FunctionError is a function error as the Lambda Invoke API reports it.
type FunctionError struct {
	ErrorType    string          `json:"errorType"`
	ErrorMessage string          `json:"errorMessage"`
	StackTrace   json.RawMessage `json:"stackTrace,omitempty"`
	// Payload is the error document as returned, the text Step Functions shows as the Cause.
	Payload json.RawMessage `json:"-"`
}

func (e *FunctionError) Error() string { return e.ErrorType + ": " + e.ErrorMessage }

// Errors the emulator does not name the AWS way (see the package README and invokeInstance).
const (
	// ErrorTypeTimedOut is what AWS reports for an invocation that outlived the function's timeout.
	ErrorTypeTimedOut = "Sandbox.Timedout"
	// ErrorTypeExit is what AWS reports when the runtime process exits during an invocation.
	ErrorTypeExit = "Runtime.ExitError"
)

// Function is a running function: one or more aws-lambda-rie processes behind one invoke URL.
type Function struct {
	spec      FunctionSpec
	instances []*instance
	idle      chan *instance
	stopped   chan struct{}
	stopOnce  sync.Once
	logs      *lineBuffer // the function's stdout and stderr, with the START/END/REPORT lines
	emuLogs   *lineBuffer // the emulator's own log
	proxy     *http.Server
	invokeURL string
	client    *http.Client
}

type instance struct {
	proc *process
	url  string // the emulator's own invoke URL
}

const invokePath = "/2015-03-31/functions/function/invocations"

// StartFunction starts spec.Instances emulators for the function and a front URL for them. The
// processes stop with Stop or when ctx is cancelled, whichever comes first.
func StartFunction(ctx context.Context, spec FunctionSpec) (*Function, error) {
	if spec.Name == "" {
		return nil, errors.New("sandbox: FunctionSpec.Name is required")
	}
	for what, path := range map[string]string{"bootstrap": spec.Bootstrap, "aws-lambda-rie": spec.Emulator} {
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("sandbox: function %s: %s: %w", spec.Name, what, err)
		}
		if info.IsDir() || info.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("sandbox: function %s: %s %s is not an executable file", spec.Name, what, path)
		}
	}
	if spec.TimeoutSeconds <= 0 {
		spec.TimeoutSeconds = 3
	}
	if spec.Region == "" {
		spec.Region = "us-east-1"
	}
	if spec.Instances <= 0 {
		spec.Instances = 1
	}
	f := &Function{
		spec:    spec,
		idle:    make(chan *instance, spec.Instances),
		stopped: make(chan struct{}),
		logs:    &lineBuffer{tee: spec.LogOutput, prefix: "[" + spec.Name + "] "},
		emuLogs: &lineBuffer{},
		// No client timeout: the emulator enforces the function's own timeout.
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: false, MaxIdleConnsPerHost: 4}},
	}
	for range spec.Instances {
		inst, err := f.startInstance(ctx)
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.instances = append(f.instances, inst)
		f.idle <- inst
	}
	if err := f.serveProxy(); err != nil {
		f.Stop()
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			f.Stop()
		case <-f.stopped:
		}
	}()
	return f, nil
}

func (f *Function) env() map[string]string {
	env := baseEnv()
	env["AWS_LAMBDA_FUNCTION_NAME"] = f.spec.Name
	env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = strconv.Itoa(f.spec.TimeoutSeconds)
	env["AWS_LAMBDA_FUNCTION_VERSION"] = "$LATEST"
	env["AWS_REGION"] = f.spec.Region
	env["AWS_DEFAULT_REGION"] = f.spec.Region
	for k, v := range f.spec.Env {
		env[k] = v
	}
	return env
}

// startInstance runs one emulator. Both its addresses are chosen here: the invoke address and the
// Runtime API address, which defaults to 127.0.0.1:9001 and would collide between instances.
// A port taken between FreePort and the emulator's bind shows up as an early exit: retry then.
func (f *Function) startInstance(ctx context.Context) (*instance, error) {
	var lastErr error
	for range 3 {
		apiPort, err := EmulatorPort()
		if err != nil {
			return nil, err
		}
		rapidPort, err := EmulatorPort()
		if err != nil {
			return nil, err
		}
		if rapidPort == apiPort {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(apiPort)
		cmd := exec.Command(f.spec.Emulator,
			"--runtime-interface-emulator-address", addr,
			"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(rapidPort),
			f.spec.Bootstrap)
		cmd.Dir = filepath.Dir(f.spec.Bootstrap) // the function's code dir, /var/task in AWS
		cmd.Env = envList(f.env())
		// The emulator prints the function's output (and START/END/REPORT) on stdout and its own
		// log on stderr.
		cmd.Stdout, cmd.Stderr = f.logs, f.emuLogs
		proc, err := startProcess(cmd)
		if err != nil {
			return nil, fmt.Errorf("sandbox: start aws-lambda-rie for %s: %w", f.spec.Name, err)
		}
		inst := &instance{proc: proc, url: "http://" + addr + invokePath}
		err = waitUntil(ctx, 10*time.Second, proc, func() bool {
			conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err != nil {
				return false
			}
			conn.Close()
			return true
		})
		if err == nil {
			return inst, nil
		}
		proc.stop(time.Second)
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("sandbox: aws-lambda-rie for %s did not start: %w\nemulator log:\n%s", f.spec.Name, lastErr, f.emuLogs.tail(20))
}

// serveProxy puts one URL in front of the instances. Every caller (the Go Invoke, engines in other
// processes) goes through it, so an emulator never receives a second invocation while one runs:
// aws-lambda-rie panics and exits when it does. The proxy also answers as the Lambda Invoke API
// does: function errors, timeouts and crashes come back as 200 with X-Amz-Function-Error.
func (f *Function) serveProxy() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("sandbox: proxy for %s: %w", f.spec.Name, err)
	}
	f.invokeURL = "http://" + ln.Addr().String() + invokePath
	mux := http.NewServeMux()
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		requestID := r.Header.Get("X-Amzn-RequestId")
		if requestID == "" {
			requestID = uuid.NewString()
		}
		payload, ferr, err := f.invoke(r.Context(), requestID, body)
		w.Header().Set("X-Amzn-RequestId", requestID)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case err != nil:
			// Not a function error: the sandbox itself failed. Plain text, so callers fail loudly.
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, err.Error())
		case ferr != nil:
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
			_, _ = w.Write(ferr.Payload)
		default:
			_, _ = w.Write(payload)
		}
	}
	mux.HandleFunc("POST "+invokePath, handler)
	// One path per instance, all served by the same pool: the engine queues calls per URL, so N
	// URLs let one engine keep N invocations in flight.
	mux.HandleFunc("POST /i/{n}"+invokePath, handler)
	f.proxy = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.proxy.Serve(ln) }()
	return nil
}

// InvokeURL is the function's invoke URL (POST the event, get the result). Calls through it are
// served by whichever instance is idle, one invocation per instance at a time.
func (f *Function) InvokeURL() string { return f.invokeURL }

// InvokeURLs returns one URL per instance, for EngineConfig.Lambdas: the engine queues calls per
// URL, so with these it keeps as many invocations in flight as there are instances.
func (f *Function) InvokeURLs() []string {
	base := strings.TrimSuffix(f.invokeURL, invokePath)
	urls := make([]string, len(f.instances))
	for i := range urls {
		urls[i] = base + "/i/" + strconv.Itoa(i) + invokePath
	}
	return urls
}

// Name is the function's name.
func (f *Function) Name() string { return f.spec.Name }

// Logs returns the function's log lines so far: what it wrote to stdout and stderr, between the
// emulator's START/END/REPORT lines, oldest first, all instances interleaved.
func (f *Function) Logs() []string { return f.logs.Lines() }

// EmulatorLogs returns aws-lambda-rie's own log lines (init, resets, crashes).
func (f *Function) EmulatorLogs() []string { return f.emuLogs.Lines() }

// Invoke runs the function once with payload and returns its result, or the function error it
// returned (a typed error, a timeout as Sandbox.Timedout, a crash as Runtime.ExitError). err is
// for failures of the sandbox itself.
func (f *Function) Invoke(ctx context.Context, payload []byte) (json.RawMessage, *FunctionError, error) {
	return f.invoke(ctx, uuid.NewString(), payload)
}

func (f *Function) invoke(ctx context.Context, requestID string, payload []byte) (json.RawMessage, *FunctionError, error) {
	var inst *instance
	select {
	case inst = <-f.idle:
	case <-f.stopped:
		return nil, nil, fmt.Errorf("sandbox: function %s is stopped", f.spec.Name)
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	type answer struct {
		payload json.RawMessage
		ferr    *FunctionError
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		// The instance goes back to the pool only when the emulator has answered, even if the
		// caller gave up: a new invocation while one runs would crash it.
		p, ferr, err := f.invokeInstance(inst, requestID, payload)
		f.idle <- inst
		done <- answer{p, ferr, err}
	}()
	select {
	case a := <-done:
		return a.payload, a.ferr, a.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// timedOut is the emulator's whole answer to an invocation that outlived the function's timeout.
var timedOut = regexp.MustCompile(`^Task timed out after [0-9.]+ seconds$`)

// invokeInstance sends one invocation to one emulator and maps its answers:
//
//	success          200, the result
//	function error   200, {"errorMessage","errorType"} (no X-Amz-Function-Error header)
//	timeout          200, text "Task timed out after N.00 seconds"; the runtime is killed and
//	                 re-initialised by the next invocation. AWS: errorType Sandbox.Timedout.
//	crash            502, {"errorType":"Runtime.ExitError","errorMessage":"RequestId: … Error:
//	                 Runtime exited with error: exit status N"}, as AWS reports it.
func (f *Function) invokeInstance(inst *instance, requestID string, payload []byte) (json.RawMessage, *FunctionError, error) {
	if inst.proc.hasExited() {
		return nil, nil, fmt.Errorf("sandbox: aws-lambda-rie for %s has exited (%v)\nemulator log:\n%s", f.spec.Name, inst.proc.err, f.emuLogs.tail(20))
	}
	// Bounded by the function timeout plus init and the emulator's reset, never by the caller.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(f.spec.TimeoutSeconds)*time.Second+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, inst.url, bytes.NewReader(payload))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-Amzn-RequestId", requestID)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: invoke %s: %w\nemulator log:\n%s", f.spec.Name, err, f.emuLogs.tail(20))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: invoke %s: read answer: %w", f.spec.Name, err)
	}

	if resp.StatusCode == http.StatusOK && timedOut.Match(bytes.TrimSpace(body)) {
		ferr := &FunctionError{ErrorType: ErrorTypeTimedOut, ErrorMessage: "RequestId: " + requestID + " Error: " + string(bytes.TrimSpace(body))}
		ferr.Payload, _ = json.Marshal(ferr)
		return nil, ferr, nil
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusBadGateway {
		if ferr := parseFunctionError(body); ferr != nil {
			return nil, ferr, nil
		}
	}
	if resp.StatusCode == http.StatusOK {
		if !json.Valid(body) {
			return nil, nil, fmt.Errorf("sandbox: invoke %s: the emulator answered 200 with a body that is not JSON: %.300s", f.spec.Name, body)
		}
		return json.RawMessage(body), nil, nil
	}
	return nil, nil, fmt.Errorf("sandbox: invoke %s: the emulator answered %d: %.300s\nemulator log:\n%s", f.spec.Name, resp.StatusCode, body, f.emuLogs.tail(20))
}

// parseFunctionError recognises the error document aws-lambda-go and the emulator write: an object
// with a string errorType and an errorMessage.
func parseFunctionError(body []byte) *FunctionError {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	if _, ok := doc["errorMessage"]; !ok {
		return nil
	}
	var ferr FunctionError
	if json.Unmarshal(body, &ferr) != nil || ferr.ErrorType == "" {
		return nil
	}
	ferr.Payload = append(json.RawMessage(nil), body...)
	return &ferr
}

// Stop stops the emulators (and the functions they run) and the front URL. It is safe to call
// more than once.
func (f *Function) Stop() {
	f.stopOnce.Do(func() {
		close(f.stopped)
		if f.proxy != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = f.proxy.Shutdown(ctx)
			cancel()
		}
		var wg sync.WaitGroup
		for _, inst := range f.instances {
			wg.Go(func() { inst.proc.stop(2 * time.Second) })
		}
		wg.Wait()
		f.client.CloseIdleConnections()
	})
}

// String names the function and its URL, for test logs.
func (f *Function) String() string {
	return fmt.Sprintf("%s (%d× aws-lambda-rie, %s)", f.spec.Name, len(f.instances), strings.TrimSuffix(f.invokeURL, invokePath))
}
