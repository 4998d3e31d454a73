// Command build-report is the BuildReport task: it turns the execution state into the detail of the
// event the state machine publishes.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/report"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	lambda.Start(lambdatask.Wrap(wire.Logger(), "BuildReport", report.Task{}.Handle))
}
