// Command key-guard is the Lambda that raises the alarm when a KMS key a Databricks workspace
// depends on is scheduled for deletion, disabled or deleted (internal/keyguard).
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyguard"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policysnap"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

func main() {
	ctx, log, awsCfg := wire.Start()
	cfg := wire.Configured(keyguard.LoadConfig(os.LookupEnv))
	factory := wire.Configured(dbclient.FromEnv(ctx, os.LookupEnv, awsCfg))
	account := wire.Configured(factory.Account())
	h := &keyguard.Handler{
		Config:     cfg,
		KMS:        kms.NewFromConfig(awsCfg),
		Account:    account,
		Executions: sfn.NewFromConfig(awsCfg),
		Events:     eventbridge.NewFromConfig(awsCfg),
		Log:        log,
	}
	if cfg.PolicyBucket != "" {
		_, localS3 := os.LookupEnv("AWS_ENDPOINT_URL_S3")
		// A local S3 endpoint (the sandbox) has no per-bucket DNS names: address buckets by path there.
		h.Policies = &policysnap.Store{Bucket: cfg.PolicyBucket, S3: s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = localS3 })}
	}
	lambda.Start(h.Handle)
}
