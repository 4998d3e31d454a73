// Command rescue is the Lambda that reports and unlocks what a rotation execution left behind when
// it was aborted, timed out or failed outside every Catch (internal/rescue).
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wslock"
)

func main() {
	_, log, awsCfg := wire.Start()
	cfg := wire.Configured(rescue.LoadConfig(os.LookupEnv))
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
		h.Inventories = &invstore.Store{S3: invstore.NewS3Client(awsCfg, os.LookupEnv), Bucket: cfg.InventoryBucket}
	}
	lambda.Start(h.Handle)
}
