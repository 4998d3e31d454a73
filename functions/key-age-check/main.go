// Command key-age-check runs on a schedule and publishes Key Age Exceeded for every key a workspace
// has used for longer than MAX_KEY_AGE_DAYS.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyage"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	ctx, logger, awsCfg := wire.Start()
	check := wire.Configured(keyage.CheckFromEnv(ctx, os.LookupEnv, awsCfg))
	lambda.Start(lambdatask.Wrap(logger, "KeyAgeCheck", check.Handle))
}
