package wslock

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

// Environment read by the lock functions.
const (
	EnvLockTable = "LOCK_TABLE_NAME"
	EnvLockLease = "LOCK_LEASE"
)

// FromEnv builds the LockWorkspaces and UnlockWorkspaces tasks.
func FromEnv(_ context.Context, lookup wire.Lookup, awsCfg aws.Config) (*Locks, error) {
	s := wire.NewSettings(lookup)
	locks := &Locks{
		DB:    dynamodb.NewFromConfig(awsCfg),
		Table: s.Required(EnvLockTable),
		Lease: s.Duration(EnvLockLease, DefaultLease),
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return locks, nil
}
