// Command unlock-workspaces is the UnlockWorkspaces task: one rotation per workspace at a time (see internal/wslock).
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/acme/databricks-cmk-rotator/internal/lambdatask"
	"github.com/acme/databricks-cmk-rotator/internal/wire"
)

func main() {
	logger := wire.Logger()
	locks, err := wire.LockTasks(context.Background(), os.LookupEnv)
	if err != nil {
		logger.Error("cannot start: configuration", "error", err)
		os.Exit(1)
	}
	lambda.Start(lambdatask.Wrap(logger, "UnlockWorkspaces", locks.Release))
}
