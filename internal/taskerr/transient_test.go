package taskerr

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"
)

func TestTransientAWSKnowsWhatIsWorthRetrying(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil is not a failure", nil, false},
		{"throttling", &smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}, true},
		{"a server fault with an unknown code", &smithy.GenericAPIError{Code: "Boom", Fault: smithy.FaultServer}, true},
		{"a KMS internal exception", &types.KMSInternalException{}, true},
		{"throttling behind the SDK's retry wrapper", &retry.MaxAttemptsError{Attempt: 3, Err: &smithy.GenericAPIError{Code: "ThrottlingException"}}, true},
		{"a refused connection", &smithyhttp.RequestSendError{Err: errors.New("dial tcp: connection refused")}, true},
		{"a net.Error", &net.OpError{Op: "read", Err: errors.New("reset")}, true},
		{"a deadline", context.DeadlineExceeded, true},
		{"access denied", &smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient}, false},
		{"not found", &types.NotFoundException{}, false},
		{"an execution that already exists", &smithy.GenericAPIError{Code: "ExecutionAlreadyExists", Fault: smithy.FaultClient}, false},
		{"a plain error", errors.New("something else"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, TransientAWS(tt.err))
		})
	}
}

func TestAtBoundaryUsesTheSameAWSClassification(t *testing.T) {
	// S3 asks clients to slow down with SlowDown: worth a retry, not an input error.
	got := AtBoundary(&smithy.GenericAPIError{Code: "SlowDown", Fault: smithy.FaultClient})
	assert.Equal(t, "AWSUnavailable", Name(got))
	got = AtBoundary(&smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient})
	assert.Equal(t, "InvalidInput", Name(got))
}
