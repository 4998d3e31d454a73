// Package lambdatask is the boundary between a task's Go logic and the Lambda runtime: it logs each
// invocation with the request id and turns every returned error into a typed task error, whose Go
// type name becomes the errorType that Step Functions matches.
package lambdatask

import (
	"context"
	"log/slog"
	"time"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// Wrap returns fn with logging and error typing applied at the boundary.
func Wrap[In, Out any](logger *slog.Logger, task string, fn func(context.Context, In) (Out, error)) func(context.Context, In) (Out, error) {
	return func(ctx context.Context, in In) (Out, error) {
		started := time.Now()
		out, err := fn(ctx, in)
		if err != nil {
			typed := taskerr.AtBoundary(err)
			logger.ErrorContext(ctx, "task failed", "task", task, "error_type", taskerr.Name(typed),
				"error", typed.Error(), "duration_ms", time.Since(started).Milliseconds())
			var zero Out
			return zero, typed
		}
		logger.InfoContext(ctx, "task done", "task", task, "duration_ms", time.Since(started).Milliseconds())
		return out, nil
	}
}
