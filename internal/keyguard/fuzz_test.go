package keyguard_test

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyguard"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
)

var keyRefRE = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|mrk-[0-9a-fA-F]{32}|alias/[A-Za-z0-9/_-]{1,250})$`)

// FuzzParseEvent feeds arbitrary events to ParseEvent: it must never panic, skip only with a
// bounded reason, and act only on one of its three changes with exactly one usable key reference.
// The seed corpus in testdata/fuzz/FuzzParseEvent holds the fixtures under events/kms and the
// variants the tests build from them (alias, failed call, trimmed deletion).
func FuzzParseEvent(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev events.CloudWatchEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return
		}
		kc, err := keyguard.ParseEvent(ev, []string{rotatorRole})
		if err != nil {
			sk, ok := err.(*keyguard.Skip)
			if !ok {
				t.Fatalf("error %T is not a *Skip: %v", err, err)
			}
			if sk.Reason == "" || len(sk.Reason) > 2000 {
				t.Fatalf("skip reason of %d bytes: %q", len(sk.Reason), sk.Reason)
			}
			return
		}
		switch kc.Change {
		case keyguard.ChangeScheduleKeyDeletion, keyguard.ChangeDisableKey, keyguard.ChangeKeyDeleted:
		default:
			t.Fatalf("unknown change %q", kc.Change)
		}
		if kc.EventName == "" {
			t.Fatal("a change without an event name")
		}
		if (kc.KeyARN == "") == (kc.KeyRef == "") {
			t.Fatalf("want exactly one of KeyARN %q and KeyRef %q", kc.KeyARN, kc.KeyRef)
		}
		if kc.KeyARN != "" {
			if k, err := kmscheck.ParseKeyARN(kc.KeyARN); err != nil || k.IsAlias {
				t.Fatalf("KeyARN %q is not a key ARN: %v", kc.KeyARN, err)
			}
		}
		if kc.KeyRef != "" {
			if kc.Change == keyguard.ChangeKeyDeleted {
				t.Fatalf("a deletion must name its key by ARN, got %q", kc.KeyRef)
			}
			if k, err := kmscheck.ParseKeyARN(kc.KeyRef); !keyRefRE.MatchString(kc.KeyRef) && (err != nil || !k.IsAlias) {
				t.Fatalf("KeyRef %q is neither a key id, an alias nor an alias ARN", kc.KeyRef)
			}
		}
	})
}
