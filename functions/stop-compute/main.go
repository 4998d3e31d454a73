// Command stop-compute is the StopCompute task of the rotation state machine.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
)

func main() {
	ctx, logger, awsCfg := wire.Start()
	task := wire.Configured(compute.FromEnv(ctx, os.LookupEnv, awsCfg))
	// A redriven execution resumes here without the locks the rescue released: take them again first.
	locks := wire.Configured(wslock.FromEnv(ctx, os.LookupEnv, awsCfg))
	lambda.Start(lambdatask.Wrap(logger, "StopCompute", wslock.Guard(locks, task.Stop)))
}
