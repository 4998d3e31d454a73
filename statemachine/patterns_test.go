package statemachine

// The event patterns of template.yaml, run offline through quamina (github.com/timbray/quamina v1.4.0,
// Tim Bray's Go matcher modelled on EventBridge's own engine, aws/event-ruler) against the KMS events in
// events/kms/ and a few synthesized ones.
//
// What quamina v1.4.0 can and cannot express (pattern.go readSpecialPattern): exact values, "prefix",
// "exists" (true and false, leaf fields only, as in EventBridge), "anything-but" with a list of strings,
// "shellstyle" and "equals-ignore-case". It has no "numeric", "cidr", "suffix", "wildcard", "$or", and
// no anything-but with "prefix"/"suffix" inside. The template's patterns use exact values, prefix and
// exists:false only, so every one of them is checked as written; a pattern that used an operator quamina
// lacks would fail AddPattern below (TestEventPatternsRouteEveryKmsEventToTheRightRule says which)
// instead of being skipped. Matching into arrays of objects (requestParameters.tags[].tagKey) is path
// flattening in both quamina and EventBridge.
//
// Buses are not part of a pattern: the test keeps one matcher per bus the rules listen on, and sends
// KMS events to the default bus and the rotator's own events to the rotator's bus.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"quamina.net/go/quamina"
)

// busMatchers builds one quamina matcher per bus, holding the resolved patterns of the rules on it.
func busMatchers(t *testing.T, tpl *cfnTemplate, d *deployment) map[string]*quamina.Quamina {
	t.Helper()
	out := map[string]*quamina.Quamina{}
	for _, r := range eventRules(tpl) {
		bus := "default"
		if r.bus != nil {
			bus = fmt.Sprint(d.resolve(r.bus))
		}
		if out[bus] == nil {
			q, err := quamina.New()
			require.NoError(t, err)
			out[bus] = q
		}
		pattern, err := json.Marshal(d.resolve(r.pattern))
		require.NoError(t, err)
		require.NoError(t, out[bus].AddPattern(r.id, string(pattern)),
			"rule %s: quamina v1.4.0 rejects the pattern %s (an operator it does not support? see the top of this file)", r.id, pattern)
	}
	return out
}

func matches(t *testing.T, q *quamina.Quamina, event []byte) []string {
	t.Helper()
	if q == nil {
		return nil
	}
	got, err := q.MatchesForEvent(event)
	require.NoError(t, err)
	var ids []string
	for _, x := range got {
		ids = append(ids, fmt.Sprint(x))
	}
	sort.Strings(ids)
	return slices.Compact(ids)
}

const (
	optIn        = "TriggerFunction.KeyOptIn"
	aliasChanged = "TriggerFunction.AliasChanged"
	rotatedTrail = "TriggerFunction.KeyMaterialRotatedViaCloudTrail"
	rotated      = "TriggerFunction.KeyMaterialRotated"
	guardTrail   = "KeyGuardFunction.KeyDisabledOrDeletionScheduled"
	guardDeleted = "KeyGuardFunction.KeyDeleted"
	notify       = "OperatorNotificationRule"
)

// kmsRoutes is where every file in events/kms/ goes on the default bus with the default parameters.
// "none" means no rule: EventBridge never invokes a function for it. Some events reach the trigger and
// are then ignored by its code (untagged key behind an alias, the rotator's own role): the patterns
// cannot know a key's tags or, without losing IAM-user events, exclude a caller (template.yaml).
var kmsRoutes = map[string][]string{
	"kms-createkey-cloudtrail.json":                     {optIn},
	"kms-createkey-workspaces-usecases-cloudtrail.json": {optIn},
	"kms-createkey-bad-tag-cloudtrail.json":             {optIn}, // the code names the bad tag in its log
	"kms-createkey-untagged-cloudtrail.json":            nil,     // no tag under the prefix: not opted in
	"kms-tagresource-cloudtrail.json":                   {optIn},
	"kms-tagresource-other-tags-cloudtrail.json":        nil, // only cost-center: nothing under the prefix
	"kms-createalias-cloudtrail.json":                   {aliasChanged},
	"kms-createalias-govcloud-cloudtrail.json":          {aliasChanged},
	"kms-createalias-untagged-key-cloudtrail.json":      {aliasChanged}, // the code reads the key's tags and ignores it
	"kms-createalias-failed-cloudtrail.json":            nil,            // errorCode present
	"kms-updatealias-cloudtrail.json":                   {aliasChanged},
	"kms-updatealias-by-rotator-role-cloudtrail.json":   {aliasChanged}, // the code ignores IGNORED_PRINCIPAL_ARNS
	"kms-updatealias-other-prefix-cloudtrail.json":      nil,            // alias/databricks-ws-cmk is not under alias/databricks/
	"kms-rotatekeyondemand-cloudtrail.json":             {rotatedTrail},
	"kms-rotatekey-service-event-cloudtrail.json":       {rotatedTrail},
	"kms-cmk-rotation.json":                             {rotated},
	"kms-schedulekeydeletion-cloudtrail.json":           {guardTrail},
	"kms-disablekey-cloudtrail.json":                    {guardTrail},
	"kms-putkeypolicy-cloudtrail.json":                  {guardTrail},
	"kms-cmk-deletion.json":                             {guardDeleted},
	"kms-imported-key-material-expiration.json":         nil, // no rule: neither the trigger nor the key guard handles it
}

