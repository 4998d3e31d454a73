package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	bundled "github.com/cmk-rotator/databricks-cmk-rotator/policy"
)

// FuzzParse: any bytes either load or fail with a *policy.Error; a policy that loads evaluates any
// request without panicking, and its windows always find a start within a week.
func FuzzParse(f *testing.F) {
	f.Add(bundled.Document)
	f.Add([]byte(base))
	f.Add([]byte(strings.Replace(base, "Europe/Berlin", "America/St_Johns", 1)))
	f.Add([]byte("version: 1\nrules:\n  - name: a\n    workspaces: [\"1\"]\n    key_accounts: [\"111122223333\"]\n    mode: automatic\n    window: \"Sat,Sun 23:30-01:00 UTC\"\n"))
	f.Add([]byte("{\"version\": 1, \"rules\": [{\"name\": \"j\", \"workspaces\": [\"7\"], \"key_accounts\": [\"111122223333\"], \"mode\": \"approval\"}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := policy.Parse(data)
		if err != nil {
			if _, ok := err.(*policy.Error); !ok {
				t.Fatalf("Parse returned %T, not *policy.Error: %v", err, err)
			}
			return
		}
		for _, ws := range []string{"1", "7", "1111111111111111", "3333333333333333"} {
			for _, emergency := range []bool{false, true} {
				d, err := p.Evaluate(policy.Request{WorkspaceIDs: []string{ws}, KeyARN: "arn:aws:kms:us-west-2:111122223333:key/k",
					KeyAlias: "alias/databricks/x", UseCases: []string{"MANAGED_SERVICES"}, Emergency: emergency,
					Automatic: !emergency, Actor: "arn:aws:iam::111122223333:user/Alice"})
				if err != nil {
					continue
				}
				now := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC) // a DST change in Europe
				start, closes, err := d.NextStart(now, policy.Budget([]string{"MANAGED_SERVICES"}))
				if err != nil {
					t.Fatalf("a loaded window has no start: %v", err)
				}
				if start.Before(now) || start.After(now.Add(8*24*time.Hour)) || (!closes.IsZero() && start.Add(policy.Budget(nil)).After(closes)) {
					t.Fatalf("start %s closes %s for now %s", start, closes, now)
				}
			}
		}
	})
}
