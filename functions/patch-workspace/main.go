// Command patch-workspace is the PatchWorkspace task of the rotation state machine.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/acme/databricks-cmk-rotator/internal/lambdatask"
	"github.com/acme/databricks-cmk-rotator/internal/wire"
	"github.com/acme/databricks-cmk-rotator/internal/wslock"
	"github.com/acme/databricks-cmk-rotator/internal/wsupdate"
)

func main() {
	logger := wire.Logger()
	ctx := context.Background()
	awsCfg, err := wire.AWS(ctx)
	if err != nil {
		logger.Error("cannot start: AWS configuration", "error", err)
		os.Exit(1)
	}
	task, err := wsupdate.FromEnv(ctx, os.LookupEnv, awsCfg)
	if err != nil {
		logger.Error("cannot start: configuration", "error", err)
		os.Exit(1)
	}
	// A redriven execution resumes here without the locks the rescue released: take them again first.
	locks, err := wslock.FromEnv(ctx, os.LookupEnv, awsCfg)
	if err != nil {
		logger.Error("cannot start: configuration", "error", err)
		os.Exit(1)
	}
	lambda.Start(lambdatask.Wrap(logger, "PatchWorkspace", wslock.Guard(locks, task.Patch)))
}
