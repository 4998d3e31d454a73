// Package taskerr holds the typed errors that task Lambdas return to Step Functions.
//
// aws-lambda-go reports the Go type name of a returned error as the Lambda errorType, and Step
// Functions matches that name in Retry and Catch ErrorEquals. These type names are therefore a
// contract with statemachine/rotation.asl.json: renaming one is a breaking change, and
// statemachine tests pin the two together through Names().
package taskerr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/databricks/databricks-sdk-go/apierr"
)

// Each type carries a Reason that names what is wrong, written for the operator who reads the
// failed execution in the console.

// InvalidInput: the execution input or event is malformed (a field is missing, an ARN is wrong).
type InvalidInput struct{ Reason string }

// KeyNotUsable: the KMS key does not exist, is not Enabled, or is not a symmetric ENCRYPT_DECRYPT key.
type KeyNotUsable struct{ Reason string }

// KeyPolicyRejected: the key policy does not let the Databricks control plane use the key as required.
type KeyPolicyRejected struct{ Reason string }

// KeyRegionMismatch: the key lives in a different AWS region than a target workspace.
type KeyRegionMismatch struct{ Reason string }

// WorkspaceNotFound: a target workspace id is unknown to the Databricks account.
type WorkspaceNotFound struct{ Reason string }

// WorkspaceNotRunning: a target workspace is not RUNNING, so it cannot be updated safely.
type WorkspaceNotRunning struct{ Reason string }

// StorageKeyReplacementRefused: the request would replace an existing storage key, which Databricks
// does not support on a running workspace (only managed services keys can be rotated).
type StorageKeyReplacementRefused struct{ Reason string }

// RollbackRefused: a rollback request no longer applies: a workspace is not on the key configuration
// the rolled-back rotation set (a later rotation happened since), or the previous configuration no
// longer names the previous key. Refused before anything is touched.
type RollbackRefused struct{ Reason string }

// WorkspaceBusy: another execution holds the rotation lock of a workspace. The request is refused
// before anything is touched; it is not queued and not retried.
type WorkspaceBusy struct{ Reason string }

// PolicyRejected: the rotation policy (policy/rotation-policy.yaml) does not allow the request: the
// workspace, key, principal, use case or mode. The Reason names the rule. Refused before any lock.
type PolicyRejected struct{ Reason string }

// ApprovalRejected: an approver rejected the rotation, or nobody answered within the policy's
// approval timeout. Nothing was locked or stopped.
type ApprovalRejected struct{ Reason string }

// RotationSuperseded: after waiting for an approval or a window, a workspace's keys are no longer
// those of the plan: a newer rotation (an emergency) ran meanwhile, and this older request would undo
// it. Refused after the lock, before anything is stopped.
type RotationSuperseded struct{ Reason string }

// ComputeStillRunning: Databricks refused the workspace PATCH with INVALID_STATE because classic
// compute is still running. Retried by the state machine: it usually means a cluster is still terminating.
type ComputeStillRunning struct{ Reason string }

// ComputeStopTimedOut: compute did not stop within the stop budget.
type ComputeStopTimedOut struct{ Reason string }

// WorkspaceReverted: after the PATCH the workspace is RUNNING but still on its previous key
// configuration past the verification budget: Databricks silently reverted the update.
type WorkspaceReverted struct{ Reason string }

// WorkspaceUpdateTimedOut: the workspace did not come back RUNNING within the verification budget.
type WorkspaceUpdateTimedOut struct{ Reason string }

// WorkspaceFailed: the workspace went to FAILED or BANNED after the PATCH.
type WorkspaceFailed struct{ Reason string }

// DatabricksUnavailable: a transient Databricks failure (429, 5xx, network) that survived the SDK's own
// retries. Retried by the state machine with backoff and jitter.
type DatabricksUnavailable struct{ Reason string }

// AWSUnavailable: a transient AWS failure (throttling, 5xx, network). Retried by the state machine.
type AWSUnavailable struct{ Reason string }

// DatabricksRequestFailed: Databricks rejected a call in a way that retrying will not fix
// (permission denied, bad request). Not retried.
type DatabricksRequestFailed struct{ Reason string }

func (e *InvalidInput) Error() string                 { return e.Reason }
func (e *KeyNotUsable) Error() string                 { return e.Reason }
func (e *KeyPolicyRejected) Error() string            { return e.Reason }
func (e *KeyRegionMismatch) Error() string            { return e.Reason }
func (e *WorkspaceNotFound) Error() string            { return e.Reason }
func (e *WorkspaceNotRunning) Error() string          { return e.Reason }
func (e *StorageKeyReplacementRefused) Error() string { return e.Reason }
func (e *ComputeStillRunning) Error() string          { return e.Reason }
func (e *PolicyRejected) Error() string               { return e.Reason }
func (e *ApprovalRejected) Error() string             { return e.Reason }
func (e *RotationSuperseded) Error() string           { return e.Reason }
func (e *WorkspaceBusy) Error() string                { return e.Reason }
func (e *RollbackRefused) Error() string              { return e.Reason }
func (e *ComputeStopTimedOut) Error() string          { return e.Reason }
func (e *WorkspaceReverted) Error() string            { return e.Reason }
func (e *WorkspaceUpdateTimedOut) Error() string      { return e.Reason }
func (e *WorkspaceFailed) Error() string              { return e.Reason }
func (e *DatabricksUnavailable) Error() string        { return e.Reason }
func (e *AWSUnavailable) Error() string               { return e.Reason }
func (e *DatabricksRequestFailed) Error() string      { return e.Reason }

