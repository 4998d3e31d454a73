// Command request-approval is invoked by the AwaitApproval state (lambda:invoke.waitForTaskToken):
// it publishes Rotation Awaiting Approval with the plan; the execution then waits for the answer.
package main

import (
	"context"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/acme/databricks-cmk-rotator/internal/approval"
	"github.com/acme/databricks-cmk-rotator/internal/lambdatask"
	"github.com/acme/databricks-cmk-rotator/internal/wire"
)

func main() {
	logger := wire.Logger()
	awsCfg, err := wire.AWS(context.Background())
	if err != nil {
		logger.Error("cannot start: AWS configuration", "error", err)
		os.Exit(1)
	}
	bus := os.Getenv("EVENT_BUS_NAME")
	if bus == "" {
		logger.Error("cannot start: EVENT_BUS_NAME is required")
		os.Exit(1)
	}
	task := approval.Task{Events: eventbridge.NewFromConfig(awsCfg), EventBusName: bus, Now: time.Now, Log: logger}
	lambda.Start(lambdatask.Wrap(logger, "RequestApproval", task.Handle))
}
