package operator

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// Execution statuses as the Step Functions API spells them.
const (
	statusRunning   = "RUNNING"
	statusSucceeded = "SUCCEEDED"
)

// Snapshot is what DescribeExecution says about an execution.
type Snapshot struct {
	ExecutionArn string
	Name         string
	Status       string
	StartDate    time.Time
	StopDate     time.Time // zero while running
	Input        string
	Output       string // only once SUCCEEDED
	Error        string
	Cause        string
}

func snapshotOf(out *sfn.DescribeExecutionOutput) Snapshot {
	s := Snapshot{
		ExecutionArn: deref(out.ExecutionArn), Name: deref(out.Name), Status: string(out.Status),
		Input: deref(out.Input), Output: deref(out.Output), Error: deref(out.Error), Cause: deref(out.Cause),
	}
	if out.StartDate != nil {
		s.StartDate = out.StartDate.UTC()
	}
	if out.StopDate != nil {
		s.StopDate = out.StopDate.UTC()
	}
	return s
}

// Closed reports whether the execution has ended, whatever the way.
func (s Snapshot) Closed() bool { return s.Status != "" && s.Status != statusRunning }

// Elapsed is how long the execution ran, or has been running at now.
func (s Snapshot) Elapsed(now time.Time) time.Duration {
	end := s.StopDate
	if end.IsZero() {
		end = now
	}
	if s.StartDate.IsZero() || end.Before(s.StartDate) {
		return 0
	}
	return end.Sub(s.StartDate)
}

// Progress is an execution as an operator wants to see it: where it is, what is stopped, and how
// each workspace ended. It is built from DescribeExecution and the history alone.
type Progress struct {
	Snapshot
	WorkspaceIDs []string
	DryRun       bool
	KeyARN       string
	// Top is the innermost state open outside any Map iteration, else the last one entered.
	Top string
	// TopIsMap is set when Top is a Map state: the iterations say where the work is.
	TopIsMap bool
	// TopFailure is the last task failure outside the Map iterations while its state is still open:
	// a retry in progress.
	TopFailure *rotation.StepError
	Iterations []Iteration
	// Results are the per-workspace outcomes: from the output once SUCCEEDED, else from the last
	// state output in the history that carried them (a failed execution has no output).
	Results []Result
	// ExistingKeyConfigID is from a dry run's output: the key configuration a rotation would reuse.
	ExistingKeyConfigID string
	// WaitingUntil is when the open wait for a maintenance window or an approval ends (RFC 3339).
	WaitingUntil string

	// What followChildren needs: whether this is a request's history (not a child's), whether it
	// reached the Map that starts the children, the workspaces of that Map, whether any entered
	// the task that starts a child, and the child state machine that task's parameters name.
	request, childrenMapEntered, childTaskEntered bool
	childWorkspaces                               []workspaceLabel
	childStateMachine                             string
}

// Iteration is one Map iteration: one workspace.
type Iteration struct {
	Map           string
	Index         int
	WorkspaceID   string
	WorkspaceName string
	// State is the open state of the iteration; Last the last one it entered.
	State  string
	Last   string
	Closed bool
	Failed bool
	// Outcome is what the iteration's last state (Rotated, Unchanged, Failed, Planned) output.
	Outcome      string
	OutcomeError *rotation.StepError
	// Retrying is the last task failure of the open state, when the state has not exited since.
	Retrying *rotation.StepError
	// Run is the latest workspace run seen in a state input or output that carried an inventory.
	Run *RunView
	// ChildState and ChildRetrying are where the workspace's child execution is (the last state it
	// entered, the error of a retry in progress) while the iteration waits on it; ChildReadError
	// why the child could not be read. Filled by watch (followOpenChildren), not by Analyze.
	ChildState, ChildRetrying string
	ChildReadError            error
}

// Current is the state to show for the iteration.
func (it Iteration) Current() string {
	if it.State != "" {
		return it.State
	}
	return it.Last
}

