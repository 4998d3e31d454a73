package keyage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

// DefaultMaxAgeDays is the maximum key age when MAX_KEY_AGE_DAYS is not set: a year, the period
// after which KMS's own automatic rotation rotates key material by default.
const DefaultMaxAgeDays = 365

// ParseMaxAgeDays reads a maximum age in whole days (1 to 3650).
func ParseMaxAgeDays(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultMaxAgeDays * 24 * time.Hour, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 3650 {
		return 0, fmt.Errorf("MAX_KEY_AGE_DAYS must be a whole number of days from 1 to 3650, got %q", v)
	}
	return time.Duration(n) * 24 * time.Hour, nil
}

// CheckFromEnv builds the scheduled check: MAX_KEY_AGE_DAYS, EVENT_BUS_NAME and
// ROTATION_STATE_MACHINE_ARN (required), and the Databricks variables of dbclient.
func CheckFromEnv(ctx context.Context, lookup wire.Lookup, awsCfg aws.Config) (*Check, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var problems []string
	maxAge, err := ParseMaxAgeDays(get("MAX_KEY_AGE_DAYS"))
	if err != nil {
		problems = append(problems, err.Error())
	}
	bus, machine := get("EVENT_BUS_NAME"), get("ROTATION_STATE_MACHINE_ARN")
	if bus == "" {
		problems = append(problems, "EVENT_BUS_NAME is required")
	}
	if machine == "" {
		problems = append(problems, "ROTATION_STATE_MACHINE_ARN is required")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("key age check: %s", strings.Join(problems, "; "))
	}
	account, _, err := dbclient.AccountFromEnv(ctx, lookup, awsCfg)
	if err != nil {
		return nil, err
	}
	return &Check{
		// No KMS aliases: kms:ListAliases has no resource-level permission, and the rotator's roles are
		// granted only on keys; the alias recorded on the key configuration names the key instead.
		Inventory: &Inventory{Account: account, History: sfn.NewFromConfig(awsCfg),
			StateMachineARN: machine, MaxAge: maxAge},
		Events: eventbridge.NewFromConfig(awsCfg), EventBus: bus, Now: time.Now,
	}, nil
}
