package keyage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventpub"
)

// Events publishes the Key Age Exceeded events.
type Events interface {
	PutEvents(ctx context.Context, params *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ Events = (*eventbridge.Client)(nil)

// Check is the scheduled KeyAgeCheck function.
type Check struct {
	Inventory *Inventory
	Events    Events
	EventBus  string
	Now       func() time.Time
}

// CheckResult is what one run found.
type CheckResult struct {
	Checked  int `json:"checked"`
	Exceeded int `json:"exceeded"`
}

// Handle runs on the schedule; the scheduled event itself carries nothing the check needs.
func (c *Check) Handle(ctx context.Context, _ json.RawMessage) (CheckResult, error) {
	rep, err := c.Inventory.Build(ctx, c.Now())
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{Checked: len(rep.Rows)}
	for _, row := range rep.Rows {
		if !row.AgeExceeded {
			continue
		}
		res.Exceeded++
		if err := eventpub.Publish(ctx, c.Events, c.EventBus, DetailKeyAgeExceeded, row, row.KeyARN); err != nil {
			return CheckResult{}, fmt.Errorf("publishing %s for workspace %s: %w", DetailKeyAgeExceeded, row.WorkspaceID, err)
		}
	}
	return res, nil
}

// Render is the table cmkrotate keys prints.
func Render(rep Report) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "WORKSPACE\tNAME\tUSE\tKEY CONFIGURATION\tKEY\tALIAS\tSINCE\tAGE")
	exceeded := 0
	for _, r := range rep.Rows {
		since := "unknown"
		if !r.Since.IsZero() {
			since = r.Since.Format("2006-01-02")
			if r.SinceSource == SinceRotation {
				since += " (" + r.Execution + ")"
			} else {
				since += " (" + r.SinceSource + ")"
			}
		}
		age := fmt.Sprintf("%.1f d", r.AgeDays)
		if r.AgeExceeded {
			age += fmt.Sprintf("  EXCEEDED (max %.0f d)", r.MaxAgeDays)
			exceeded++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.WorkspaceID, r.WorkspaceName, r.Use, r.KeyConfigID, orDash(r.KeyARN), orDash(r.Alias), since, age)
	}
	_ = w.Flush()
	if len(rep.Unencrypted) > 0 {
		fmt.Fprintf(&b, "\nWithout a customer-managed key: %s\n", strings.Join(rep.Unencrypted, ", "))
	}
	if exceeded > 0 {
		fmt.Fprintf(&b, "\n%d key use(s) older than the maximum age: rotate them (cmkrotate start).\n", exceeded)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
