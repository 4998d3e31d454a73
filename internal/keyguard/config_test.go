package keyguard_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyguard"
)

func TestLoadConfigReadsEveryVariable(t *testing.T) {
	cfg, err := keyguard.LoadConfig(testEnv(map[string]string{
		"UNDO_KEY_CHANGES":       " TRUE ",
		"IGNORED_PRINCIPAL_ARNS": rotatorRole + ", arn:aws:iam::111122223333:role/break-glass,",
	}))
	require.NoError(t, err)
	assert.Equal(t, keyguard.Config{
		EventBusName:            eventBus,
		ReminderStateMachineARN: reminderARN,
		UndoKeyChanges:          true,
		IgnoredPrincipalARNs:    []string{rotatorRole, "arn:aws:iam::111122223333:role/break-glass"},
	}, cfg)
}

func TestLoadConfigLeavesUndoOffByDefault(t *testing.T) {
	cfg, err := keyguard.LoadConfig(testEnv(nil))
	require.NoError(t, err)
	assert.False(t, cfg.UndoKeyChanges)
}

func TestLoadConfigNamesEveryProblem(t *testing.T) {
	_, err := keyguard.LoadConfig(func(k string) (string, bool) {
		switch k {
		case "UNDO_KEY_CHANGES":
			return "yes", true
		case "IGNORED_PRINCIPAL_ARNS":
			return "alice", true
		}
		return "", false
	})
	var cfgErr *keyguard.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	assert.Len(t, cfgErr.Problems, 4)
	for _, name := range []string{"EVENT_BUS_NAME", "REMINDER_STATE_MACHINE_ARN", "UNDO_KEY_CHANGES", "IGNORED_PRINCIPAL_ARNS"} {
		assert.Contains(t, err.Error(), name)
	}
}

func TestLoadConfigRefusesAReminderARNThatIsNoStateMachine(t *testing.T) {
	_, err := keyguard.LoadConfig(testEnv(map[string]string{"REMINDER_STATE_MACHINE_ARN": "arn:aws:lambda:us-west-2:111122223333:function:reminder"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not a state machine ARN")
}
