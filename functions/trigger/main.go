// Command trigger is the Lambda that turns KMS events into rotation executions (internal/trigger).
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/acme/databricks-cmk-rotator/internal/policy"
	"github.com/acme/databricks-cmk-rotator/internal/trigger"
)

func main() {
	// JSON when the function's LoggingConfig.LogFormat is JSON (AWS_LAMBDA_LOG_FORMAT); every
	// record logged with the invocation's context carries its requestId.
	log := lambdacontext.NewLogger()
	cfg, err := trigger.LoadConfig(os.LookupEnv)
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	pol, err := policy.Load(os.LookupEnv)
	if err != nil {
		log.Error("invalid rotation policy", "error", err.Error())
		os.Exit(1)
	}
	// Honours AWS_ENDPOINT_URL_SFN, _KMS and _EVENTBRIDGE, which point the sandbox at local endpoints.
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Error("loading AWS configuration failed", "error", err.Error())
		os.Exit(1)
	}
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
