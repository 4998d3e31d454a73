package hygiene

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

// Settings are the task's own variables: KEY_CONFIG_HYGIENE (true or false, default false) and
// EVENT_BUS_NAME (required when it is on).
type Settings struct {
	Enabled  bool
	EventBus string
}

// LoadSettings reads the settings and names every problem at once.
func LoadSettings(lookup wire.Lookup) (Settings, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var s Settings
	var problems []string
	switch v := strings.ToLower(get("KEY_CONFIG_HYGIENE")); v {
	case "", "false":
	case "true":
		s.Enabled = true
	default:
		problems = append(problems, fmt.Sprintf("KEY_CONFIG_HYGIENE must be true or false, got %q", get("KEY_CONFIG_HYGIENE")))
	}
	s.EventBus = get("EVENT_BUS_NAME")
	if s.Enabled && s.EventBus == "" {
		problems = append(problems, "EVENT_BUS_NAME is required when KEY_CONFIG_HYGIENE is true")
	}
	if len(problems) > 0 {
		return Settings{}, fmt.Errorf("key configuration hygiene: %s", strings.Join(problems, "; "))
	}
	return s, nil
}

// FromEnv builds the task from the environment.
func FromEnv(ctx context.Context, lookup wire.Lookup, awsCfg aws.Config) (*Task, error) {
	s, err := LoadSettings(lookup)
	if err != nil {
		return nil, err
	}
	t := &Task{Enabled: s.Enabled, EventBus: s.EventBus, Events: eventbridge.NewFromConfig(awsCfg)}
	if !s.Enabled {
		return t, nil
	}
	account, _, err := dbclient.AccountFromEnv(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	t.Account = account
	return t, nil
}
