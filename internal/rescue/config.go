package rescue

import (
	"fmt"
	"regexp"
	"strings"
)

// Environment read by the rescue function.
const (
	EnvEventBusName            = "EVENT_BUS_NAME"
	EnvRotationStateMachineARN = "ROTATION_STATE_MACHINE_ARN"
	EnvLockTableName           = "LOCK_TABLE_NAME"
	EnvInventoryBucket         = "INVENTORY_BUCKET"
	EnvReminderStateMachineARN = "REMINDER_STATE_MACHINE_ARN"
	// EnvWorkspaceRotationStateMachineARN names the child state machine (one execution per workspace).
	EnvWorkspaceRotationStateMachineARN = "WORKSPACE_ROTATION_STATE_MACHINE_ARN"
)

// Config is the rescue function's configuration, read once from the environment.
type Config struct {
	// EventBusName receives the Rotation Failed events (EVENT_BUS_NAME, required: a failure event
	// sent to the wrong bus is an alarm nobody hears).
	EventBusName string
	// RotationStateMachineARN is the state machine whose executions the rescue handles
	// (ROTATION_STATE_MACHINE_ARN, required). Events of any other state machine are ignored.
	RotationStateMachineARN string
	// WorkspaceRotationStateMachineARN is the state machine of the per-workspace child executions
	// (WORKSPACE_ROTATION_STATE_MACHINE_ARN, optional): a child that ends badly is rescued like a
	// rotation, for its one workspace, and its lock (owned by the request's execution) is released.
	WorkspaceRotationStateMachineARN string
	// LockTableName is the workspace lock table (LOCK_TABLE_NAME, required).
	LockTableName string
	// InventoryBucket is where large inventories are stored (INVENTORY_BUCKET, optional). Only
	// references into this bucket are read; without it, references are reported as they are.
	InventoryBucket string
	// ReminderStateMachineARN is the retirement reminder the rescue starts for an execution it ends
	// after a workspace PATCH took (REMINDER_STATE_MACHINE_ARN, required: the key guard reads the
	// reminders to know which previous keys are still in use, so a missing one is a key left
	// unwatched).
	ReminderStateMachineARN string
}

var (
	stateMachineARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[A-Za-z0-9_-]{1,80}$`)
	// Bus names and bus ARNs are both accepted by PutEvents. The lengths are checked apart
	// (isEventBus, isTableName): a counted repeat such as {1,256} compiles to 256 nested copies of
	// its class, which cost 3.5 ms of every cold start.
	eventBusRE = regexp.MustCompile(`^([A-Za-z0-9._\-/]+|arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/[A-Za-z0-9._\-/]+)$`)
	tableRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	bucketRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// maxEventBusName and the table name bounds are EventBridge's and DynamoDB's limits.
const (
	maxEventBusName = 256
	minTableName    = 3
	maxTableName    = 255
)

func isEventBus(s string) bool {
	name := s
	if _, after, isARN := strings.Cut(s, ":event-bus/"); isARN {
		name = after
	}
	return len(name) <= maxEventBusName && eventBusRE.MatchString(s)
}

func isTableName(s string) bool {
	return len(s) >= minTableName && len(s) <= maxTableName && tableRE.MatchString(s)
}

// ConfigError lists every missing or invalid variable.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "rescue configuration: " + strings.Join(e.Problems, "; ")
}

// LoadConfig reads the configuration through lookup (os.LookupEnv in main, a map in tests) and
// reports every problem at once.
func LoadConfig(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	cfg := Config{
		EventBusName:                     get(EnvEventBusName),
		RotationStateMachineARN:          get(EnvRotationStateMachineARN),
		LockTableName:                    get(EnvLockTableName),
		InventoryBucket:                  get(EnvInventoryBucket),
		ReminderStateMachineARN:          get(EnvReminderStateMachineARN),
		WorkspaceRotationStateMachineARN: get(EnvWorkspaceRotationStateMachineARN),
	}
	var problems []string
	check := func(name, value string, valid func(string) bool, what string) {
		switch {
		case value == "":
			problems = append(problems, name+" is required")
		case !valid(value):
			problems = append(problems, fmt.Sprintf("%s %q is not %s", name, value, what))
		}
	}
	check(EnvEventBusName, cfg.EventBusName, isEventBus, "an event bus name or ARN")
	check(EnvRotationStateMachineARN, cfg.RotationStateMachineARN, stateMachineARNRE.MatchString,
		"a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)")
	check(EnvReminderStateMachineARN, cfg.ReminderStateMachineARN, stateMachineARNRE.MatchString,
		"a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)")
	check(EnvLockTableName, cfg.LockTableName, isTableName, "a DynamoDB table name")
	if v := cfg.WorkspaceRotationStateMachineARN; v != "" && !stateMachineARNRE.MatchString(v) {
		problems = append(problems, fmt.Sprintf("%s %q is not a state machine ARN", EnvWorkspaceRotationStateMachineARN, v))
	}
	if cfg.InventoryBucket != "" && !bucketRE.MatchString(cfg.InventoryBucket) {
		problems = append(problems, fmt.Sprintf("%s %q is not an S3 bucket name", EnvInventoryBucket, cfg.InventoryBucket))
	}
	if len(problems) > 0 {
		return Config{}, &ConfigError{Problems: problems}
	}
	return cfg, nil
}
