package operator

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
)

// Each command declares the slice of Step Functions it calls; *sfn.Client satisfies all of them and
// the tests hand the commands a real client pointed at awsfake.

// StartAPI starts executions (start, plan).
type StartAPI interface {
	StartExecution(ctx context.Context, params *sfn.StartExecutionInput, optFns ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
}

// DescribeAPI reads one execution: status, input, output, error.
type DescribeAPI interface {
	DescribeExecution(ctx context.Context, params *sfn.DescribeExecutionInput, optFns ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

// HistoryAPI reads an execution's event history.
type HistoryAPI interface {
	GetExecutionHistory(ctx context.Context, params *sfn.GetExecutionHistoryInput, optFns ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error)
}

// ListAPI lists a state machine's executions.
type ListAPI interface {
	ListExecutions(ctx context.Context, params *sfn.ListExecutionsInput, optFns ...func(*sfn.Options)) (*sfn.ListExecutionsOutput, error)
}

// WatchAPI is what following an execution needs: its status and its history.
type WatchAPI interface {
	DescribeAPI
	HistoryAPI
}

// ListingAPI is what list needs: the executions, then each one's input and output.
type ListingAPI interface {
	ListAPI
	DescribeAPI
	HistoryAPI
}

var (
	_ StartAPI   = (*sfn.Client)(nil)
	_ WatchAPI   = (*sfn.Client)(nil)
	_ ListingAPI = (*sfn.Client)(nil)
)
