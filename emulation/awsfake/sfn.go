package awsfake

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Runner runs one execution of a registered state machine. The fake calls Run in its own
// goroutine when StartExecution creates an execution; ctx is cancelled when the execution is
// stopped (StopExecution) or the server closes, and Run should then return promptly. Run may
// record history events with RecordHistory(ctx, ...) while it runs.
type Runner interface {
	Run(ctx context.Context, exec Execution) (output string, err *ExecError)
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, exec Execution) (string, *ExecError)

// Run calls f.
func (f RunnerFunc) Run(ctx context.Context, exec Execution) (string, *ExecError) {
	return f(ctx, exec)
}

// ExecutionStatus is the status of an execution, spelled as the Step Functions API spells it.
type ExecutionStatus string

const (
	StatusRunning   ExecutionStatus = "RUNNING"
	StatusSucceeded ExecutionStatus = "SUCCEEDED"
	StatusFailed    ExecutionStatus = "FAILED"
	StatusTimedOut  ExecutionStatus = "TIMED_OUT"
	StatusAborted   ExecutionStatus = "ABORTED"
)

// ExecError is how a Runner reports a failed execution: the error name and cause that
// DescribeExecution will show. It is data, not a Go error.
type ExecError struct {
	Error string
	Cause string
	// Status is the closed status to record: empty means FAILED; StatusTimedOut is accepted for an
	// execution that exceeded the definition's TimeoutSeconds.
	Status ExecutionStatus
}

// Execution is a snapshot of one execution.
type Execution struct {
	ExecutionArn    string
	StateMachineArn string
	Name            string
	Status          ExecutionStatus
	Input           string
	Output          string // set when SUCCEEDED
	Error           string // set when FAILED, TIMED_OUT or ABORTED by StopExecution with an error
	Cause           string
	StartDate       time.Time
	StopDate        time.Time // zero while RUNNING
	// RedriveCount and RedriveDate are set by RedriveExecution (redrive.go).
	RedriveCount int
	RedriveDate  time.Time
}

// HistoryEvent is one event of an execution's history. The fake records the Execution* events
// itself; a Runner records the state events (StateEntered/Exited, TaskFailed, MapIteration*, ...)
// with RecordHistory. Type is the Step Functions HistoryEventType name; the GetExecutionHistory
// answer puts the fields into the details object AWS uses for that type.
type HistoryEvent struct {
	ID         int64
	PreviousID int64
	Type       string
	Timestamp  time.Time
	StateName  string
	Resource   string // the Task resource, for Task*/LambdaFunction* events
	Input      string
	Output     string
	Error      string
	Cause      string
	Index      int // the iteration, for MapIteration* events
}

type sfnState struct {
	machines map[string]Runner
	execs    map[string]*execution
	order    []string // execution ARNs in start order
	tokens   map[string]*taskToken
}

type execution struct {
	Execution
	history []HistoryEvent
	done    chan struct{}
	cancel  context.CancelFunc
}

func newSFNState() sfnState {
	return sfnState{machines: map[string]Runner{}, execs: map[string]*execution{}, tokens: map[string]*taskToken{}}
}

// stateMachineARN is arn:<partition>:states:<region>:<account>:stateMachine:<name>.
type stateMachineARN struct{ prefix, name string }

func parseStateMachineARN(arn string) (stateMachineARN, bool) {
	parts := strings.Split(arn, ":")
	if len(parts) != 7 || parts[0] != "arn" || parts[2] != "states" || parts[5] != "stateMachine" || parts[6] == "" {
		return stateMachineARN{}, false
	}
	return stateMachineARN{prefix: strings.Join(parts[:5], ":"), name: parts[6]}, true
}

func (a stateMachineARN) executionARN(name string) string {
	return a.prefix + ":execution:" + a.name + ":" + name
}

func isExecutionARN(arn string) bool {
	parts := strings.Split(arn, ":")
	return len(parts) == 8 && parts[0] == "arn" && parts[2] == "states" && parts[5] == "execution"
}

