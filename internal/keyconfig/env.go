package keyconfig

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

// FromEnv builds the RegisterKeyConfig task from the environment.
func FromEnv(ctx context.Context, lookup wire.Lookup, awsCfg aws.Config) (*Task, error) {
	account, _, err := dbclient.AccountFromEnv(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	return &Task{Account: account}, nil
}
