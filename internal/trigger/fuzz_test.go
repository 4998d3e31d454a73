package trigger_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
)

// FuzzDecide feeds arbitrary events and tag values to Decide: it must never panic, never fail when
// the tag lookup works, and only start executions it can name and describe. The seed corpus in
// testdata/fuzz/FuzzDecide holds the fixtures under events/kms.
func FuzzDecide(f *testing.F) {
	cfg := testConfig(f)
	f.Fuzz(func(t *testing.T, raw []byte, workspaceTag, useCasesTag string) {
		var ev events.CloudWatchEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return
		}
		lookup := func(context.Context, string) (map[string]string, error) {
			return map[string]string{"databricks:workspace": workspaceTag, "databricks:use-cases": useCasesTag}, nil
		}
		d, err := trigger.Decide(context.Background(), cfg, ev, lookup)
		if err != nil {
			t.Fatalf("Decide failed although the tag lookup works: %v", err)
		}
		if d.Reason == "" {
			t.Fatalf("%s decision without a reason", d.Action)
		}
		switch d.Action {
		case trigger.ActionStart:
			if !executionNameRE.MatchString(d.ExecutionName) {
				t.Fatalf("invalid execution name %q", d.ExecutionName)
			}
			if len(d.Request.WorkspaceIDs) == 0 {
				t.Fatal("start without workspaces")
			}
			if k, err := kmscheck.ParseKeyARN(d.Request.KeyARN); err != nil || k.IsAlias {
				t.Fatalf("start with key ARN %q: %v", d.Request.KeyARN, err)
			}
			if _, err := d.Input(); err != nil {
				t.Fatal(err)
			}
		case trigger.ActionAudit:
			if d.Audit == nil || d.Audit.KeyARN == "" {
				t.Fatal("audit without a key")
			}
		case trigger.ActionIgnore:
		default:
			t.Fatalf("unknown action %q", d.Action)
		}
	})
}
