// Command key-age-check runs on a schedule and publishes Key Age Exceeded for every key a workspace
// has used for longer than MAX_KEY_AGE_DAYS.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/acme/databricks-cmk-rotator/internal/keyage"
	"github.com/acme/databricks-cmk-rotator/internal/lambdatask"
	"github.com/acme/databricks-cmk-rotator/internal/wire"
)

func main() {
	logger := wire.Logger()
	ctx := context.Background()
	awsCfg, err := wire.AWS(ctx)
	if err != nil {
		logger.Error("cannot start: AWS configuration", "error", err)
		os.Exit(1)
	}
	check, err := keyage.CheckFromEnv(ctx, os.LookupEnv, awsCfg)
	if err != nil {
		logger.Error("cannot start: configuration", "error", err)
		os.Exit(1)
	}
	lambda.Start(lambdatask.Wrap(logger, "KeyAgeCheck", check.Handle))
}
