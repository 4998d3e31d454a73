package rescue

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventskip"
)

// What Step Functions puts in the envelope of an execution status change. It sends these events
// to the default bus only.
const (
	SourceStates           = "aws.states"
	DetailTypeStatusChange = "Step Functions Execution Status Change"
)

// Execution statuses as Step Functions spells them.
const (
	StatusRunning        = "RUNNING"
	StatusSucceeded      = "SUCCEEDED"
	StatusFailed         = "FAILED"
	StatusTimedOut       = "TIMED_OUT"
	StatusAborted        = "ABORTED"
	StatusPendingRedrive = "PENDING_REDRIVE"
)

// StatusChange is what the rescue reads from one status change event.
type StatusChange struct {
	// EventID is the EventBridge event id (the same on a redelivery).
	EventID         string
	ExecutionARN    string
	StateMachineARN string
	// Name is the execution name: the owner of the execution's workspace locks.
	Name   string
	Status string
	// Input is the execution input, when the event carries it: Step Functions leaves it out when
	// input and output together pass 248 KB (inputDetails.included false).
	Input string
	// Error and Cause are the execution's, when it has them (an ABORTED execution stopped without
	// an error and a cause has neither).
	Error, Cause string
	StartDate    time.Time
	StopDate     time.Time
	RedriveCount int
}

// Skip is an event the rescue does not act on: another state machine's execution, a status that
// needs no rescue, or an event it cannot read (Malformed).
type Skip = eventskip.Skip

var (
	skip      = eventskip.New
	malformed = eventskip.Malformed
)

// statusChangeDetail is the event's detail. startDate and stopDate are epoch milliseconds; input,
// output, error and cause are null when absent.
type statusChangeDetail struct {
	ExecutionARN    string  `json:"executionArn"`
	StateMachineARN string  `json:"stateMachineArn"`
	Name            string  `json:"name"`
	Status          string  `json:"status"`
	StartDate       *int64  `json:"startDate"`
	StopDate        *int64  `json:"stopDate"`
	Input           *string `json:"input"`
	Error           *string `json:"error"`
	Cause           *string `json:"cause"`
	RedriveCount    *int    `json:"redriveCount"`
}

// maxQuoted bounds how much of an untrusted event value a reason quotes.
const maxQuoted = 200

// ParseEvent reads the status change of an execution of stateMachineARN. It calls nothing. Every
// error it returns is a *Skip that says why the event is not acted on.
func ParseEvent(ev events.CloudWatchEvent, stateMachineARN string) (StatusChange, error) {
	sc := StatusChange{EventID: ev.ID}
	// The rule matches source, detail-type and state machine: anything else reaching the function
	// is a wiring mistake or a test, and is reported as malformed so that it shows at WARN.
	if ev.Source != SourceStates {
		return sc, malformed("source %s is not %s", quote(ev.Source), SourceStates)
	}
	if ev.DetailType != DetailTypeStatusChange {
		return sc, malformed("detail-type %s is not %q", quote(ev.DetailType), DetailTypeStatusChange)
	}
	var d statusChangeDetail
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		return sc, malformed("malformed status change detail: %v", err)
	}
	sc.ExecutionARN, sc.StateMachineARN, sc.Name, sc.Status = d.ExecutionARN, d.StateMachineARN, d.Name, d.Status
	if sc.StateMachineARN == "" || sc.ExecutionARN == "" || sc.Status == "" {
		return sc, malformed("the status change names no executionArn, stateMachineArn or status")
	}
	if sc.StateMachineARN != stateMachineARN {
		return sc, skip("execution of state machine %s, not of the rotation state machine", quote(sc.StateMachineARN))
	}
	switch sc.Status {
	case StatusFailed, StatusTimedOut, StatusAborted:
	case StatusRunning, StatusSucceeded, StatusPendingRedrive:
		return sc, skip("status %s needs no rescue: the execution is running or ended through its own reporting", sc.Status)
	default:
		return sc, malformed("status %s is not a Step Functions execution status", quote(sc.Status))
	}
	name, ok := strings.CutPrefix(sc.ExecutionARN, executionPrefix(stateMachineARN))
	if !ok || name == "" || strings.Contains(name, ":") {
		return sc, malformed("executionArn %s is not an execution of %s", quote(sc.ExecutionARN), stateMachineARN)
	}
	if sc.Name == "" {
		sc.Name = name
	}
	if sc.Name != name {
		return sc, malformed("name %s does not match executionArn %s", quote(sc.Name), quote(sc.ExecutionARN))
	}
	sc.Input, sc.Error, sc.Cause = deref(d.Input), deref(d.Error), deref(d.Cause)
	if d.StartDate != nil {
		sc.StartDate = time.UnixMilli(*d.StartDate).UTC()
	}
	if d.StopDate != nil {
		sc.StopDate = time.UnixMilli(*d.StopDate).UTC()
	}
	if d.RedriveCount != nil {
		sc.RedriveCount = *d.RedriveCount
	}
	return sc, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// quote keeps control characters and length of untrusted values out of logs.
func quote(s string) string {
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "..."
	}
	return strconv.Quote(s)
}

// executionPrefix is what the ARN of every execution of stateMachineARN starts with: an execution
// ARN is arn:<partition>:states:<region>:<account>:execution:<state machine>:<name>.
func executionPrefix(stateMachineARN string) string {
	return strings.Replace(stateMachineARN, ":stateMachine:", ":execution:", 1) + ":"
}