func readEvent(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "events", "kms", name))
	require.NoError(t, err)
	var ev map[string]any
	require.NoError(t, json.Unmarshal(raw, &ev), "%s", name)
	return ev
}

func encode(t *testing.T, ev map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	return b
}

// synthesized derives an event from a fixture.
func synthesized(t *testing.T, from string, change func(ev, detail map[string]any)) []byte {
	t.Helper()
	ev := readEvent(t, from)
	detail, _ := ev["detail"].(map[string]any)
	change(ev, detail)
	return encode(t, ev)
}

func requestParameters(detail map[string]any) map[string]any {
	rp, _ := detail["requestParameters"].(map[string]any)
	return rp
}

func TestEveryKmsEventFixtureHasAnExpectedRoute(t *testing.T) {
	files, err := filepath.Glob("../events/kms/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
		assert.Contains(t, kmsRoutes, filepath.Base(f), "events/kms/%s has no row in kmsRoutes: decide which rule must match it", filepath.Base(f))
	}
	for name := range kmsRoutes {
		assert.Contains(t, names, name, "kmsRoutes names %s, which events/kms/ does not have", name)
	}
}

func TestEventPatternsRouteEveryKmsEventToTheRightRule(t *testing.T) {
	tpl := loadTemplate(t)
	d := deploy(t, tpl, nil)
	buses := busMatchers(t, tpl, d)
	for name, want := range kmsRoutes {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "events", "kms", name))
			require.NoError(t, err)
			assert.Equal(t, want, matches(t, buses["default"], raw))
		})
	}

	synthetic := []struct {
		name  string
		event []byte
		want  []string
	}{
		{"a ScheduleKeyDeletion that failed", synthesized(t, "kms-schedulekeydeletion-cloudtrail.json", func(_, d map[string]any) {
			d["errorCode"], d["errorMessage"] = "KMSInvalidStateException", "arn:aws:kms:... is pending deletion."
		}), nil},
		{"a PutKeyPolicy that was refused (MalformedPolicyDocument)", synthesized(t, "kms-putkeypolicy-cloudtrail.json", func(_, d map[string]any) {
			d["errorCode"] = "MalformedPolicyDocumentException"
		}), nil},
		{"a DisableKey that was denied", synthesized(t, "kms-disablekey-cloudtrail.json", func(_, d map[string]any) {
			d["errorCode"] = "AccessDenied"
		}), nil},
		{"a TagResource under the prefix that failed", synthesized(t, "kms-tagresource-cloudtrail.json", func(_, d map[string]any) {
			d["errorCode"] = "AccessDenied"
		}), nil},
		{"a RotateKeyOnDemand that hit its quota", synthesized(t, "kms-rotatekeyondemand-cloudtrail.json", func(_, d map[string]any) {
			d["errorCode"] = "LimitExceededException"
		}), nil},
		{"CreateAlias of a look-alike prefix", synthesized(t, "kms-createalias-cloudtrail.json", func(_, d map[string]any) {
			requestParameters(d)["aliasName"] = "alias/databricks-ws-cmk"
		}), nil},
		{"CreateAlias of an unrelated key's alias", synthesized(t, "kms-createalias-cloudtrail.json", func(_, d map[string]any) {
			requestParameters(d)["aliasName"] = "alias/billing/reports"
			requestParameters(d)["targetKeyId"] = "arn:aws:kms:us-west-2:111122223333:key/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
		}), nil},
		{"the prefix without its slash is not the prefix", synthesized(t, "kms-updatealias-cloudtrail.json", func(_, d map[string]any) {
			requestParameters(d)["aliasName"] = "alias/databricks"
		}), nil},
		{"a tag key that only contains the prefix", synthesized(t, "kms-tagresource-cloudtrail.json", func(_, d map[string]any) {
			requestParameters(d)["tags"] = []any{map[string]any{"tagKey": "team:databricks:workspace", "tagValue": "1234567890123456"}}
		}), nil},
		{"a second tag under the prefix among others", synthesized(t, "kms-tagresource-other-tags-cloudtrail.json", func(_, d map[string]any) {
			tags, _ := requestParameters(d)["tags"].([]any)
			requestParameters(d)["tags"] = append(tags, map[string]any{"tagKey": "databricks:dry-run", "tagValue": "true"})
		}), []string{optIn}},
		{"a non-KMS service's TagResource with the same tags", synthesized(t, "kms-tagresource-cloudtrail.json", func(ev, d map[string]any) {
			ev["source"], d["eventSource"] = "aws.lambda", "lambda.amazonaws.com"
		}), nil},
		{"an S3 API call", synthesized(t, "kms-createkey-cloudtrail.json", func(ev, d map[string]any) {
			ev["source"], d["eventSource"], d["eventName"] = "aws.s3", "s3.amazonaws.com", "PutBucketPolicy"
		}), nil},
		{"a read-only KMS call", synthesized(t, "kms-tagresource-cloudtrail.json", func(_, d map[string]any) {
			d["eventName"], d["readOnly"] = "ListResourceTags", true
		}), nil},
		{"CancelKeyDeletion (the key guard's own undo)", synthesized(t, "kms-schedulekeydeletion-cloudtrail.json", func(_, d map[string]any) {
			d["eventName"] = "CancelKeyDeletion"
		}), nil},
	}
	for _, s := range synthetic {
		t.Run(s.name, func(t *testing.T) {
			assert.Equal(t, s.want, matches(t, buses["default"], s.event))
		})
	}
}

