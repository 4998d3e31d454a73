package trigger

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/principals"
)

// Config is the trigger function's configuration, read once from the environment.
type Config struct {
	// StateMachineARN is the rotation state machine to start (STATE_MACHINE_ARN, required).
	StateMachineARN string
	// EventBusName receives the audit events (EVENT_BUS_NAME, default "default").
	EventBusName string
	// AliasPrefix selects the aliases whose creation or update starts a rotation
	// (ALIAS_PREFIX, default "alias/databricks/").
	AliasPrefix string
	// TagPrefix prefixes the opt-in tag keys (TAG_PREFIX, default "databricks:").
	TagPrefix string
	// IgnoredPrincipalARNs are roles whose own KMS calls are ignored, so that the rotator does not
	// trigger itself (IGNORED_PRINCIPAL_ARNS, comma-separated). Both the caller ARN and the role
	// behind an assumed-role session are compared.
	IgnoredPrincipalARNs []string
}

// Defaults for the optional variables.
const (
	DefaultEventBusName = "default"
	DefaultAliasPrefix  = "alias/databricks/"
	DefaultTagPrefix    = "databricks:"
)

var (
	stateMachineARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[A-Za-z0-9_-]{1,80}$`)
	aliasPrefixRE     = regexp.MustCompile(`^alias/[A-Za-z0-9/_-]+$`)
)

// ConfigError lists every missing or invalid variable.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "trigger configuration: " + strings.Join(e.Problems, "; ")
}

// LoadConfig reads the configuration through lookup (os.LookupEnv in main, a map in tests) and
// reports every problem at once.
func LoadConfig(lookup func(string) (string, bool)) (Config, error) {
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	var problems []string
	cfg := Config{
		StateMachineARN: get("STATE_MACHINE_ARN", ""),
		EventBusName:    get("EVENT_BUS_NAME", DefaultEventBusName),
		AliasPrefix:     get("ALIAS_PREFIX", DefaultAliasPrefix),
		TagPrefix:       get("TAG_PREFIX", DefaultTagPrefix),
	}
	switch {
	case cfg.StateMachineARN == "":
		problems = append(problems, "STATE_MACHINE_ARN is required")
	case !stateMachineARNRE.MatchString(cfg.StateMachineARN):
		problems = append(problems, fmt.Sprintf("STATE_MACHINE_ARN %q is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)", cfg.StateMachineARN))
	}
	switch {
	case !aliasPrefixRE.MatchString(cfg.AliasPrefix):
		problems = append(problems, fmt.Sprintf("ALIAS_PREFIX %q must start with alias/ and use only letters, digits, /, _ and -", cfg.AliasPrefix))
	case strings.HasPrefix(cfg.AliasPrefix, "alias/aws/"):
		problems = append(problems, fmt.Sprintf("ALIAS_PREFIX %q is reserved for AWS managed keys", cfg.AliasPrefix))
	}
	if strings.HasPrefix(strings.ToLower(cfg.TagPrefix), "aws:") {
		problems = append(problems, fmt.Sprintf("TAG_PREFIX %q uses the reserved aws: prefix", cfg.TagPrefix))
	}
	if v, ok := lookup(principals.Env); ok {
		ignored, bad := principals.Parse(v)
		cfg.IgnoredPrincipalARNs, problems = ignored, append(problems, bad...)
	}
	if len(problems) > 0 {
		return Config{}, &ConfigError{Problems: problems}
	}
	return cfg, nil
}
