// Command rescue is the Lambda that reports and unlocks what a rotation execution left behind when
// it was aborted, timed out or failed outside every Catch (internal/rescue).
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/acme/databricks-cmk-rotator/internal/invstore"
	"github.com/acme/databricks-cmk-rotator/internal/rescue"
	"github.com/acme/databricks-cmk-rotator/internal/wire"
	"github.com/acme/databricks-cmk-rotator/internal/wslock"
)

func main() {
	log := wire.Logger()
	cfg, err := rescue.LoadConfig(os.LookupEnv)
	if err != nil {
		log.Error("cannot start: configuration", "error", err.Error())
		os.Exit(1)
	}
	// Honours AWS_ENDPOINT_URL_<SERVICE>, which points the sandbox at local endpoints.
	awsCfg, err := wire.AWS(context.Background())
	if err != nil {
		log.Error("cannot start: AWS configuration", "error", err.Error())
		os.Exit(1)
	}
	executions := sfn.NewFromConfig(awsCfg)
	h := &rescue.Handler{
		Config:     cfg,
		Executions: executions,
		History:    executions,
		Events:     eventbridge.NewFromConfig(awsCfg),
		Reminders:  executions,
		Locks:      &wslock.Locks{DB: dynamodb.NewFromConfig(awsCfg), Table: cfg.LockTableName},
		Log:        log,
	}
	if cfg.InventoryBucket != "" {
		_, localS3 := os.LookupEnv("AWS_ENDPOINT_URL_S3")
		// A local S3 endpoint (the sandbox) has no per-bucket DNS names: address buckets by path there.
		h.Inventories = &invstore.Store{S3: s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = localS3 }), Bucket: cfg.InventoryBucket}
	}
	lambda.Start(h.Handle)
}