func TestEventPatternsFollowTheAliasAndTagPrefixParameters(t *testing.T) {
	tpl := loadTemplate(t)
	d := deploy(t, tpl, map[string]string{"AliasPrefix": "alias/data-platform/", "TagPrefix": "dp:"})
	buses := busMatchers(t, tpl, d)
	moved := map[string][]byte{
		"alias under the new prefix": synthesized(t, "kms-createalias-cloudtrail.json", func(_, d map[string]any) {
			requestParameters(d)["aliasName"] = "alias/data-platform/ws-cmk"
		}),
		"tag under the new prefix": synthesized(t, "kms-tagresource-cloudtrail.json", func(_, d map[string]any) {
			requestParameters(d)["tags"] = []any{map[string]any{"tagKey": "dp:workspace", "tagValue": "1234567890123456"}}
		}),
	}
	assert.Equal(t, []string{aliasChanged}, matches(t, buses["default"], moved["alias under the new prefix"]))
	assert.Equal(t, []string{optIn}, matches(t, buses["default"], moved["tag under the new prefix"]))
	for _, name := range []string{"kms-createalias-cloudtrail.json", "kms-tagresource-cloudtrail.json", "kms-createkey-cloudtrail.json"} {
		raw, err := os.ReadFile(filepath.Join("..", "events", "kms", name))
		require.NoError(t, err)
		assert.Empty(t, matches(t, buses["default"], raw), "%s uses the default prefixes, which this deployment does not watch", name)
	}
}

func TestOperatorsHearAboutFailuresRiskAndRetirementButNotRoutineEvents(t *testing.T) {
	tpl := loadTemplate(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		buses := busMatchers(t, tpl, d)
		bus, _ := expectedBus(d)
		for detailType, want := range map[string][]string{
			"Rotation Failed":        {notify},
			"Rotation Rejected":      {notify},
			"Key In Use At Risk":     {notify},
			"Previous Key Retirable": {notify},
			"Rotation Succeeded":     nil,
			"Rotation Plan":          nil,
			"Key Material Rotated":   nil,
		} {
			ev := map[string]any{"version": "0", "id": "7f0c7d8e-0000-4000-8000-000000000001", "detail-type": detailType,
				"source": "databricks-cmk-rotator", "account": testAccount, "time": "2026-01-01T00:00:00Z", "region": testRegion,
				"resources": []any{}, "detail": map[string]any{"outcome": "X"}}
			got := matches(t, buses[bus], encode(t, ev))
			if bus == "default" {
				got = slices.DeleteFunc(got, func(id string) bool { return id != notify })
			}
			assert.Equal(t, want, got, "%s on bus %s", detailType, bus)
		}
		spoof := map[string]any{"version": "0", "id": "x", "detail-type": "Rotation Failed", "source": "someone-else",
			"account": testAccount, "time": "2026-01-01T00:00:00Z", "region": testRegion, "resources": []any{}, "detail": map[string]any{}}
		assert.Empty(t, matches(t, buses[bus], encode(t, spoof)), "another source's Rotation Failed")
	})
}

