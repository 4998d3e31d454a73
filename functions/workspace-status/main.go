// Command workspace-status is the WorkspaceStatus task of the rotation state machine.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wsupdate"
)

func main() {
	ctx, logger, awsCfg := wire.Start()
	task := wire.Configured(wsupdate.FromEnv(ctx, os.LookupEnv, awsCfg))
	lambda.Start(lambdatask.Wrap(logger, "WorkspaceStatus", task.Check))
}
