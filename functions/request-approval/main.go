// Command request-approval is invoked by the AwaitApproval state (lambda:invoke.waitForTaskToken):
// it publishes Rotation Awaiting Approval with the plan; the execution then waits for the answer.
package main

import (
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/approval"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	_, logger, awsCfg := wire.Start()
	bus := wire.Configured(wire.Require(os.LookupEnv, "EVENT_BUS_NAME"))
	task := approval.Task{Events: eventbridge.NewFromConfig(awsCfg), EventBusName: bus, Now: time.Now, Log: logger}
	lambda.Start(lambdatask.Wrap(logger, "RequestApproval", task.Handle))
}
