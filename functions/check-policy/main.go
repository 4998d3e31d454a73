// Command check-policy is the CheckPolicy task, the rotation state machine's first step: the
// rotation policy's workspace, key, use-case and mode rules for every start (console, cmkrotate,
// trigger), and when the maintenance window lets the rotation begin. It reads nothing but its input.
package main

import (
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/lambdatask"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	logger := wire.Logger()
	pol := wire.Configured(policy.Load(os.LookupEnv))
	lambda.Start(lambdatask.Wrap(logger, "CheckPolicy", policy.Task{Policy: pol, Now: time.Now}.Handle))
}
