package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
)

// State names of statemachine/rotation.asl.json that the children view relies on; a test holds
// them to the definition.
const (
	// requestStartState is the request's StartAt: a history that entered it is a request's, not a
	// child's (workspace-rotation.asl.json has no such state).
	requestStartState = "CheckPolicy"
	// childrenMap starts one child execution per workspace from its RotateWorkspace task.
	childrenMap   = "RotateWorkspaces"
	childrenTask  = "RotateWorkspace"
	envChildState = "ROTATOR_WORKSPACE_STATE_MACHINE_ARN"
)

// Child statuses besides the Step Functions ones.
const (
	childNotStarted = "not started"
	childUnreadable = "unreadable"
)

// Child is one workspace of a request and the child execution that rotates it.
type Child struct {
	WorkspaceID, WorkspaceName string
	// Name is the child execution's name, derived as the request's RotateWorkspace state derives it.
	Name string
	// Status is the child's execution status, "not started" while the Map has not reached the
	// workspace (MaxConcurrency), or "unreadable" when reading it failed (ReadError says why).
	Status string
	// State is the last state entered in the child's history; Retrying the error name of a task
	// failure of that state since it was entered, while the child runs.
	State    string
	Retrying string
	// Outcome, Patched and OutcomeError are the child's output once it SUCCEEDED.
	Outcome      string
	Patched      *bool
	OutcomeError string
	// Error is how a FAILED, TIMED_OUT or ABORTED child ended (DescribeExecution).
	Error     string
	ReadError error
}

// Children is what status shows of a request's child executions: the rows, or why there are none.
type Children struct {
	// StateMachine is the workspace-rotation state machine the children were looked up in.
	StateMachine string
	// None says why there is no row: no child can have been started yet, or none can be read.
	None string
	Rows []Child
}

// childReads bounds how many children are read at once: enough that 100 workspaces take a few
// round trips' time, well inside the DescribeExecution and GetExecutionHistory token buckets.
const childReads = 8

// historyPagesPerChild bounds the history read for a child's current state. Newest first, the last
// state entered is at most one retry chain away (the child's largest Retry totals 14 attempts of
// three events each), so one page of 100 nearly always holds it.
const historyPagesPerChild = 3

// followChildren reads the child execution of every workspace in the request's plan: one
// DescribeExecution each (an unknown execution is a child not started yet), and for a started one
// its history newest first until the last state entered. explicitMachine is the workspace-rotation
// state machine to use when the request's history does not name it.
func followChildren(ctx context.Context, api WatchAPI, p Progress, explicitMachine string) Children {
	switch {
	case !p.request:
		return Children{}
	case !p.childrenMapEntered:
		return Children{None: noChildrenYet(p)}
	case len(p.childWorkspaces) == 0:
		return Children{None: "none: the plan has no workspace to rotate"}
	}
	machine := firstNonEmpty(p.childStateMachine, explicitMachine)
	if machine == "" && p.childTaskEntered {
		return Children{None: fmt.Sprintf("not read: the history names no workspace-rotation state machine (no %s task parameters); give --workspace-state-machine or set %s", childrenTask, envChildState)}
	}
	rows := make([]Child, len(p.childWorkspaces))
	for i, ws := range p.childWorkspaces {
		rows[i] = Child{WorkspaceID: ws.id, WorkspaceName: ws.name, Name: rescue.ChildName(p.Name, ws.id), Status: childNotStarted}
	}
	// Without a machine no RotateWorkspace task was entered: every child is still to be started.
	if machine != "" {
		readChildren(len(rows), func(i int) { readChild(ctx, api, machine, &rows[i]) })
	}
	slices.SortStableFunc(rows, func(a, b Child) int { return strings.Compare(a.WorkspaceID, b.WorkspaceID) })
	return Children{StateMachine: machine, Rows: rows}
}

// followOpenChildren fills, for each open iteration of a request's RotateWorkspaces Map, where its
// child execution is: watch then shows each running workspace's phase (stopping compute, updating
// the workspace, restarting), where the request's own history only says that a child runs. It
// costs one history page per running child and poll (the Map runs at most MaxConcurrentWorkspaces
// children at once); finished and not yet started workspaces cost nothing, the request's history
// already tells them. A child the Map has scheduled but not started yet keeps the request's line.
func followOpenChildren(ctx context.Context, api HistoryAPI, p *Progress, explicitMachine string) {
	machine := firstNonEmpty(p.childStateMachine, explicitMachine)
	if !p.request || machine == "" {
		return
	}
	var open []*Iteration
	for i := range p.Iterations {
		if it := &p.Iterations[i]; it.Map == childrenMap && !it.Closed && it.WorkspaceID != "" && it.Current() == childrenTask {
			open = append(open, it)
		}
	}
	readChildren(len(open), func(i int) {
		it := open[i]
		c := Child{Name: rescue.ChildName(p.Name, it.WorkspaceID), Status: statusRunning}
		arn, err := executionARN(c.Name, machine)
		if err == nil {
			err = lastStateEntered(ctx, api, arn, &c)
		}
		var notFound *types.ExecutionDoesNotExist
		switch {
		case errors.As(err, &notFound):
		case err != nil:
			it.ChildReadError = err
		default:
			it.ChildState, it.ChildRetrying = c.State, c.Retrying
		}
	})
}

