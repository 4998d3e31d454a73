// Command unlock-workspaces is the UnlockWorkspaces task of the rotation state machine.
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
	lambda.Start(lambdatask.Wrap(logger, "UnlockWorkspaces", task.Release))
}