// RunView is the part of a workspace run (rotation.WorkspaceRun) the display needs, read leniently:
// a field that does not decode is left out instead of hiding the others.
type RunView struct {
	WorkspaceID        string
	WorkspaceName      string
	QuietWindowSeconds int
	Inventory          *rotation.Inventory
	Stop               *rotation.StopResult
	StopStatus         *rotation.ComputeStatus
	Patch              *rotation.PatchResult
	WorkspaceStatus    *rotation.WorkspaceStat
	Restart            *rotation.RestartResult
	RestartStatus      *rotation.ComputeStatus
	Error              *rotation.StepError
}

// Result is one element of the execution output's results: what a Map iteration ended with.
type Result struct {
	WorkspaceID   string
	WorkspaceName string
	Outcome       string
	Error         *rotation.StepError
	// StillDown is what did not come back for ROTATED_COMPUTE_DOWN.
	StillDown []rotation.ResourceRef
	// Plan is set for a dry run.
	Plan *PlanView
}

// PlanView is the part of the Rotation Plan event detail (report.Detail) that a dry-run iteration
// outputs at results[].plan and that the plan display needs.
type PlanView struct {
	Message              string
	WouldCreateKeyConfig bool
	NewKeyConfigID       string
	QuietWindowSeconds   int
	Inventory            *rotation.Inventory
}

// Analyze builds the progress of an execution from its description and its history (oldest first).
func Analyze(s Snapshot, history []types.HistoryEvent) Progress {
	p := Progress{Snapshot: s}
	req := parseRequestLeniently(s.Input)
	p.WorkspaceIDs, p.DryRun, p.KeyARN = req.ids, req.dryRun, req.keyARN

	a := analyzer{p: &p, scope: map[int64]iterKey{}, byKey: map[iterKey]int{}, labels: map[string][]workspaceLabel{}}
	for i := range history {
		a.event(&history[i])
	}
	if !s.Closed() {
		top := a.last
		if n := len(a.open); n > 0 {
			top = a.open[n-1]
		}
		p.Top, p.TopIsMap = top.name, top.isMap
	}
	if s.Status == statusSucceeded {
		if results, key, ok := resultsOf(s.Output); ok {
			p.Results, p.ExistingKeyConfigID = results, key
		}
	}
	return p
}

// iterKey names a Map iteration; index -1 is the top level.
type iterKey struct {
	mapName string
	index   int
}

var topLevel = iterKey{index: -1}

type workspaceLabel struct{ id, name string }

type topState struct {
	name  string
	isMap bool
}

type analyzer struct {
	p *Progress
	// scope is the iteration each event belongs to, by event id.
	scope map[int64]iterKey
	byKey map[iterKey]int // index into p.Iterations
	// open lists the open top-level states, outermost first; last is the last one entered.
	open []topState
	last topState
	// labels are the Map items (plan.workspaces) seen in a Map state's input, by Map name.
	labels map[string][]workspaceLabel
}

// scopeOf follows previousEventId back to the MapIterationStarted event that opened the event's
// iteration: Step Functions chains every event of an iteration to it, whatever the interleaving of
// concurrent iterations.
func (a *analyzer) scopeOf(ev *types.HistoryEvent) iterKey {
	prev, ok := a.scope[ev.PreviousEventId]
	if !ok {
		return topLevel
	}
	return prev
}

