// Command register-key-config is the RegisterKeyConfig task of the rotation state machine.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/acme/databricks-cmk-rotator/internal/lambdatask"
	"github.com/acme/databricks-cmk-rotator/internal/wire"
)

func main() {
	logger := wire.Logger()
	task, err := wire.RegisterTask(context.Background(), os.LookupEnv)
	if err != nil {
		logger.Error("cannot start: configuration", "error", err)
		os.Exit(1)
	}
	lambda.Start(lambdatask.Wrap(logger, "RegisterKeyConfig", task.Handle))
}
