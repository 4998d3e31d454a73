package wire

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/acme/databricks-cmk-rotator/internal/compute"
	"github.com/acme/databricks-cmk-rotator/internal/invstore"
	"github.com/acme/databricks-cmk-rotator/internal/keyconfig"
	"github.com/acme/databricks-cmk-rotator/internal/kmscheck"
	"github.com/acme/databricks-cmk-rotator/internal/validate"
	"github.com/acme/databricks-cmk-rotator/internal/wslock"
	"github.com/acme/databricks-cmk-rotator/internal/wsupdate"
)

// Environment variables read by the task functions besides the DATABRICKS_* ones; template.yaml
// sets them from stack parameters.
const (
	EnvStopBudget              = "STOP_BUDGET"
	EnvStartBudget             = "START_BUDGET"
	EnvWorkers                 = "API_WORKERS"
	EnvTaskTime                = "TASK_TIME"
	EnvInventoryBucket         = "INVENTORY_BUCKET"
	EnvInventoryInlineLimit    = "INVENTORY_INLINE_LIMIT"
	EnvManagedServicesBudget   = "WORKSPACE_UPDATE_BUDGET"
	EnvStorageBudget           = "STORAGE_UPDATE_BUDGET"
	EnvWorkspaceSettle         = "WORKSPACE_SETTLE"
	EnvQuietWindowSeconds      = "STORAGE_QUIET_WINDOW_SECONDS"
	EnvMaxConcurrentWorkspaces = "MAX_CONCURRENT_WORKSPACES"
	EnvAllowMissingCondition   = "ALLOW_POLICY_WITHOUT_ACCOUNT_CONDITION"
)

// ValidateTask builds the Validate task.
func ValidateTask(ctx context.Context, lookup Lookup) (*validate.Task, error) {
	awsCfg, err := AWS(ctx)
	if err != nil {
		return nil, err
	}
	factory, err := Databricks(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	account, err := factory.Account()
	if err != nil {
		return nil, err
	}
	s := NewSettings(lookup)
	settings := validate.Settings{
		DatabricksAccountID:          factory.AccountID(),
		AllowMissingAccountCondition: s.Bool(EnvAllowMissingCondition, false),
		QuietWindowSeconds:           s.Int(EnvQuietWindowSeconds, 1200),
		MaxConcurrency:               s.Int(EnvMaxConcurrentWorkspaces, 5),
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	checker := kmscheck.Checker{ClientFor: func(region string) kmscheck.API {
		return kms.NewFromConfig(awsCfg, func(o *kms.Options) { o.Region = region })
	}}
	return &validate.Task{Keys: checker, Account: account, Settings: settings}, nil
}

// RegisterTask builds the RegisterKeyConfig task.
func RegisterTask(ctx context.Context, lookup Lookup) (*keyconfig.Task, error) {
	awsCfg, err := AWS(ctx)
	if err != nil {
		return nil, err
	}
	factory, err := Databricks(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	account, err := factory.Account()
	if err != nil {
		return nil, err
	}
	return &keyconfig.Task{Account: account}, nil
}

// ComputeTasks builds the Inventory, StopCompute, ComputeStatus and RestartCompute tasks.
func ComputeTasks(ctx context.Context, lookup Lookup) (*compute.Tasks, error) {
	awsCfg, err := AWS(ctx)
	if err != nil {
		return nil, err
	}
	factory, err := Databricks(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	s := NewSettings(lookup)
	settings := compute.Settings{
		Workers:     s.Int(EnvWorkers, compute.DefaultSettings.Workers),
		StopBudget:  s.Duration(EnvStopBudget, compute.DefaultSettings.StopBudget),
		StartBudget: s.Duration(EnvStartBudget, compute.DefaultSettings.StartBudget),
		TaskTime:    s.Duration(EnvTaskTime, 0),
	}
	_, localS3 := lookup("AWS_ENDPOINT_URL_S3")
	s3Client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		// A local S3 endpoint (the sandbox) has no per-bucket DNS names: address buckets by path there.
		o.UsePathStyle = localS3
	})
	store := &invstore.Store{S3: s3Client, InlineLimit: s.Int(EnvInventoryInlineLimit, invstore.DefaultInlineLimit)}
	store.Bucket, _ = lookup(EnvInventoryBucket)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return &compute.Tasks{Clients: factory, Settings: settings, Store: store}, nil
}

// WorkspaceUpdateTasks builds the PatchWorkspace and WorkspaceStatus tasks.
func WorkspaceUpdateTasks(ctx context.Context, lookup Lookup) (*wsupdate.Tasks, error) {
	awsCfg, err := AWS(ctx)
	if err != nil {
		return nil, err
	}
	factory, err := Databricks(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	account, err := factory.Account()
	if err != nil {
		return nil, err
	}
	s := NewSettings(lookup)
	settings := wsupdate.Settings{
		ManagedServicesBudget: s.Duration(EnvManagedServicesBudget, wsupdate.DefaultSettings.ManagedServicesBudget),
		StorageBudget:         s.Duration(EnvStorageBudget, wsupdate.DefaultSettings.StorageBudget),
		Settle:                s.Duration(EnvWorkspaceSettle, wsupdate.DefaultSettings.Settle),
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return &wsupdate.Tasks{Account: account, Settings: settings}, nil
}

// Environment of the lock functions.
const (
	EnvLockTable = "LOCK_TABLE_NAME"
	EnvLockLease = "LOCK_LEASE"
)

// LockTasks builds the LockWorkspaces and UnlockWorkspaces tasks.
func LockTasks(ctx context.Context, lookup Lookup) (*wslock.Locks, error) {
	awsCfg, err := AWS(ctx)
	if err != nil {
		return nil, err
	}
	s := NewSettings(lookup)
	locks := &wslock.Locks{
		DB:    dynamodb.NewFromConfig(awsCfg),
		Table: s.Required(EnvLockTable),
		Lease: s.Duration(EnvLockLease, wslock.DefaultLease),
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return locks, nil
}