const rescueRule = "RescueFunction.RotationEndedBadly"

// rescueRoutes is where every file in events/stepfunctions/ goes on the default bus with the default
// parameters: the rotation's executions that ended FAILED, TIMED_OUT or ABORTED reach the rescue, and
// nothing else does.
var rescueRoutes = map[string][]string{
	"rotation-execution-aborted.json":              {rescueRule},
	"rotation-execution-timed-out.json":            {rescueRule},
	"rotation-execution-failed-runtime-error.json": {rescueRule},
	"rotation-execution-failed-data-limit.json":    {rescueRule},
	"rotation-execution-succeeded.json":            nil,
}

func readStatusChange(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "events", "stepfunctions", name))
	require.NoError(t, err)
	var ev map[string]any
	require.NoError(t, json.Unmarshal(raw, &ev), "%s", name)
	return ev
}

func TestEveryStepFunctionsEventFixtureHasAnExpectedRoute(t *testing.T) {
	files, err := filepath.Glob("../events/stepfunctions/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
		assert.Contains(t, rescueRoutes, filepath.Base(f), "events/stepfunctions/%s has no row in rescueRoutes: decide which rule must match it", filepath.Base(f))
	}
	for name := range rescueRoutes {
		assert.Contains(t, names, name, "rescueRoutes names %s, which events/stepfunctions/ does not have", name)
	}
}

func TestTheRescueHearsTheRotationsExecutionsThatEndedBadlyAndNothingElse(t *testing.T) {
	tpl := loadTemplate(t)
	d := deploy(t, tpl, nil)
	buses := busMatchers(t, tpl, d)
	for name, want := range rescueRoutes {
		t.Run(name, func(t *testing.T) {
			ev := readStatusChange(t, name)
			detail, _ := ev["detail"].(map[string]any)
			require.Equal(t, d.ref("RotationStateMachine"), detail["stateMachineArn"], "the fixtures are executions of this deployment's rotation state machine")
			assert.Equal(t, want, matches(t, buses["default"], encode(t, ev)))
		})
	}

	changed := func(change func(ev, detail map[string]any)) []byte {
		ev := readStatusChange(t, "rotation-execution-aborted.json")
		detail, _ := ev["detail"].(map[string]any)
		change(ev, detail)
		return encode(t, ev)
	}
	reminderExecution := func(detail map[string]any) {
		detail["stateMachineArn"] = d.ref("RetirementReminderStateMachine")
		detail["executionArn"] = d.arn("states", "execution:"+fmt.Sprint(d.getAtt("RetirementReminderStateMachine", "Name"))+":retire-1")
	}
	for _, s := range []struct {
		name  string
		event []byte
	}{
		{"a rotation that started (RUNNING)", changed(func(_, d map[string]any) { d["status"] = "RUNNING" })},
		{"a rotation waiting to be redriven", changed(func(_, d map[string]any) { d["status"] = "PENDING_REDRIVE" })},
		{"the retirement reminder's failed execution", changed(func(_, d map[string]any) { reminderExecution(d) })},
		{"another stack's rotation state machine", changed(func(_, d map[string]any) {
			d["stateMachineArn"] = "arn:aws:states:us-west-2:111122223333:stateMachine:staging-RotationStateMachine-9Z8Y7X6W5V4U"
		})},
		{"the StopExecution API call itself (CloudTrail)", changed(func(ev, d map[string]any) {
			ev["detail-type"] = "AWS API Call via CloudTrail"
			d["eventSource"], d["eventName"] = "states.amazonaws.com", "StopExecution"
		})},
		{"another service's FAILED status change", changed(func(ev, _ map[string]any) { ev["source"] = "aws.batch" })},
	} {
		t.Run(s.name, func(t *testing.T) {
			assert.Empty(t, matches(t, buses["default"], s.event))
		})
	}

	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		buses := busMatchers(t, tpl, d)
		for _, status := range []string{"FAILED", "TIMED_OUT", "ABORTED"} {
			ev := readStatusChange(t, "rotation-execution-aborted.json")
			detail, _ := ev["detail"].(map[string]any)
			detail["status"] = status
			detail["stateMachineArn"] = d.ref("RotationStateMachine")
			assert.Equal(t, []string{rescueRule}, matches(t, buses["default"], encode(t, ev)), "%s in this deployment's partition", status)
		}
	})
}
