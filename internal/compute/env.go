package compute

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

// Environment read by the compute functions, besides the DATABRICKS_* ones.
const (
	EnvStopBudget           = "STOP_BUDGET"
	EnvStartBudget          = "START_BUDGET"
	EnvWorkers              = "API_WORKERS"
	EnvTaskTime             = "TASK_TIME"
	EnvInventoryBucket      = "INVENTORY_BUCKET"
	EnvInventoryInlineLimit = "INVENTORY_INLINE_LIMIT"
)

// FromEnv builds the compute tasks (Inventory, StopCompute, ComputeStatus, RestartCompute).
func FromEnv(ctx context.Context, lookup wire.Lookup, awsCfg aws.Config) (*Tasks, error) {
	factory, err := dbclient.FromEnv(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	s := wire.NewSettings(lookup)
	settings := Settings{
		Workers:     s.Int(EnvWorkers, DefaultSettings.Workers),
		StopBudget:  s.Duration(EnvStopBudget, DefaultSettings.StopBudget),
		StartBudget: s.Duration(EnvStartBudget, DefaultSettings.StartBudget),
		TaskTime:    s.Duration(EnvTaskTime, 0),
	}
	store := &invstore.Store{S3: invstore.NewS3Client(awsCfg, lookup), InlineLimit: s.Int(EnvInventoryInlineLimit, invstore.DefaultInlineLimit)}
	store.Bucket, _ = lookup(EnvInventoryBucket)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return &Tasks{Clients: factory, Settings: settings, Store: store}, nil
}
