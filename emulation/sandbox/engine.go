package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
)

// EngineConfig says how to run executions of one state machine in emulation/sandbox/engine.mjs.
type EngineConfig struct {
	// Node is the node binary (node_modules/.bin/node, Node >= 22).
	Node string
	// Script is emulation/sandbox/engine.mjs.
	Script string
	// Definition is the ASL text as written, with ${Name} placeholders.
	Definition string
	// Substitutions replace ${Name} in Definition, as DefinitionSubstitutions do in SAM.
	Substitutions map[string]string
	// Lambdas maps a function ARN used as a Task Resource to the invoke URLs that serve it
	// (Function.InvokeURL(); several URLs make a pool).
	Lambdas map[string][]string
	// AWSEndpoint is the awsfake server's URL, for events:putEvents and states:startExecution.
	AWSEndpoint string
	// WaitOverridesMS replaces Wait durations by state name; "*" means every Wait state.
	WaitOverridesMS map[string]int
	// RetryOverridesMS replaces Retry intervals by state name; "*" means every state with Retry.
	RetryOverridesMS map[string]int
	// Validation relaxes the engine's definition checks. Leave nil unless a substituted ARN fails
	// the ARN check.
	Validation *Validation
	// JobDir, if set, keeps each job as <JobDir>/<execution name>.job.json, to rerun it by hand
	// with `node emulation/sandbox/engine.mjs < file`.
	JobDir string
	// Logger receives the engine's stderr and anything unexpected on its stdout. Default: discard.
	Logger *slog.Logger
	// OnEvent, if set, is called with each timeline event as it arrives (live progress).
	OnEvent func(executionArn string, ev TimelineEvent)
}

// Validation mirrors aws-local-stepfunctions' validationOptions.
type Validation struct {
	CheckArn   *bool `json:"checkArn,omitempty"`
	CheckPaths *bool `json:"checkPaths,omitempty"`
}

// EngineRunner runs executions of one state machine definition in the Node engine. It implements
// awsfake.Runner: register it with awsfake.Server.RegisterStateMachine.
type EngineRunner struct {
	cfg        EngineConfig
	definition json.RawMessage
	log        *slog.Logger

	mu        sync.Mutex
	timelines map[string]Timeline
}

var _ awsfake.Runner = (*EngineRunner)(nil)

// NewEngineRunner substitutes the definition and checks it is JSON, so a wiring mistake fails at
// setup rather than inside the first execution.
func NewEngineRunner(cfg EngineConfig) (*EngineRunner, error) {
	var missing []string
	for what, path := range map[string]string{"node": cfg.Node, "engine script": cfg.Script} {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%v)", what, err))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("sandbox: engine: missing %s; run `make tools`", strings.Join(missing, ", "))
	}
	def, err := SubstituteDefinition(cfg.Definition, cfg.Substitutions)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &EngineRunner{cfg: cfg, definition: json.RawMessage(def), log: cfg.Logger, timelines: map[string]Timeline{}}, nil
}

var placeholder = regexp.MustCompile(`\$\{([A-Za-z0-9_.:-]+)\}`)

// SubstituteDefinition replaces ${Name} placeholders as DefinitionSubstitutions do, and fails on a
// placeholder without a value or a result that is not JSON.
func SubstituteDefinition(definition string, subs map[string]string) (string, error) {
	var unknown []string
	out := placeholder.ReplaceAllStringFunc(definition, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := subs[name]
		if !ok {
			unknown = append(unknown, name)
			return m
		}
		// The value lands inside a JSON string: escape it as one.
		quoted, _ := json.Marshal(v)
		return string(quoted[1 : len(quoted)-1])
	})
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return "", fmt.Errorf("sandbox: definition placeholders without a substitution: %s", strings.Join(slices.Compact(unknown), ", "))
	}
	if !json.Valid([]byte(out)) {
		return "", errors.New("sandbox: the substituted definition is not valid JSON")
	}
	return out, nil
}

// Definition returns the substituted definition the engine runs.
func (r *EngineRunner) Definition() json.RawMessage { return r.definition }

// Timeline returns what is known so far of an execution's run (it grows while the execution runs).
func (r *EngineRunner) Timeline(executionArn string) (Timeline, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tl, ok := r.timelines[executionArn]
	return slices.Clone(tl), ok
}

