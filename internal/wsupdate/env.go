package wsupdate

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

// Environment read by PatchWorkspace and WorkspaceStatus, besides the DATABRICKS_* ones.
const (
	EnvManagedServicesBudget = "WORKSPACE_UPDATE_BUDGET"
	EnvStorageBudget         = "STORAGE_UPDATE_BUDGET"
	EnvSettle                = "WORKSPACE_SETTLE"
	EnvProvisioningGrace     = "WORKSPACE_PROVISIONING_GRACE"
)

// FromEnv builds the PatchWorkspace and WorkspaceStatus tasks.
func FromEnv(ctx context.Context, lookup wire.Lookup, awsCfg aws.Config) (*Tasks, error) {
	account, _, err := dbclient.AccountFromEnv(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	s := wire.NewSettings(lookup)
	settings := Settings{
		ManagedServicesBudget: s.Duration(EnvManagedServicesBudget, DefaultSettings.ManagedServicesBudget),
		StorageBudget:         s.Duration(EnvStorageBudget, DefaultSettings.StorageBudget),
		Settle:                s.Duration(EnvSettle, DefaultSettings.Settle),
		ProvisioningGrace:     s.Duration(EnvProvisioningGrace, DefaultSettings.ProvisioningGrace),
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return &Tasks{Account: account, Settings: settings}, nil
}
