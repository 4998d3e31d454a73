package awsfake

import (
	"context"
	"fmt"
	"time"
)

// Redriver is a Runner that can redrive a closed execution: run it again from where it stopped,
// as Step Functions' RedriveExecution does (a Task, Pass or Wait state that failed or was running
// when the execution ended is run again with the input it received; a Map runs again only its
// unfinished iterations). history is the execution's history so far, oldest first.
type Redriver interface {
	Redrive(ctx context.Context, exec Execution, history []HistoryEvent) (output string, err *ExecError)
}

// redriveWindow is how long after its close AWS lets an execution be redriven (14 days).
const redriveWindow = 14 * 24 * time.Hour

type redriveExecutionOutput struct {
	RedriveDate *epochSeconds `json:"redriveDate"`
}

// redriveExecution is RedriveExecution: a FAILED, TIMED_OUT or ABORTED execution of a state machine
// whose runner can redrive runs again, RUNNING with its redriveCount one higher, and closes as a
// started one does. Anything else is ExecutionNotRedrivable, as AWS answers a SUCCEEDED or running
// execution. The clientToken's idempotency is not emulated: each call redrives once more.
func (s *Server) redriveExecution(body []byte) (any, *apiError) {
	var in struct {
		ExecutionArn string `json:"executionArn"`
		ClientToken  string `json:"clientToken"`
	}
	e, unlock, aerr := s.lockedExecution(body, &in, func() string { return in.ExecutionArn })
	if aerr != nil {
		return nil, aerr
	}
	defer unlock()
	switch e.Status {
	case StatusFailed, StatusTimedOut, StatusAborted:
	default:
		return nil, errBadRequest("ExecutionNotRedrivable", "Execution with status %s cannot be redriven: '%s'", e.Status, e.ExecutionArn)
	}
	if time.Since(e.StopDate) > redriveWindow {
		return nil, errBadRequest("ExecutionNotRedrivable", "Execution closed more than 14 days ago cannot be redriven: '%s'", e.ExecutionArn)
	}
	redriver, ok := s.sfn.machines[e.StateMachineArn].(Redriver)
	if !ok {
		return nil, errBadRequest("ExecutionNotRedrivable", "awsfake: the runner of %s cannot redrive", e.StateMachineArn)
	}

	history := append([]HistoryEvent(nil), e.history...)
	ctx, cancel := context.WithCancel(s.baseCtx)
	now := time.Now().UTC().Truncate(time.Millisecond)
	e.Status, e.Error, e.Cause, e.Output, e.StopDate = StatusRunning, "", "", "", time.Time{}
	e.RedriveCount++
	e.RedriveDate = now
	e.done, e.cancel = make(chan struct{}), cancel
	e.appendHistory(HistoryEvent{Type: "ExecutionRedriven", Timestamp: now})

	snapshot, arn := e.Execution, e.ExecutionArn
	s.runners.Add(1)
	go func() {
		defer s.runners.Done()
		defer cancel()
		out, eerr := redriveSafely(context.WithValue(ctx, recorderKey{}, recorder{s: s, arn: arn}), redriver, snapshot, history)
		s.finishExecution(arn, snapshot.RedriveCount, out, eerr)
	}()
	return redriveExecutionOutput{RedriveDate: ptrEpoch(now)}, nil
}

func redriveSafely(ctx context.Context, r Redriver, exec Execution, history []HistoryEvent) (out string, eerr *ExecError) {
	defer func() {
		if p := recover(); p != nil {
			eerr = &ExecError{Error: "Sandbox.RunnerPanic", Cause: fmt.Sprint(p)}
		}
	}()
	return r.Redrive(ctx, exec, history)
}
