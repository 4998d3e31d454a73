// Command key-config-hygiene is the KeyConfigHygiene task of the retirement reminder state machine.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/hygiene"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	ctx, logger, awsCfg := wire.Start()
	task := wire.Configured(hygiene.FromEnv(ctx, os.LookupEnv, awsCfg))
	lambda.Start(lambdatask.Wrap(logger, "KeyConfigHygiene", task.Handle))
}
