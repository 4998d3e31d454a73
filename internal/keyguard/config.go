package keyguard

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/principals"
)

// Config is the key guard's configuration, read once from the environment. The Databricks
// settings (DATABRICKS_*) are read by dbclient.LoadSettings.
type Config struct {
	// EventBusName receives the "Key In Use At Risk" events (EVENT_BUS_NAME, required: a critical
	// event sent to the wrong bus is an alarm nobody hears).
	EventBusName string
	// ReminderStateMachineARN is the retirement reminder state machine whose running executions
	// name the workspaces rotated off a key within the last 24 hours (REMINDER_STATE_MACHINE_ARN,
	// required).
	ReminderStateMachineARN string
	// UndoKeyChanges makes the guard cancel a scheduled deletion or enable a disabled key that a
	// workspace depends on (UNDO_KEY_CHANGES, true or false, default false).
	UndoKeyChanges bool
	// IgnoredPrincipalARNs are principals whose KMS calls are ignored (IGNORED_PRINCIPAL_ARNS,
	// comma-separated). Both the caller ARN and the role behind an assumed-role session are compared.
	IgnoredPrincipalARNs []string
	// DatabricksAccountID (DATABRICKS_ACCOUNT_ID) and GovCloudShard (DATABRICKS_GOVCLOUD_SHARD, or
	// derived from DATABRICKS_HOST) are what a new key policy is checked against after PutKeyPolicy.
	DatabricksAccountID string
	GovCloudShard       string
	// PolicyBucket holds the key policy snapshots Validate stores (INVENTORY_BUCKET, optional): the
	// undo of a PutKeyPolicy puts the last validated policy back; without it, it cannot.
	PolicyBucket string
}

var (
	stateMachineARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[A-Za-z0-9_-]{1,80}$`)
)

// ConfigError lists every missing or invalid variable.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "key guard configuration: " + strings.Join(e.Problems, "; ")
}

// LoadConfig reads the configuration through lookup (os.LookupEnv in main, a map in tests) and
// reports every problem at once.
func LoadConfig(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var problems []string
	cfg := Config{
		EventBusName:            get("EVENT_BUS_NAME"),
		ReminderStateMachineARN: get("REMINDER_STATE_MACHINE_ARN"),
	}
	cfg.DatabricksAccountID = get("DATABRICKS_ACCOUNT_ID")
	cfg.PolicyBucket = get("INVENTORY_BUCKET")
	if cfg.GovCloudShard = get("DATABRICKS_GOVCLOUD_SHARD"); cfg.GovCloudShard == "" {
		cfg.GovCloudShard = keypolicy.ShardOfAccountHost(get("DATABRICKS_HOST"))
	}
	if cfg.EventBusName == "" {
		problems = append(problems, "EVENT_BUS_NAME is required")
	}
	switch {
	case cfg.ReminderStateMachineARN == "":
		problems = append(problems, "REMINDER_STATE_MACHINE_ARN is required")
	case !stateMachineARNRE.MatchString(cfg.ReminderStateMachineARN):
		problems = append(problems, fmt.Sprintf("REMINDER_STATE_MACHINE_ARN %q is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)", cfg.ReminderStateMachineARN))
	}
	switch v := strings.ToLower(get("UNDO_KEY_CHANGES")); v {
	case "", "false":
	case "true":
		cfg.UndoKeyChanges = true
	default:
		problems = append(problems, fmt.Sprintf("UNDO_KEY_CHANGES must be true or false, got %q", get("UNDO_KEY_CHANGES")))
	}
	ignored, bad := principals.Parse(get(principals.Env))
	cfg.IgnoredPrincipalARNs, problems = ignored, append(problems, bad...)
	if len(problems) > 0 {
		return Config{}, &ConfigError{Problems: problems}
	}
	return cfg, nil
}
