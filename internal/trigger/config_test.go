package trigger_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
)

func lookupFrom(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		want     trigger.Config
		problems []string
	}{
		{
			name: "only the state machine is required and the rest defaults",
			env:  map[string]string{"STATE_MACHINE_ARN": stateMachineARN},
			want: trigger.Config{StateMachineARN: stateMachineARN, EventBusName: "default", AliasPrefix: "alias/databricks/", TagPrefix: "databricks:"},
		},
		{
			name: "every variable is read and the ignored principals are split and trimmed",
			env: map[string]string{
				"STATE_MACHINE_ARN":      stateMachineARN,
				"EVENT_BUS_NAME":         "rotator-events",
				"ALIAS_PREFIX":           "alias/dbx-",
				"TAG_PREFIX":             "acme/dbx:",
				"IGNORED_PRINCIPAL_ARNS": " " + rotatorRoleARN + " ,, arn:aws:iam::111122223333:role/key-guard ",
			},
			want: trigger.Config{
				StateMachineARN: stateMachineARN, EventBusName: "rotator-events", AliasPrefix: "alias/dbx-", TagPrefix: "acme/dbx:",
				IgnoredPrincipalARNs: []string{rotatorRoleARN, "arn:aws:iam::111122223333:role/key-guard"},
			},
		},
		{
			name: "empty optional variables take their defaults",
			env:  map[string]string{"STATE_MACHINE_ARN": stateMachineARN, "EVENT_BUS_NAME": "", "ALIAS_PREFIX": " ", "TAG_PREFIX": "", "IGNORED_PRINCIPAL_ARNS": ""},
			want: trigger.Config{StateMachineARN: stateMachineARN, EventBusName: "default", AliasPrefix: "alias/databricks/", TagPrefix: "databricks:"},
		},
		{
			name:     "a missing state machine is named",
			env:      map[string]string{},
			problems: []string{"STATE_MACHINE_ARN is required"},
		},
		{
			name: "every invalid variable is named at once",
			env: map[string]string{
				"STATE_MACHINE_ARN":      "arn:aws:lambda:us-west-2:111122223333:function:x",
				"ALIAS_PREFIX":           "databricks/",
				"TAG_PREFIX":             "aws:databricks:",
				"IGNORED_PRINCIPAL_ARNS": "rotator-role",
			},
			problems: []string{
				`STATE_MACHINE_ARN "arn:aws:lambda:us-west-2:111122223333:function:x" is not a state machine ARN`,
				`ALIAS_PREFIX "databricks/" must start with alias/`,
				`TAG_PREFIX "aws:databricks:" uses the reserved aws: prefix`,
				`IGNORED_PRINCIPAL_ARNS entry "rotator-role" is not an IAM or STS ARN`,
			},
		},
		{
			name:     "an alias prefix under alias/aws/ is refused",
			env:      map[string]string{"STATE_MACHINE_ARN": stateMachineARN, "ALIAS_PREFIX": "alias/aws/"},
			problems: []string{"reserved for AWS managed keys"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := trigger.LoadConfig(lookupFrom(tt.env))
			if tt.problems == nil {
				require.NoError(t, err)
				assert.Equal(t, tt.want, cfg)
				return
			}
			var cerr *trigger.ConfigError
			require.ErrorAs(t, err, &cerr)
			assert.Len(t, cerr.Problems, len(tt.problems))
			for _, p := range tt.problems {
				assert.Contains(t, err.Error(), p)
			}
		})
	}
}