// RegisterStateMachine makes StartExecution on arn run runner. It panics on an ARN that is not a
// state machine ARN: that is a mistake in the test or sandbox wiring, not a runtime condition.
func (s *Server) RegisterStateMachine(arn string, runner Runner) {
	if _, ok := parseStateMachineARN(arn); !ok {
		panic(fmt.Sprintf("awsfake: %q is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)", arn))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sfn.machines[arn] = runner
}

// Executions returns every execution, oldest first.
func (s *Server) Executions() []Execution {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Execution, 0, len(s.sfn.order))
	for _, arn := range s.sfn.order {
		out = append(out, s.sfn.execs[arn].Execution)
	}
	return out
}

// Execution returns one execution by ARN.
func (s *Server) Execution(arn string) (Execution, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sfn.execs[arn]
	if !ok {
		return Execution{}, false
	}
	return e.Execution, true
}

// WaitExecution blocks until the execution is closed or ctx is done, and returns its snapshot
// (still RUNNING if ctx ended first). An unknown ARN returns the zero Execution at once.
func (s *Server) WaitExecution(ctx context.Context, arn string) Execution {
	s.mu.Lock()
	e, ok := s.sfn.execs[arn]
	s.mu.Unlock()
	if !ok {
		return Execution{}
	}
	select {
	case <-e.done:
	case <-ctx.Done():
	}
	got, _ := s.Execution(arn)
	return got
}

// History returns the recorded history of an execution, oldest first.
func (s *Server) History(arn string) []HistoryEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sfn.execs[arn]
	if !ok {
		return nil
	}
	return append([]HistoryEvent(nil), e.history...)
}

type recorderKey struct{}

type recorder struct {
	s   *Server
	arn string
}

// RecordHistory appends events to the history of the execution whose Runner received ctx. It is a
// no-op outside a Run or once the execution has closed. A zero Timestamp means now.
func RecordHistory(ctx context.Context, events ...HistoryEvent) {
	rec, ok := ctx.Value(recorderKey{}).(recorder)
	if !ok {
		return
	}
	rec.s.mu.Lock()
	defer rec.s.mu.Unlock()
	e, ok := rec.s.sfn.execs[rec.arn]
	if !ok || e.Status != StatusRunning {
		return
	}
	for _, ev := range events {
		e.appendHistory(ev)
	}
}

// appendHistory numbers ev and appends it; the caller holds s.mu.
func (e *execution) appendHistory(ev HistoryEvent) {
	ev.ID = int64(len(e.history) + 1)
	ev.PreviousID = ev.ID - 1
	if ev.Timestamp.IsZero() {
		ev.Timestamp = time.Now().UTC()
	}
	e.history = append(e.history, ev)
}

// forbiddenNameRunes are the characters AWS refuses in an execution name, besides whitespace and
// control characters (StartExecution API reference).
const forbiddenNameRunes = "<>{}[]?*\"#%\\^|~`$&,;:/"

func validExecutionName(name string) bool {
	if !utf8.ValidString(name) {
		return false
	}
	n := utf8.RuneCountInString(name)
	if n < 1 || n > 80 {
		return false
	}
	for _, r := range name {
		if unicode.IsSpace(r) || r <= 0x1f || (r >= 0x7f && r <= 0x9f) || strings.ContainsRune(forbiddenNameRunes, r) {
			return false
		}
	}
	return true
}

// maxPayloadBytes is the Step Functions payload quota (256 KiB).
const maxPayloadBytes = 262144

type startExecutionInput struct {
	StateMachineArn string  `json:"stateMachineArn"`
	Name            *string `json:"name"`
	Input           *string `json:"input"`
}

type startExecutionOutput struct {
	ExecutionArn string        `json:"executionArn"`
	StartDate    *epochSeconds `json:"startDate"`
}

