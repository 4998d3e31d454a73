package rescue_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
)

func TestLoadConfigReadsEveryVariable(t *testing.T) {
	cfg, err := rescue.LoadConfig(testEnv(map[string]string{rescue.EnvLockTableName: " " + lockTable + " "}))
	require.NoError(t, err)
	assert.Equal(t, rescue.Config{EventBusName: eventBus, RotationStateMachineARN: rotationARN, LockTableName: lockTable, InventoryBucket: bucket,
		ReminderStateMachineARN: reminderARN}, cfg)
}

func TestLoadConfigLeavesTheInventoryBucketOptional(t *testing.T) {
	cfg, err := rescue.LoadConfig(testEnv(map[string]string{rescue.EnvInventoryBucket: ""}))
	require.NoError(t, err)
	assert.Empty(t, cfg.InventoryBucket)
}

func TestLoadConfigNamesEveryMissingVariable(t *testing.T) {
	_, err := rescue.LoadConfig(func(string) (string, bool) { return "", false })
	var cfgErr *rescue.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	assert.Len(t, cfgErr.Problems, 4)
	for _, name := range []string{"EVENT_BUS_NAME", "ROTATION_STATE_MACHINE_ARN", "REMINDER_STATE_MACHINE_ARN", "LOCK_TABLE_NAME"} {
		assert.Contains(t, err.Error(), name+" is required")
	}
}

func TestLoadConfigNamesEveryInvalidVariable(t *testing.T) {
	_, err := rescue.LoadConfig(testEnv(map[string]string{
		rescue.EnvRotationStateMachineARN: "arn:aws:lambda:us-west-2:111122223333:function:rotation",
		rescue.EnvEventBusName:            "bus with spaces",
		rescue.EnvLockTableName:           "t",
		rescue.EnvInventoryBucket:         "Inventory_Bucket",
	}))
	var cfgErr *rescue.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	assert.Len(t, cfgErr.Problems, 4)
	assert.Contains(t, err.Error(), "is not a state machine ARN")
}
