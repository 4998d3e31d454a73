// Command key-config-hygiene is the KeyConfigHygiene task of the retirement reminder state machine.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/acme/databricks-cmk-rotator/internal/hygiene"
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
	task, err := hygiene.FromEnv(ctx, os.LookupEnv, awsCfg)
	if err != nil {
		logger.Error("cannot start: configuration", "error", err)
		os.Exit(1)
	}
	lambda.Start(lambdatask.Wrap(logger, "KeyConfigHygiene", task.Handle))
}