// TimelineEvent is one engine event. Type is the engine's event type: ExecutionStarted,
// StateEntered, StateExited, StateFailed, StateRetried, StateCaught, MapIterationStarted,
// MapIterationSucceeded, MapIterationFailed, ParallelBranch*, ExecutionSucceeded, ExecutionFailed,
// ExecutionAborted, ExecutionTimeout.
type TimelineEvent struct {
	Time      time.Time
	Type      string
	State     string
	StateType string
	Index     int // the Map iteration the event belongs to; -1 outside Map iterations
	Resource  string
	Error     string
	Cause     string
	Input     json.RawMessage
	Output    json.RawMessage
	Attempt   int    // StateRetried: the retrier's attempt count
	Next      string // StateCaught: the catcher's Next
}

// Timeline is an execution's events in the order the engine emitted them.
type Timeline []TimelineEvent

type jobContext struct {
	Execution    map[string]string `json:"Execution"`
	StateMachine map[string]string `json:"StateMachine"`
}

type engineJob struct {
	Definition       json.RawMessage `json:"definition"`
	Input            json.RawMessage `json:"input"`
	Context          jobContext      `json:"context"`
	Lambdas          map[string]any  `json:"lambdas"`
	AWSEndpoint      string          `json:"aws_endpoint,omitempty"`
	WaitOverridesMS  map[string]int  `json:"wait_overrides_ms,omitempty"`
	RetryOverridesMS map[string]int  `json:"retry_overrides_ms,omitempty"`
	Validation       *Validation     `json:"validation,omitempty"`
}

type engineLine struct {
	Ts        int64           `json:"ts"`
	Type      string          `json:"type"`
	State     string          `json:"state"`
	StateType string          `json:"stateType"`
	Index     *int            `json:"index"`
	Resource  string          `json:"resource"`
	Input     json.RawMessage `json:"input"`
	Output    json.RawMessage `json:"output"`
	Error     *string         `json:"error"`
	Cause     *string         `json:"cause"`
	Attempt   int             `json:"attempt"`
	Next      string          `json:"next"`
	Status    string          `json:"status"`
}

func (r *EngineRunner) job(execution awsfake.Execution, definition, input json.RawMessage) ([]byte, error) {
	lambdas := make(map[string]any, len(r.cfg.Lambdas))
	for arn, urls := range r.cfg.Lambdas {
		if len(urls) == 1 {
			lambdas[arn] = urls[0]
		} else {
			lambdas[arn] = urls
		}
	}
	smName := execution.StateMachineArn[strings.LastIndex(execution.StateMachineArn, ":")+1:]
	if len(bytes.TrimSpace(input)) == 0 {
		input = json.RawMessage("{}")
	}
	return json.Marshal(engineJob{
		Definition: definition,
		Input:      input,
		Context: jobContext{
			Execution: map[string]string{
				"Id":        execution.ExecutionArn,
				"Name":      execution.Name,
				"StartTime": execution.StartDate.UTC().Format("2006-01-02T15:04:05.000Z"),
			},
			StateMachine: map[string]string{"Id": execution.StateMachineArn, "Name": smName},
		},
		Lambdas:          lambdas,
		AWSEndpoint:      r.cfg.AWSEndpoint,
		WaitOverridesMS:  r.cfg.WaitOverridesMS,
		RetryOverridesMS: r.cfg.RetryOverridesMS,
		Validation:       r.cfg.Validation,
	})
}

// Run runs one execution to its end in a node process. Cancelling ctx aborts it.
func (r *EngineRunner) Run(ctx context.Context, execution awsfake.Execution) (string, *awsfake.ExecError) {
	r.mu.Lock()
	r.timelines[execution.ExecutionArn] = Timeline{}
	r.mu.Unlock()
	return r.runJob(ctx, execution, r.definition, json.RawMessage(execution.Input))
}

