package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyage"
)

// KeySources are what cmkrotate keys reads besides Step Functions: the Databricks account and KMS
// aliases. They are built only when the command runs, so that other commands need no Databricks
// credentials.
type KeySources struct {
	Account keyage.Account
	Aliases keyage.Aliases
}

// NewKeySources builds them (cmd/cmkrotate: dbclient from the DATABRICKS_* variables, and KMS).
type NewKeySources func(ctx context.Context) (KeySources, error)

// keys lists every workspace of the account with its keys, since when it uses each, and flags the
// ones older than --max-age-days.
func (a *App) keys(ctx context.Context, args []string) error {
	fs := newFlagSet("keys")
	sm := fs.String("state-machine", "", "")
	maxAgeDays := fs.String("max-age-days", "", "")
	asJSON := fs.Bool("json", false, "")
	positional, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageErrorf("unexpected argument %q", positional[0])
	}
	if *maxAgeDays == "" {
		*maxAgeDays = a.Env("MAX_KEY_AGE_DAYS")
	}
	maxAge, err := keyage.ParseMaxAgeDays(*maxAgeDays)
	if err != nil {
		return usageErrorf("--max-age-days: %v", err)
	}
	if a.NewKeySources == nil {
		return fmt.Errorf("keys: no Databricks account configured")
	}
	src, err := a.NewKeySources(ctx)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	inv := &keyage.Inventory{Account: src.Account, Aliases: src.Aliases, MaxAge: maxAge}
	// The rotator's history says since when; without a state machine, the configurations' creation
	// times do (see keyage).
	if machine := a.stateMachine(*sm); machine != "" {
		if _, err := stateMachineARN(machine); err != nil {
			return err
		}
		api, err := a.client(ctx)
		if err != nil {
			return err
		}
		inv.History, inv.StateMachineARN = api, machine
	}
	rep, err := inv.Build(ctx, a.Now())
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(a.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(a.Stdout, "Keys of the account's workspaces at %s (maximum age %.0f days)\n\n", rep.CheckedAt.Format(time.RFC3339), maxAge.Hours()/24)
	fmt.Fprint(a.Stdout, keyage.Render(rep))
	return nil
}
