// Command validate is the Validate task of the rotation state machine.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/validate"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	ctx, logger, awsCfg := wire.Start()
	task := wire.Configured(validate.FromEnv(ctx, os.LookupEnv, awsCfg))
	lambda.Start(lambdatask.Wrap(logger, "Validate", task.Handle))
}