func (s *Server) startExecution(body []byte) (any, *apiError) {
	var in startExecutionInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	smARN, ok := parseStateMachineARN(in.StateMachineArn)
	if !ok {
		return nil, errBadRequest("InvalidArn", "Invalid Arn: 'Resource type not valid in this context: %s'", in.StateMachineArn)
	}
	name := uuid.NewString()
	if in.Name != nil {
		name = *in.Name
		if !validExecutionName(name) {
			return nil, errBadRequest("InvalidName", "Invalid Name: '%s'", name)
		}
	}
	input := "{}"
	if in.Input != nil {
		input = *in.Input
	}
	if len(input) > maxPayloadBytes {
		return nil, errBadRequest("InvalidExecutionInput", "Input exceeds the maximum payload size of %d bytes", maxPayloadBytes)
	}
	if !json.Valid([]byte(input)) {
		return nil, errBadRequest("InvalidExecutionInput", "Invalid State Machine Execution Input: 'input is not valid JSON'")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	runner, ok := s.sfn.machines[in.StateMachineArn]
	if !ok {
		return nil, errBadRequest("StateMachineDoesNotExist", "State Machine Does Not Exist: '%s'", in.StateMachineArn)
	}
	arn := smARN.executionARN(name)
	if existing, ok := s.sfn.execs[arn]; ok {
		// Standard workflows: an open execution with the same name and input is the idempotent
		// answer; anything else with that name is refused, running or closed.
		if existing.Status == StatusRunning && existing.Input == input {
			return startExecutionOutput{ExecutionArn: arn, StartDate: ptrEpoch(existing.StartDate)}, nil
		}
		return nil, errBadRequest("ExecutionAlreadyExists", "Execution Already Exists: '%s'", arn)
	}

	ctx, cancel := context.WithCancel(s.baseCtx)
	e := &execution{
		Execution: Execution{
			ExecutionArn:    arn,
			StateMachineArn: in.StateMachineArn,
			Name:            name,
			Status:          StatusRunning,
			Input:           input,
			StartDate:       time.Now().UTC().Truncate(time.Millisecond),
		},
		done:   make(chan struct{}),
		cancel: cancel,
	}
	e.appendHistory(HistoryEvent{Type: "ExecutionStarted", Timestamp: e.StartDate, Input: input})
	s.sfn.execs[arn] = e
	s.sfn.order = append(s.sfn.order, arn)

	snapshot := e.Execution
	s.runners.Add(1)
	go func() {
		defer s.runners.Done()
		defer cancel()
		out, eerr := runSafely(context.WithValue(ctx, recorderKey{}, recorder{s: s, arn: arn}), runner, snapshot)
		s.finishExecution(arn, 0, out, eerr)
	}()
	return startExecutionOutput{ExecutionArn: arn, StartDate: ptrEpoch(e.StartDate)}, nil
}

// runSafely turns a runner's panic into a failed execution instead of killing the test binary.
func runSafely(ctx context.Context, r Runner, exec Execution) (out string, eerr *ExecError) {
	defer func() {
		if p := recover(); p != nil {
			eerr = &ExecError{Error: "Sandbox.RunnerPanic", Cause: fmt.Sprint(p)}
		}
	}()
	return r.Run(ctx, exec)
}

// finishExecution closes the run of generation redrives (0 for the run StartExecution began).
func (s *Server) finishExecution(arn string, redrives int, output string, eerr *ExecError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sfn.execs[arn]
	if e.Status != StatusRunning || e.RedriveCount != redrives {
		// Stopped while the runner was winding down (the stop is what counts), or an aborted run
		// winding down after its execution was redriven (the redrive's run closes it).
		return
	}
	e.StopDate = time.Now().UTC().Truncate(time.Millisecond)
	switch {
	case eerr == nil:
		e.Status = StatusSucceeded
		e.Output = output
		e.appendHistory(HistoryEvent{Type: "ExecutionSucceeded", Timestamp: e.StopDate, Output: output})
	case eerr.Status == StatusTimedOut:
		e.Status, e.Error, e.Cause = StatusTimedOut, eerr.Error, eerr.Cause
		e.appendHistory(HistoryEvent{Type: "ExecutionTimedOut", Timestamp: e.StopDate, Error: eerr.Error, Cause: eerr.Cause})
	default:
		e.Status, e.Error, e.Cause = StatusFailed, eerr.Error, eerr.Cause
		e.appendHistory(HistoryEvent{Type: "ExecutionFailed", Timestamp: e.StopDate, Error: eerr.Error, Cause: eerr.Cause})
	}
	close(e.done)
}

// abortLocked closes a running execution as ABORTED and cancels its runner; the caller holds s.mu.
func (e *execution) abortLocked(errName, cause string) {
	if e.Status != StatusRunning {
		return
	}
	e.Status, e.Error, e.Cause = StatusAborted, errName, cause
	e.StopDate = time.Now().UTC().Truncate(time.Millisecond)
	e.appendHistory(HistoryEvent{Type: "ExecutionAborted", Timestamp: e.StopDate, Error: errName, Cause: cause})
	close(e.done)
	e.cancel()
}

func (s *Server) abortRunning(errName, cause string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.sfn.execs {
		e.abortLocked(errName, cause)
	}
}

// lookupExecution validates an execution ARN and finds it; the caller holds s.mu.
// lockedExecution decodes a request naming an execution into in, takes the server's lock and finds
// the execution arn reads from in. On success the caller holds the lock and must call unlock.
func (s *Server) lockedExecution(body []byte, in any, arn func() string) (e *execution, unlock func(), aerr *apiError) {
	if aerr := decode(body, in); aerr != nil {
		return nil, nil, aerr
	}
	s.mu.Lock()
	e, aerr = s.lookupExecution(arn())
	if aerr != nil {
		s.mu.Unlock()
		return nil, nil, aerr
	}
	return e, s.mu.Unlock, nil
}

func (s *Server) lookupExecution(arn string) (*execution, *apiError) {
	if !isExecutionARN(arn) {
		return nil, errBadRequest("InvalidArn", "Invalid Arn: 'Resource type not valid in this context: %s'", arn)
	}
	e, ok := s.sfn.execs[arn]
	if !ok {
		return nil, errBadRequest("ExecutionDoesNotExist", "Execution Does Not Exist: '%s'", arn)
	}
	return e, nil
}

type describeExecutionOutput struct {
	ExecutionArn    string          `json:"executionArn"`
	StateMachineArn string          `json:"stateMachineArn"`
	Name            string          `json:"name"`
	Status          ExecutionStatus `json:"status"`
	StartDate       *epochSeconds   `json:"startDate"`
	StopDate        *epochSeconds   `json:"stopDate,omitempty"`
	Input           string          `json:"input"`
	InputDetails    map[string]bool `json:"inputDetails"`
	Output          *string         `json:"output,omitempty"`
	OutputDetails   map[string]bool `json:"outputDetails,omitempty"`
	Error           *string         `json:"error,omitempty"`
	Cause           *string         `json:"cause,omitempty"`
	RedriveCount    int             `json:"redriveCount"`
	RedriveDate     *epochSeconds   `json:"redriveDate,omitempty"`
}

func (s *Server) describeExecution(body []byte) (any, *apiError) {
	var in struct {
		ExecutionArn string `json:"executionArn"`
	}
	e, unlock, aerr := s.lockedExecution(body, &in, func() string { return in.ExecutionArn })
	if aerr != nil {
		return nil, aerr
	}
	defer unlock()
	out := describeExecutionOutput{
		ExecutionArn:    e.ExecutionArn,
		StateMachineArn: e.StateMachineArn,
		Name:            e.Name,
		Status:          e.Status,
		StartDate:       ptrEpoch(e.StartDate),
		StopDate:        ptrEpoch(e.StopDate),
		Input:           e.Input,
		InputDetails:    map[string]bool{"included": true},
		RedriveCount:    e.RedriveCount,
		RedriveDate:     ptrEpoch(e.RedriveDate),
	}
	if e.Status == StatusSucceeded {
		output := e.Output
		out.Output = &output
		out.OutputDetails = map[string]bool{"included": true}
	}
	if e.Status != StatusRunning && e.Status != StatusSucceeded {
		errName, cause := e.Error, e.Cause
		out.Error, out.Cause = &errName, &cause
	}
	return out, nil
}

type listExecutionsInput struct {
	StateMachineArn string `json:"stateMachineArn"`
	StatusFilter    string `json:"statusFilter"`
	MaxResults      int    `json:"maxResults"`
	NextToken       string `json:"nextToken"`
}

type executionListItem struct {
	ExecutionArn    string          `json:"executionArn"`
	StateMachineArn string          `json:"stateMachineArn"`
	Name            string          `json:"name"`
	Status          ExecutionStatus `json:"status"`
	StartDate       *epochSeconds   `json:"startDate"`
	StopDate        *epochSeconds   `json:"stopDate,omitempty"`
}

type listExecutionsOutput struct {
	Executions []executionListItem `json:"executions"`
	NextToken  string              `json:"nextToken,omitempty"`
}

func (s *Server) listExecutions(body []byte) (any, *apiError) {
	var in listExecutionsInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.StateMachineArn == "" {
		return nil, errBadRequest("ValidationException", "Must specify a stateMachineArn (mapRunArn is not supported by awsfake)")
	}
	if _, ok := parseStateMachineARN(in.StateMachineArn); !ok {
		return nil, errBadRequest("InvalidArn", "Invalid Arn: 'Resource type not valid in this context: %s'", in.StateMachineArn)
	}
	switch ExecutionStatus(in.StatusFilter) {
	case "", StatusRunning, StatusSucceeded, StatusFailed, StatusTimedOut, StatusAborted:
	default:
		return nil, errBadRequest("ValidationException", "1 validation error detected: Value '%s' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [SUCCEEDED, TIMED_OUT, PENDING_REDRIVE, ABORTED, FAILED, RUNNING]", in.StatusFilter)
	}
	if in.MaxResults < 0 || in.MaxResults > 1000 {
		return nil, errBadRequest("ValidationException", "maxResults must be between 0 and 1000")
	}
	page := in.MaxResults
	if page == 0 {
		page = 100
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sfn.machines[in.StateMachineArn]; !ok {
		return nil, errBadRequest("StateMachineDoesNotExist", "State Machine Does Not Exist: '%s'", in.StateMachineArn)
	}
	var items []executionListItem
	// Newest first, as AWS lists them; order breaks ties between executions started in the same millisecond.
	for _, arn := range slices.Backward(s.sfn.order) {
		e := s.sfn.execs[arn]
		if e.StateMachineArn != in.StateMachineArn || (in.StatusFilter != "" && string(e.Status) != in.StatusFilter) {
			continue
		}
		items = append(items, executionListItem{
			ExecutionArn: e.ExecutionArn, StateMachineArn: e.StateMachineArn, Name: e.Name, Status: e.Status,
			StartDate: ptrEpoch(e.StartDate), StopDate: ptrEpoch(e.StopDate),
		})
	}
	slices.SortStableFunc(items, func(a, b executionListItem) int {
		return time.Time(*b.StartDate).Compare(time.Time(*a.StartDate))
	})
	start, aerr := parseToken(in.NextToken, len(items))
	if aerr != nil {
		return nil, aerr
	}
	end := min(start+page, len(items))
	out := listExecutionsOutput{Executions: items[start:end]}
	if out.Executions == nil {
		out.Executions = []executionListItem{}
	}
	if end < len(items) {
		out.NextToken = "offset-" + strconv.Itoa(end)
	}
	return out, nil
}

// parseToken reads the fake's pagination token: the offset of the next item.
func parseToken(token string, n int) (int, *apiError) {
	if token == "" {
		return 0, nil
	}
	i, err := strconv.Atoi(strings.TrimPrefix(token, "offset-"))
	if err != nil || !strings.HasPrefix(token, "offset-") || i < 0 || i > n {
		return 0, errBadRequest("InvalidToken", "Invalid Token: '%s'", token)
	}
	return i, nil
}

type getExecutionHistoryInput struct {
	ExecutionArn         string `json:"executionArn"`
	MaxResults           int    `json:"maxResults"`
	NextToken            string `json:"nextToken"`
	ReverseOrder         bool   `json:"reverseOrder"`
	IncludeExecutionData *bool  `json:"includeExecutionData"`
}

func (s *Server) getExecutionHistory(body []byte) (any, *apiError) {
	var in getExecutionHistoryInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.MaxResults < 0 || in.MaxResults > 1000 {
		return nil, errBadRequest("ValidationException", "maxResults must be between 0 and 1000")
	}
	page := in.MaxResults
	if page == 0 {
		page = 100
	}
	includeData := in.IncludeExecutionData == nil || *in.IncludeExecutionData

	s.mu.Lock()
	e, aerr := s.lookupExecution(in.ExecutionArn)
	var history []HistoryEvent
	if aerr == nil {
		history = append(history, e.history...)
	}
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	if in.ReverseOrder {
		slices.Reverse(history)
	}
	start, aerr := parseToken(in.NextToken, len(history))
	if aerr != nil {
		return nil, aerr
	}
	end := min(start+page, len(history))
	events := make([]map[string]any, 0, end-start)
	for _, ev := range history[start:end] {
		events = append(events, ev.wire(includeData))
	}
	out := map[string]any{"events": events}
	if end < len(history) {
		out["nextToken"] = "offset-" + strconv.Itoa(end)
	}
	return out, nil
}

// wire encodes the event as GetExecutionHistory returns it: the details object named for the type.
func (ev HistoryEvent) wire(includeData bool) map[string]any {
	m := map[string]any{
		"id":        ev.ID,
		"type":      ev.Type,
		"timestamp": ptrEpoch(ev.Timestamp),
	}
	if ev.PreviousID > 0 {
		m["previousEventId"] = ev.PreviousID
	}
	data := func(d map[string]any, key, value string) map[string]any {
		if includeData {
			d[key] = value
		}
		return d
	}
	errCause := map[string]any{"error": ev.Error, "cause": ev.Cause}
	switch {
	case ev.Type == "ExecutionStarted":
		m["executionStartedEventDetails"] = data(map[string]any{"inputDetails": map[string]bool{"truncated": false}}, "input", ev.Input)
	case ev.Type == "ExecutionSucceeded":
		m["executionSucceededEventDetails"] = data(map[string]any{"outputDetails": map[string]bool{"truncated": false}}, "output", ev.Output)
	case ev.Type == "ExecutionFailed":
		m["executionFailedEventDetails"] = errCause
	case ev.Type == "ExecutionAborted":
		m["executionAbortedEventDetails"] = errCause
	case ev.Type == "ExecutionTimedOut":
		m["executionTimedOutEventDetails"] = errCause
	case strings.HasSuffix(ev.Type, "StateEntered"):
		m["stateEnteredEventDetails"] = data(map[string]any{"name": ev.StateName}, "input", ev.Input)
	case strings.HasSuffix(ev.Type, "StateExited"):
		m["stateExitedEventDetails"] = data(map[string]any{"name": ev.StateName}, "output", ev.Output)
	case ev.Type == "TaskScheduled":
		m["taskScheduledEventDetails"] = map[string]any{"resource": integration(ev.Resource), "resourceType": resourceType(ev.Resource), "region": "", "parameters": ev.Input}
	case ev.Type == "TaskFailed":
		m["taskFailedEventDetails"] = map[string]any{"resource": ev.Resource, "resourceType": resourceType(ev.Resource), "error": ev.Error, "cause": ev.Cause}
	case ev.Type == "TaskSucceeded":
		m["taskSucceededEventDetails"] = data(map[string]any{"resource": ev.Resource, "resourceType": resourceType(ev.Resource)}, "output", ev.Output)
	case ev.Type == "LambdaFunctionFailed":
		m["lambdaFunctionFailedEventDetails"] = errCause
	case ev.Type == "LambdaFunctionTimedOut":
		m["lambdaFunctionTimedOutEventDetails"] = errCause
	case ev.Type == "LambdaFunctionSucceeded":
		m["lambdaFunctionSucceededEventDetails"] = data(map[string]any{}, "output", ev.Output)
	case strings.HasPrefix(ev.Type, "MapIteration"):
		m[lowerFirst(ev.Type)+"EventDetails"] = map[string]any{"name": ev.StateName, "index": ev.Index}
	}
	return m
}

// resourceType is the service part of an integration ARN (arn:aws:states:::events:putEvents -> events).
func resourceType(resource string) string {
	parts := strings.Split(resource, ":")
	if len(parts) >= 7 && parts[2] == "states" {
		return parts[5]
	}
	if len(parts) >= 3 {
		return parts[2]
	}
	return ""
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func (s *Server) stopExecution(body []byte) (any, *apiError) {
	var in struct {
		ExecutionArn string `json:"executionArn"`
		Error        string `json:"error"`
		Cause        string `json:"cause"`
	}
	e, unlock, aerr := s.lockedExecution(body, &in, func() string { return in.ExecutionArn })
	if aerr != nil {
		return nil, aerr
	}
	defer unlock()
	// Stopping a closed execution is answered with its stop date and changes nothing.
	e.abortLocked(in.Error, in.Cause)
	return map[string]any{"stopDate": ptrEpoch(e.StopDate)}, nil
}
