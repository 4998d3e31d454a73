package rescue_test

import (
	"strings"
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

func TestLoadConfigBoundsTheEventBusAndTableNames(t *testing.T) {
	busARN := "arn:aws:events:us-west-2:111122223333:event-bus/"
	for _, tt := range []struct {
		name, bus, table string
		problem          string // empty: accepted
	}{
		{name: "the longest bus name", bus: strings.Repeat("b", 256), table: lockTable},
		{name: "a bus ARN with the longest name", bus: busARN + strings.Repeat("b", 256), table: lockTable},
		{name: "a bus name too long", bus: strings.Repeat("b", 257), table: lockTable, problem: "EVENT_BUS_NAME"},
		{name: "a bus ARN whose name is too long", bus: busARN + strings.Repeat("b", 257), table: lockTable, problem: "EVENT_BUS_NAME"},
		{name: "a bus ARN without a name", bus: busARN, table: lockTable, problem: "EVENT_BUS_NAME"},
		{name: "the shortest table name", bus: eventBus, table: "abc"},
		{name: "the longest table name", bus: eventBus, table: strings.Repeat("t", 255)},
		{name: "a table name too short", bus: eventBus, table: "ab", problem: "LOCK_TABLE_NAME"},
		{name: "a table name too long", bus: eventBus, table: strings.Repeat("t", 256), problem: "LOCK_TABLE_NAME"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rescue.LoadConfig(testEnv(map[string]string{rescue.EnvEventBusName: tt.bus, rescue.EnvLockTableName: tt.table}))
			if tt.problem == "" {
				require.NoError(t, err)
				return
			}
			var cfgErr *rescue.ConfigError
			require.ErrorAs(t, err, &cfgErr)
			require.Len(t, cfgErr.Problems, 1)
			assert.Contains(t, cfgErr.Problems[0], tt.problem)
		})
	}
}