func (a *analyzer) event(ev *types.HistoryEvent) {
	key := a.scopeOf(ev)
	// What the chain carries on from this event.
	next := key
	defer func() { a.scope[ev.Id] = next }()

	switch t := string(ev.Type); {
	case t == string(types.HistoryEventTypeMapIterationStarted) && ev.MapIterationStartedEventDetails != nil:
		d := ev.MapIterationStartedEventDetails
		next = iterKey{mapName: deref(d.Name), index: int(d.Index)}
		a.iteration(next)
	case strings.HasPrefix(t, "MapIteration"):
		d := firstNonNil(ev.MapIterationSucceededEventDetails, ev.MapIterationFailedEventDetails, ev.MapIterationAbortedEventDetails)
		if d != nil {
			it := a.iteration(iterKey{mapName: deref(d.Name), index: int(d.Index)})
			it.Closed, it.State, it.Retrying = true, "", nil
			it.Failed = t != string(types.HistoryEventTypeMapIterationSucceeded)
		}
		next = topLevel
	case t == string(types.HistoryEventTypeMapStateStarted):
		next = topLevel
	case strings.HasSuffix(t, "StateEntered") && ev.StateEnteredEventDetails != nil:
		name, input := deref(ev.StateEnteredEventDetails.Name), deref(ev.StateEnteredEventDetails.Input)
		if key == topLevel {
			st := topState{name: name, isMap: t == string(types.HistoryEventTypeMapStateEntered)}
			a.open, a.last = append(a.open, st), st
			a.p.TopFailure = nil
			a.p.WaitingUntil = waitingUntil(name, input, ev.Timestamp)
			if st.isMap {
				a.labels[name] = mapItems(input)
			}
			switch name {
			case requestStartState:
				a.p.request = true
			case childrenMap:
				a.p.childrenMapEntered, a.p.childWorkspaces = true, a.labels[name]
			}
			return
		}
		if key.mapName == childrenMap && name == childrenTask {
			a.p.childTaskEntered = true
		}
		it := a.iteration(key)
		it.State, it.Last, it.Retrying = name, name, nil
		a.see(it, input)
	case strings.HasSuffix(t, "StateExited") && ev.StateExitedEventDetails != nil:
		name, output := deref(ev.StateExitedEventDetails.Name), deref(ev.StateExitedEventDetails.Output)
		if key == topLevel {
			for i := len(a.open) - 1; i >= 0; i-- {
				if a.open[i].name == name {
					a.open = append(a.open[:i], a.open[i+1:]...)
					break
				}
			}
			a.p.TopFailure = nil
			if results, _, ok := resultsOf(output); ok {
				a.p.Results = results
			}
			return
		}
		it := a.iteration(key)
		if it.State == name {
			it.State = ""
		}
		it.Retrying = nil
		a.see(it, output)
		if m, ok := object(output); ok && field(m, "outcome", &it.Outcome) {
			decodeInto(m, "error", &it.OutcomeError)
		}
	case t == string(types.HistoryEventTypeTaskScheduled) && ev.TaskScheduledEventDetails != nil:
		if key.mapName == childrenMap && a.p.childStateMachine == "" {
			a.p.childStateMachine = childMachineOf(deref(ev.TaskScheduledEventDetails.Parameters))
		}
	default:
		if e := failureOf(ev); e != nil {
			if key == topLevel {
				a.p.TopFailure = e
			} else {
				a.iteration(key).Retrying = e
			}
		}
	}
}

func (a *analyzer) iteration(key iterKey) *Iteration {
	if i, ok := a.byKey[key]; ok {
		return &a.p.Iterations[i]
	}
	it := Iteration{Map: key.mapName, Index: key.index}
	if labels := a.labels[key.mapName]; key.index >= 0 && key.index < len(labels) {
		it.WorkspaceID, it.WorkspaceName = labels[key.index].id, labels[key.index].name
	}
	a.byKey[key] = len(a.p.Iterations)
	a.p.Iterations = append(a.p.Iterations, it)
	return &a.p.Iterations[len(a.p.Iterations)-1]
}

// see takes what a state input or output of the iteration says about its workspace.
func (a *analyzer) see(it *Iteration, doc string) {
	run, ok := parseRun(doc)
	if !ok {
		return
	}
	if run.WorkspaceID != "" {
		it.WorkspaceID = run.WorkspaceID
	}
	if run.WorkspaceName != "" {
		it.WorkspaceName = run.WorkspaceName
	}
	// Tasks only ever add keys to the run, so the latest run with an inventory is the most complete.
	if run.Inventory != nil {
		it.Run = run
	}
}