// runJob runs definition with input as the execution, adding to its timeline and history.
func (r *EngineRunner) runJob(ctx context.Context, execution awsfake.Execution, definition, input json.RawMessage) (string, *awsfake.ExecError) {
	job, err := r.job(execution, definition, input)
	if err != nil {
		return "", &awsfake.ExecError{Error: "Sandbox.EngineError", Cause: "build job: " + err.Error()}
	}
	if r.cfg.JobDir != "" {
		if err := os.WriteFile(filepath.Join(r.cfg.JobDir, execution.Name+".job.json"), job, 0o600); err != nil {
			r.log.Warn("sandbox: keep engine job", "err", err)
		}
	}

	stdout, stdoutW := io.Pipe()
	stderr := &lineBuffer{notify: func(line string) {
		r.log.Warn("engine stderr", "execution", execution.Name, "line", line)
	}}
	cmd := exec.Command(r.cfg.Node, r.cfg.Script)
	cmd.Env = envList(baseEnv())
	cmd.Stdin = bytes.NewReader(job)
	cmd.Stdout, cmd.Stderr = stdoutW, stderr
	proc, err := startProcess(cmd)
	if err != nil {
		return "", &awsfake.ExecError{Error: "Sandbox.EngineError", Cause: "start node: " + err.Error()}
	}
	go func() {
		<-proc.exited
		stdoutW.Close()
	}()
	go func() {
		select {
		case <-ctx.Done():
			// SIGTERM makes the engine abort the execution and still write its Result.
			proc.stop(3 * time.Second)
		case <-proc.exited:
		}
	}()

	var result *engineLine
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	for sc.Scan() {
		var line engineLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Type == "" {
			r.log.Warn("engine wrote a line that is not an event", "execution", execution.Name, "line", sc.Text())
			continue
		}
		if line.Type == "Result" {
			result = &line
			continue
		}
		r.record(ctx, execution.ExecutionArn, line)
	}
	if err := sc.Err(); err != nil {
		_, _ = io.Copy(io.Discard, stdout)
		r.log.Error("read engine output", "execution", execution.Name, "err", err)
	}
	<-proc.exited

	if result == nil {
		return "", &awsfake.ExecError{
			Error: "Sandbox.EngineError",
			Cause: fmt.Sprintf("the engine ended without a result (%v):\n%s", proc.err, stderr.tail(30)),
		}
	}
	errName, cause := deref(result.Error), deref(result.Cause)
	switch result.Status {
	case "SUCCEEDED":
		out := result.Output
		if len(out) == 0 {
			out = json.RawMessage("null")
		}
		return string(out), nil
	case "TIMED_OUT":
		return "", &awsfake.ExecError{Error: errName, Cause: cause, Status: awsfake.StatusTimedOut}
	case "ABORTED":
		return "", &awsfake.ExecError{Error: "Sandbox.EngineAborted", Cause: "the engine aborted the execution"}
	default:
		return "", &awsfake.ExecError{Error: errName, Cause: cause}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// record keeps the event in the timeline and mirrors the AWS-visible part into the execution history.
func (r *EngineRunner) record(ctx context.Context, executionArn string, line engineLine) {
	ev := TimelineEvent{
		Time:      time.UnixMilli(line.Ts).UTC(),
		Type:      line.Type,
		State:     line.State,
		StateType: line.StateType,
		Index:     -1,
		Resource:  line.Resource,
		Error:     deref(line.Error),
		Cause:     deref(line.Cause),
		Input:     line.Input,
		Output:    line.Output,
		Attempt:   line.Attempt,
		Next:      line.Next,
	}
	if line.Index != nil {
		ev.Index = *line.Index
	}
	r.mu.Lock()
	r.timelines[executionArn] = append(r.timelines[executionArn], ev)
	r.mu.Unlock()
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(executionArn, ev)
	}
	if h, ok := historyEvent(ev); ok {
		awsfake.RecordHistory(ctx, h)
	}
}

// historyEvent maps an engine event to the Step Functions history event AWS would record, when
// there is one. Retries and catches have none (AWS shows them as a failure followed by the next
// attempt or state); the execution's own start and end are recorded by awsfake.
func historyEvent(ev TimelineEvent) (awsfake.HistoryEvent, bool) {
	h := awsfake.HistoryEvent{Timestamp: ev.Time, StateName: ev.State, Resource: ev.Resource, Error: ev.Error, Cause: ev.Cause, Index: ev.Index}
	switch ev.Type {
	case "StateEntered":
		h.Type, h.Input = ev.StateType+"StateEntered", string(ev.Input)
	case "StateExited":
		h.Type, h.Output = ev.StateType+"StateExited", string(ev.Output)
	case "StateFailed":
		switch {
		case ev.StateType == "Task" && strings.Contains(ev.Resource, ":lambda:") && strings.Contains(ev.Resource, ":function:"):
			h.Type = "LambdaFunctionFailed"
		case ev.StateType == "Task":
			h.Type = "TaskFailed"
		case ev.StateType == "Map" || ev.StateType == "Parallel":
			h.Type = ev.StateType + "StateFailed"
		default:
			return h, false
		}
	case "MapIterationStarted", "MapIterationSucceeded", "MapIterationFailed":
		h.Type = ev.Type
	default:
		return h, false
	}
	return h, true
}
