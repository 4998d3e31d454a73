// Command trigger is the Lambda that turns KMS events into rotation executions (internal/trigger).
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	_, log, awsCfg := wire.Start()
	cfg := wire.Configured(trigger.LoadConfig(os.LookupEnv))
	pol := wire.Configured(policy.Load(os.LookupEnv))
	h := &trigger.Handler{
		Config: cfg,
		SFN:    sfn.NewFromConfig(awsCfg),
		KMS:    kms.NewFromConfig(awsCfg),
		Events: eventbridge.NewFromConfig(awsCfg),
		Policy: pol,
		Log:    log,
	}
	lambda.Start(h.Handle)
}
