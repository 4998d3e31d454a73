package validate

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policysnap"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

// Environment read by the Validate function, besides the DATABRICKS_* ones.
const (
	EnvQuietWindowSeconds      = "STORAGE_QUIET_WINDOW_SECONDS"
	EnvMaxConcurrentWorkspaces = "MAX_CONCURRENT_WORKSPACES"
	EnvAllowMissingCondition   = "ALLOW_POLICY_WITHOUT_ACCOUNT_CONDITION"
	// EnvGovCloudShard overrides the GovCloud shard (civilian or dod) derived from DATABRICKS_HOST.
	EnvGovCloudShard = "DATABRICKS_GOVCLOUD_SHARD"
	// EnvInventoryBucket is where the accepted key policy is kept (internal/policysnap); optional.
	EnvInventoryBucket = "INVENTORY_BUCKET"
)

// MaxQuietWindowSeconds matches the template's MaxValue for StorageQuietWindowSeconds: a longer
// window could outlast the execution's timeout with compute down (statemachine/budget_test.go).
const MaxQuietWindowSeconds = 3600

// FromEnv builds the Validate task from the environment.
func FromEnv(ctx context.Context, lookup wire.Lookup, awsCfg aws.Config) (*Task, error) {
	account, accountID, err := dbclient.AccountFromEnv(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	s := wire.NewSettings(lookup)
	settings := Settings{
		DatabricksAccountID:          accountID,
		AllowMissingAccountCondition: s.Bool(EnvAllowMissingCondition, false),
		QuietWindowSeconds:           s.Int(EnvQuietWindowSeconds, 1200),
		MaxConcurrency:               s.Int(EnvMaxConcurrentWorkspaces, 5),
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if q := settings.QuietWindowSeconds; q < 0 || q > MaxQuietWindowSeconds {
		return nil, fmt.Errorf("%s must be between 0 and %d seconds (a longer window could outlast the execution's timeout with compute down), got %d", EnvQuietWindowSeconds, MaxQuietWindowSeconds, q)
	}
	settings.GovCloudShard, _ = lookup(EnvGovCloudShard)
	if settings.GovCloudShard == "" {
		host, _ := lookup("DATABRICKS_HOST")
		settings.GovCloudShard = keypolicy.ShardOfAccountHost(host)
	}
	if sh := settings.GovCloudShard; sh != "" && sh != keypolicy.ShardCivilian && sh != keypolicy.ShardDoD {
		return nil, fmt.Errorf("%s must be %s or %s, got %q", EnvGovCloudShard, keypolicy.ShardCivilian, keypolicy.ShardDoD, sh)
	}
	// KMS answers only for keys of its own region: describe each key through a client of its region.
	checker := kmscheck.Checker{ClientFor: func(region string) kmscheck.API {
		return kms.NewFromConfig(awsCfg, func(o *kms.Options) { o.Region = region })
	}}
	task := &Task{Keys: checker, Account: account, Settings: settings, Log: wire.Logger()}
	if bucket, _ := lookup(EnvInventoryBucket); strings.TrimSpace(bucket) != "" {
		_, localS3 := lookup("AWS_ENDPOINT_URL_S3")
		// A local S3 endpoint (the sandbox) has no per-bucket DNS names: address buckets by path there.
		task.Snapshots = &policysnap.Store{Bucket: strings.TrimSpace(bucket),
			S3: s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = localS3 })}
	}
	return task, nil
}
