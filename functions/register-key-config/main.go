// Command register-key-config is the RegisterKeyConfig task of the rotation state machine.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyconfig"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	ctx, logger, awsCfg := wire.Start()
	task := wire.Configured(keyconfig.FromEnv(ctx, os.LookupEnv, awsCfg))
	lambda.Start(lambdatask.Wrap(logger, "RegisterKeyConfig", task.Handle))
}