func failureOf(ev *types.HistoryEvent) *rotation.StepError {
	switch {
	case ev.TaskFailedEventDetails != nil:
		return &rotation.StepError{Error: deref(ev.TaskFailedEventDetails.Error), Cause: deref(ev.TaskFailedEventDetails.Cause)}
	case ev.TaskTimedOutEventDetails != nil:
		return &rotation.StepError{Error: deref(ev.TaskTimedOutEventDetails.Error), Cause: deref(ev.TaskTimedOutEventDetails.Cause)}
	case ev.LambdaFunctionFailedEventDetails != nil:
		return &rotation.StepError{Error: deref(ev.LambdaFunctionFailedEventDetails.Error), Cause: deref(ev.LambdaFunctionFailedEventDetails.Cause)}
	case ev.LambdaFunctionTimedOutEventDetails != nil:
		return &rotation.StepError{Error: deref(ev.LambdaFunctionTimedOutEventDetails.Error), Cause: deref(ev.LambdaFunctionTimedOutEventDetails.Cause)}
	}
	return nil
}

func firstNonNil(ds ...*types.MapIterationEventDetails) *types.MapIterationEventDetails {
	for _, d := range ds {
		if d != nil {
			return d
		}
	}
	return nil
}

// The documents below come from state inputs and outputs, which the definition shapes but an
// operator (console input) or a future definition may not: every reader tolerates what it does not
// expect, and a field that fails to decode is skipped rather than failing the display.

// object decodes a JSON object into its fields; ok is false for anything else.
func object(doc string) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc), &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// field decodes m[key] into dst and reports whether it did.
func field(m map[string]json.RawMessage, key string, dst any) bool {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return false
	}
	return json.Unmarshal(raw, dst) == nil
}

// identity reads workspace_id and workspace_name, the pair every workspace document carries.
func identity(m map[string]json.RawMessage) (id, name string) {
	if raw, ok := m["workspace_id"]; ok {
		id = rotation.IDString(raw)
	}
	field(m, "workspace_name", &name)
	return id, name
}

type requestView struct {
	ids    []string
	dryRun bool
	keyARN string
}

func parseRequestLeniently(doc string) requestView {
	var r requestView
	m, ok := object(doc)
	if !ok {
		return r
	}
	var ids []json.RawMessage
	field(m, "workspace_ids", &ids)
	for _, raw := range ids {
		if id := rotation.IDString(raw); id != "" {
			r.ids = append(r.ids, id)
		}
	}
	field(m, "dry_run", &r.dryRun)
	field(m, "key_arn", &r.keyARN)
	return r
}

func parseRun(doc string) (*RunView, bool) {
	m, ok := object(doc)
	if !ok {
		return nil, false
	}
	var ws map[string]json.RawMessage
	if !field(m, "workspace", &ws) {
		return nil, false
	}
	r := &RunView{}
	r.WorkspaceID, r.WorkspaceName = identity(ws)
	field(m, "quiet_window_seconds", &r.QuietWindowSeconds)
	decodeInto(m, "inventory", &r.Inventory)
	decodeInto(m, "stop", &r.Stop)
	decodeInto(m, "stop_status", &r.StopStatus)
	decodeInto(m, "patch", &r.Patch)
	decodeInto(m, "workspace_status", &r.WorkspaceStatus)
	decodeInto(m, "restart", &r.Restart)
	decodeInto(m, "restart_status", &r.RestartStatus)
	decodeInto(m, "error", &r.Error)
	return r, true
}

// decodeInto sets *dst to a new T decoded from m[key], or leaves it nil.
func decodeInto[T any](m map[string]json.RawMessage, key string, dst **T) {
	v := new(T)
	if field(m, key, v) {
		*dst = v
	}
}

