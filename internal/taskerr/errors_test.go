package taskerr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/stretchr/testify/assert"
)

func TestAtBoundaryGivesEveryErrorAStableTypeName(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"a typed error keeps its type", &KeyNotUsable{Reason: "disabled"}, "KeyNotUsable"},
		{"a wrapped typed error keeps its type and gains context", fmt.Errorf("validating: %w", &WorkspaceNotFound{Reason: "no 42"}), "WorkspaceNotFound"},
		{"a Databricks 429 is transient", &apierr.APIError{StatusCode: 429, ErrorCode: "REQUEST_LIMIT_EXCEEDED"}, "DatabricksUnavailable"},
		{"a Databricks 503 is transient", &apierr.APIError{StatusCode: 503}, "DatabricksUnavailable"},
		{"a Databricks 500 is transient", fmt.Errorf("patch: %w", &apierr.APIError{StatusCode: 500, ErrorCode: "INTERNAL_ERROR"}), "DatabricksUnavailable"},
		{"a Databricks 403 is permanent", &apierr.APIError{StatusCode: 403, ErrorCode: "PERMISSION_DENIED"}, "DatabricksRequestFailed"},
		{"AWS throttling is transient", &smithy.GenericAPIError{Code: "ThrottlingException"}, "AWSUnavailable"},
		{"an AWS server fault is transient", &smithy.GenericAPIError{Code: "Whatever", Fault: smithy.FaultServer}, "AWSUnavailable"},
		{"a deadline is transient", fmt.Errorf("call: %w", context.DeadlineExceeded), "DatabricksUnavailable"},
		{"anything else is a permanent request failure", errors.New("surprise"), "DatabricksRequestFailed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := AtBoundary(tc.err)
			assert.Equal(t, tc.want, Name(got))
			assert.Equal(t, tc.err.Error(), got.Error(), "the reason keeps the whole message")
		})
	}
}

func TestTypedErrorsAreNotAliasedByAnInterfaceMatch(t *testing.T) {
	got := AtBoundary(fmt.Errorf("outer: %w", &ComputeStillRunning{Reason: "INVALID_STATE"}))
	_, ok := got.(*ComputeStillRunning)
	assert.True(t, ok, "got %T", got)
}

func TestErrorfBuildsTheNamedType(t *testing.T) {
	err := Errorf[KeyRegionMismatch]("key in %s", "eu-west-1")
	assert.Equal(t, "KeyRegionMismatch", Name(err))
	assert.Equal(t, "key in eu-west-1", err.Error())
}

func TestEveryErrorNameIsUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range Names(All) {
		assert.False(t, seen[n], n)
		seen[n] = true
	}
}

// An error message becomes a Cause in the state: the boundary keeps it within MaxReason, whatever
// Databricks or a library put in it, and keeps the type that the ASL matches.
func TestAnOversizedMessageIsClippedAtTheBoundaryKeepingItsType(t *testing.T) {
	err := AtBoundary(&ComputeStillRunning{Reason: strings.Repeat("é", MaxReason)})
	var typed *ComputeStillRunning
	if !errors.As(err, &typed) {
		t.Fatalf("AtBoundary changed the type: %T", err)
	}
	if n := len(err.Error()); n > MaxReason+len(" [clipped]") {
		t.Fatalf("message is %d bytes, want at most %d", n, MaxReason+len(" [clipped]"))
	}
	if !strings.HasSuffix(err.Error(), "[clipped]") {
		t.Fatalf("a clipped message says so: %q", err.Error()[len(err.Error())-40:])
	}
}