// readChildren calls read(0) … read(n-1), at most childReads at once, and returns when all have.
func readChildren(n int, read func(i int)) {
	sem := make(chan struct{}, childReads)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			read(i)
		})
	}
	wg.Wait()
}

func noChildrenYet(p Progress) string {
	switch {
	case p.DryRun:
		return "none: a dry run starts no child execution"
	case p.Closed():
		return "none: the request ended before " + childrenMap
	case p.Top == "":
		return "none yet"
	}
	where := p.Top
	if ph := phaseOf(p.Top); ph != "" {
		where += " (" + ph + ")"
	}
	return "none yet: the request is at " + where
}

// readChild fills c from the child's description and the tail of its history.
func readChild(ctx context.Context, api WatchAPI, machine string, c *Child) {
	arn, err := executionARN(c.Name, machine)
	if err != nil {
		c.Status, c.ReadError = childUnreadable, err
		return
	}
	out, err := api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)}, inRegionOf(arn))
	if err != nil {
		var notFound *types.ExecutionDoesNotExist
		if errors.As(err, &notFound) {
			return // still "not started": the Map has not reached this workspace
		}
		c.Status, c.ReadError = childUnreadable, fmt.Errorf("describe %s: %w", arn, err)
		return
	}
	s := snapshotOf(out)
	c.Status = s.Status
	if s.Status == statusSucceeded {
		if m, ok := object(s.Output); ok {
			field(m, "outcome", &c.Outcome)
			var patched bool
			if field(m, "patched", &patched) {
				c.Patched = &patched
			}
			var stepErr struct{ Error string }
			if field(m, "error", &stepErr) {
				c.OutcomeError = stepErr.Error
			}
		}
	} else if s.Closed() {
		c.Error = s.Error
	}
	if err := lastStateEntered(ctx, api, arn, c); err != nil {
		c.ReadError = err
	}
}

// lastStateEntered reads the child's history newest first, without the state documents (the
// names are all status needs), until the last state entered.
func lastStateEntered(ctx context.Context, api HistoryAPI, arn string, c *Child) error {
	var token *string
	exited := false
	for range historyPagesPerChild {
		out, err := api.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{
			ExecutionArn: aws.String(arn), ReverseOrder: true, MaxResults: 100, NextToken: token,
			IncludeExecutionData: aws.Bool(false),
		}, inRegionOf(arn))
		if err != nil {
			return fmt.Errorf("read history of %s: %w", arn, err)
		}
		for i := range out.Events {
			ev := &out.Events[i]
			switch {
			case ev.StateEnteredEventDetails != nil:
				c.State = deref(ev.StateEnteredEventDetails.Name)
				return nil
			case ev.StateExitedEventDetails != nil:
				exited = true
			case !exited && c.Retrying == "" && c.Status == statusRunning:
				// A failure after the last entry and before any exit is the open state's retry.
				if e := failureOf(ev); e != nil {
					c.Retrying = e.Error
				}
			}
		}
		if out.NextToken == nil {
			return nil
		}
		token = out.NextToken
	}
	return nil
}

// childMachineOf reads the StateMachineArn of a RotateWorkspace task's parameters (the
// TaskScheduled event of a states:startExecution integration carries them, resolved).
func childMachineOf(parameters string) string {
	var params struct {
		StateMachineArn string `json:"StateMachineArn"`
	}
	if json.Unmarshal([]byte(parameters), &params) != nil {
		return ""
	}
	if _, err := stateMachineARN(params.StateMachineArn); err != nil {
		return ""
	}
	return params.StateMachineArn
}

// childReadError is the status command's error when some children could not be read: the table
// is printed regardless, with those rows marked unreadable.
func childReadError(c Children) error {
	var errs []error
	for _, r := range c.Rows {
		if r.ReadError != nil {
			errs = append(errs, r.ReadError)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d child executions could not be read; first: %w", len(errs), len(c.Rows), errs[0])
}

// errorCode is an AWS error's code (AccessDeniedException, ThrottlingException), short enough for a
// table cell; the full error goes to stderr.
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return "error"
}