// mapItems reads the workspaces a Map state iterates over from its input ($.plan.workspaces).
func mapItems(doc string) []workspaceLabel {
	m, ok := object(doc)
	if !ok {
		return nil
	}
	// The rotation and plan Maps read their items from $.targets (PrepareRotation, PreparePlan);
	// histories written before that read them from $.plan.workspaces.
	var plan map[string]json.RawMessage
	var items []map[string]json.RawMessage
	if !field(m, "targets", &items) && (!field(m, "plan", &plan) || !field(plan, "workspaces", &items)) {
		return nil
	}
	labels := make([]workspaceLabel, 0, len(items))
	for _, item := range items {
		id, name := identity(item)
		labels = append(labels, workspaceLabel{id: id, name: name})
	}
	return labels
}

// resultsOf reads per-workspace results from an execution output or a state output: the Map's own
// output and the final output carry them at $.results, the Summarize state at $.summary.results.
func resultsOf(doc string) (results []Result, existingKeyConfigID string, ok bool) {
	m, isObject := object(doc)
	if !isObject {
		return nil, "", false
	}
	field(m, "existing_key_config_id", &existingKeyConfigID)
	var raw []json.RawMessage
	if !field(m, "results", &raw) {
		var summary map[string]json.RawMessage
		if !field(m, "summary", &summary) || !field(summary, "results", &raw) {
			return nil, "", false
		}
	}
	for _, item := range raw {
		fields, isObject := object(string(item))
		if !isObject {
			continue
		}
		r := Result{}
		r.WorkspaceID, r.WorkspaceName = identity(fields)
		field(fields, "outcome", &r.Outcome)
		decodeInto(fields, "error", &r.Error)
		field(fields, "still_down", &r.StillDown)
		var plan map[string]json.RawMessage
		if field(fields, "plan", &plan) {
			r.Plan = &PlanView{}
			field(plan, "message", &r.Plan.Message)
			field(plan, "would_create_key_config", &r.Plan.WouldCreateKeyConfig)
			field(plan, "new_key_config_id", &r.Plan.NewKeyConfigID)
			field(plan, "quiet_window_seconds", &r.Plan.QuietWindowSeconds)
			decodeInto(plan, "inventory", &r.Plan.Inventory)
		}
		results = append(results, r)
	}
	return results, existingKeyConfigID, true
}

// errorMessage unwraps the Cause Step Functions stores for a Lambda error, itself a JSON document
// {"errorMessage", "errorType"}, into its message.
func errorMessage(cause string) string {
	trimmed := strings.TrimSpace(cause)
	if strings.HasPrefix(trimmed, "{") {
		var lambdaErr struct {
			ErrorMessage string `json:"errorMessage"`
		}
		if json.Unmarshal([]byte(trimmed), &lambdaErr) == nil && lambdaErr.ErrorMessage != "" {
			return lambdaErr.ErrorMessage
		}
	}
	return trimmed
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// waitingUntil reads, from the input of a change-control wait, when it ends: the window opening
// CheckPolicy computed, or the approval deadline (entry + the policy's approval timeout).
func waitingUntil(state, input string, entered *time.Time) string {
	var doc struct {
		Policy struct {
			WaitUntil              string `json:"wait_until"`
			ApprovalTimeoutSeconds int    `json:"approval_timeout_seconds"`
		} `json:"policy"`
	}
	if json.Unmarshal([]byte(input), &doc) != nil {
		return ""
	}
	switch {
	case state == "WaitForWindow":
		return doc.Policy.WaitUntil
	case state == "AwaitApproval" && entered != nil && doc.Policy.ApprovalTimeoutSeconds > 0:
		return entered.UTC().Add(time.Duration(doc.Policy.ApprovalTimeoutSeconds) * time.Second).Format(time.RFC3339)
	}
	return ""
}