// Validation lists the errors that mean "refused before anything was touched".
var Validation = []error{
	&InvalidInput{}, &KeyNotUsable{}, &KeyPolicyRejected{}, &KeyRegionMismatch{},
	&WorkspaceNotFound{}, &WorkspaceNotRunning{}, &StorageKeyReplacementRefused{}, &WorkspaceBusy{},
	&RollbackRefused{},
	&PolicyRejected{}, &ApprovalRejected{}, &RotationSuperseded{},
}

// Transient lists the errors the state machine retries with backoff.
var Transient = []error{&DatabricksUnavailable{}, &AWSUnavailable{}}

// All lists every typed error, in a stable order.
var All = append(append(append([]error{}, Validation...), Transient...),
	&ComputeStillRunning{}, &ComputeStopTimedOut{}, &WorkspaceReverted{},
	&WorkspaceUpdateTimedOut{}, &WorkspaceFailed{}, &DatabricksRequestFailed{})

// Name is the errorType that Lambda reports (and Step Functions matches) for err.
func Name(err error) string {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// Names returns the errorType names of the given errors.
func Names(errs []error) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, Name(e))
	}
	return out
}

// AtBoundary turns any error into one of the typed errors above, so that the name Step Functions
// sees is stable. A typed error anywhere in the chain wins (its Reason gets the outer context);
// otherwise Databricks and AWS errors are classified as transient or permanent. Call it once, at the
// Lambda handler boundary: a fmt.Errorf there would rename the error to "wrapError".
func AtBoundary(err error) error {
	if err == nil {
		return nil
	}
	msg := clipReason(err.Error())
	for _, candidate := range All {
		// A **T, so that errors.As looks for exactly this type.
		target := reflect.New(reflect.TypeOf(candidate))
		if errors.As(err, target.Interface()) {
			return withReason(target.Elem().Interface().(error), msg)
		}
	}
	var apiErr *apierr.APIError
	if errors.As(err, &apiErr) {
		if isTransientDatabricks(apiErr) {
			return &DatabricksUnavailable{Reason: msg}
		}
		return &DatabricksRequestFailed{Reason: msg}
	}
	var awsErr smithy.APIError
	if errors.As(err, &awsErr) {
		if TransientAWS(err) {
			return &AWSUnavailable{Reason: msg}
		}
		return &InvalidInput{Reason: msg}
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
		return &DatabricksUnavailable{Reason: msg}
	}
	if strings.Contains(msg, "connection refused") || strings.Contains(msg, "connection reset") {
		return &DatabricksUnavailable{Reason: msg}
	}
	return &DatabricksRequestFailed{Reason: msg}
}

// MaxReason caps an error's message at the boundary. The message becomes the Cause that a Catch
// writes into the state (twice in the worst case: the step's error and the compensation's), and a
// state is limited to 256 KiB (internal/report/bounds_test.go adds the worst case up).
const MaxReason = 4 << 10

func clipReason(msg string) string {
	if len(msg) <= MaxReason {
		return msg
	}
	cut := MaxReason
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + " [clipped]"
}

func withReason(typed error, reason string) error {
	v := reflect.ValueOf(typed).Elem()
	out := reflect.New(v.Type())
	out.Elem().Set(v)
	out.Elem().FieldByName("Reason").SetString(reason)
	return out.Interface().(error)
}

func isTransientDatabricks(e *apierr.APIError) bool {
	switch {
	case errors.Is(e, apierr.ErrTooManyRequests),
		errors.Is(e, apierr.ErrTemporarilyUnavailable),
		errors.Is(e, apierr.ErrInternalError),
		errors.Is(e, apierr.ErrDeadlineExceeded):
		return true
	}
	return e.StatusCode >= 500
}

// TransientAWS reports whether an AWS SDK call failure is worth retrying: throttling, a server-side
// fault or HTTP 5xx, a network failure or a deadline. Anything else (access denied, not found,
// validation) will fail the same way again.
func TransientAWS(err error) bool {
	if err == nil {
		return false
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if transientCode(apiErr.ErrorCode()) || apiErr.ErrorFault() == smithy.FaultServer {
			return true
		}
		var respErr *smithyhttp.ResponseError
		return errors.As(err, &respErr) && respErr.HTTPStatusCode() >= 500
	}
	var netErr net.Error
	var sendErr *smithyhttp.RequestSendError
	var respErr *smithyhttp.ResponseError
	switch {
	case errors.As(err, &netErr), errors.As(err, &sendErr), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &respErr):
		return respErr.HTTPStatusCode() >= 500
	}
	return false
}

// transientCode lists the AWS error codes that mean "try again later".
func transientCode(code string) bool {
	switch code {
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
		"RequestThrottled", "RequestThrottledException", "SlowDown", "LimitExceededException",
		"KMSInternalException", "DependencyTimeoutException", "InternalServerError", "InternalFailure",
		"InternalException", "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout",
		"RequestTimeoutException", "EC2ThrottledException", "PriorRequestNotComplete":
		return true
	}
	return false
}

// Errorf builds a typed error with a formatted reason, e.g. Errorf[KeyNotUsable]("key %s is %s", arn, state).
func Errorf[T any, P interface {
	*T
	error
}](format string, args ...any) error {
	p := P(new(T))
	reflect.ValueOf(p).Elem().FieldByName("Reason").SetString(fmt.Sprintf(format, args...))
	return p
}
