// Command lock-workspaces is the LockWorkspaces task: one rotation per workspace at a time (internal/wslock).
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
)

func main() {
	ctx, logger, awsCfg := wire.Start()
	task := wire.Configured(wslock.FromEnv(ctx, os.LookupEnv, awsCfg))
	lambda.Start(lambdatask.Wrap(logger, "LockWorkspaces", task.Acquire))
}
