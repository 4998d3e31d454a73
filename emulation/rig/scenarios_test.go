package rig_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/sandbox"
)

// testSecret is recognisable on purpose: no log line, event or payload may ever contain it.
const testSecret = "dose-SECRET-9f8e7d6c5b4a-never-log-me"

type scenario struct {
	t   *testing.T
	ctx context.Context
	rig *rig.Rig
}

func start(t *testing.T, customise func(*rig.Options)) *scenario {
	t.Helper()
	root, err := sandbox.RepoRoot()
	require.NoError(t, err)
	buildDir := os.Getenv("ROTATOR_BUILD_DIR")
	if buildDir == "" {
		buildDir = filepath.Join(root, ".build", "local")
	}
	if _, err := sandbox.FindTools(root); err != nil {
		skipOrFail(t, err.Error())
	}
	if _, err := os.Stat(filepath.Join(buildDir, "ValidateFunction", "bootstrap")); err != nil {
		skipOrFail(t, "function binaries missing (run `make build-local`): "+err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	opts := rig.Options{
		RepoRoot: root, BuildDir: buildDir, Seed: rig.DemoSeed(rig.DefaultRegion), ClientSecret: testSecret,
		Fake: fakeTime(t),
	}
	if customise != nil {
		customise(&opts)
	}
	r, err := rig.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range r.AWS.Executions() {
				var b strings.Builder
				_ = sandbox.FormatTimeline(&b, r.Timeline(e.ExecutionArn))
				t.Logf("execution %s %s %s %s\n%s", e.Name, e.Status, e.Error, e.Cause, b.String())
			}
			for _, line := range r.Logs() {
				if strings.Contains(line, `"level":"ERROR"`) {
					t.Log(line)
				}
			}
		}
		r.Close()
	})
	require.NoError(t, r.PrepareFixtureKeys(ctx))
	s := &scenario{t: t, ctx: ctx, rig: r}
	t.Cleanup(s.assertNoSecretLeaked)
	return s
}

// fakeTime is how the fake's time runs in a scenario. By default it is realistic (dbfake.RealisticTime):
// Databricks' relative latencies with one Databricks minute lasting 20ms, each transition landing at
// a random moment between two checks, so that every scenario and every fault row also meets a
// cluster still TERMINATING or a workspace still PROVISIONING. The generator is seeded from the
// test's name (reproducible per test; ROTATOR_FAKE_SEED adds to it to explore other draws).
// ROTATOR_FAKE_TIME=fast restores the fixed 100ms transitions.
//
// Users starting compute again are placed deterministically by the scenarios of realtime_test.go.
// Random user restarts (UserRestarts) stay off here: one that lands between the last stop check and
// the PATCH is refused by Databricks as ComputeStillRunning, and the routing of that refusal back to
// the stop loop belongs to the PATCH side of issue 8; ROTATOR_FAKE_USERS=1 turns them on.
func fakeTime(t *testing.T) dbfake.Options {
	if os.Getenv("ROTATOR_FAKE_TIME") == "fast" {
		return dbfake.Options{TransitionDelay: 100 * time.Millisecond, WorkspaceUpdateDelay: 100 * time.Millisecond}
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(t.Name() + os.Getenv("ROTATOR_FAKE_SEED")))
	return dbfake.Options{Realistic: &dbfake.RealisticTime{Minute: 20 * time.Millisecond, Seed: h.Sum64(),
		UserRestarts: os.Getenv("ROTATOR_FAKE_USERS") == "1"}}
}

func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("SANDBOX_REQUIRED") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func (s *scenario) deliverFile(name string) {
	s.t.Helper()
	event, err := os.ReadFile(filepath.Join("..", "..", "events", "kms", name))
	require.NoError(s.t, err)
	require.NoError(s.t, s.rig.Deliver(s.ctx, event))
}

func (s *scenario) startInput(input map[string]any) string {
	s.t.Helper()
	raw, err := json.Marshal(input)
	require.NoError(s.t, err)
	arn, err := s.rig.StartExecution(s.ctx, "", raw)
	require.NoError(s.t, err)
	return arn
}

// finish waits for every execution and returns the rotations.
func (s *scenario) finish() []awsfake.Execution {
	s.t.Helper()
	s.rig.WaitForAll(s.ctx)
	return s.rig.Rotations()
}

func (s *scenario) onlyRotation() awsfake.Execution {
	s.t.Helper()
	rotations := s.finish()
	require.Len(s.t, rotations, 1)
	return rotations[0]
}

func (s *scenario) events(detailType string) []map[string]any {
	var out []map[string]any
	for _, e := range s.rig.AWS.Events() {
		if e.DetailType != detailType {
			continue
		}
		var d map[string]any
		require.NoError(s.t, json.Unmarshal([]byte(e.Detail), &d))
		out = append(out, d)
	}
	return out
}

// timeline is a rotation's own timeline followed by those of the workspace executions it started
// (each workspace rotates in a child execution of statemachine/workspace-rotation.asl.json).
func (s *scenario) timeline(arn string) sandbox.Timeline {
	tl := append(sandbox.Timeline(nil), s.rig.Timeline(arn)...)
	for _, child := range s.rig.Children(arn) {
		tl = append(tl, s.rig.Timeline(child.ExecutionArn)...)
	}
	return tl
}

func (s *scenario) statesVisited(arn string) []string {
	var out []string
	for _, ev := range s.timeline(arn) {
		if ev.State != "" && !slices.Contains(out, ev.State) {
			out = append(out, ev.State)
		}
	}
	return out
}

// assertNothingChanged proves a refusal came before any stop: Databricks saw only reads.
func (s *scenario) assertNothingChanged() {
	s.t.Helper()
	for _, r := range s.rig.Fake.Requests() {
		if strings.HasPrefix(r.Path, "/api/") {
			assert.Equal(s.t, "GET", r.Method, "something was changed: %s %s", r.Method, r.Path)
		}
	}
	assert.Equal(s.t, rig.OldKeyConfigID, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId)
	assert.Equal(s.t, compute.StateRunning, s.rig.Fake.Cluster(rig.AnalyticsWorkspace, "0101-etl-interactive").State)
}

// assertAnalyticsComputeRestored checks that every non-job resource that ran before runs again,
// with the pool's settings exactly as they were.
func (s *scenario) assertAnalyticsComputeRestored() {
	s.t.Helper()
	fake := s.rig.Fake
	ws := rig.AnalyticsWorkspace
	for _, id := range []string{"0101-etl-interactive", "0102-data-science", "0103-api-automation"} {
		assert.Equal(s.t, compute.StateRunning, fake.Cluster(ws, id).State, id)
	}
	assert.Equal(s.t, compute.StateTerminated, fake.Cluster(ws, "0104-nightly-job").State, "job clusters are not restarted by hand")
	assert.Equal(s.t, compute.StateTerminated, fake.Cluster(ws, "0105-archived").State, "what was off stays off")
	pool := fake.Pool(ws, "pool-general")
	assert.Equal(s.t, 2, pool.MinIdleInstances)
	assert.Equal(s.t, 30, pool.IdleInstanceAutoterminationMinutes)
	assert.Equal(s.t, 20, pool.MaxCapacity)
	assert.Equal(s.t, map[string]string{"team": "platform"}, pool.CustomTags)
	assert.Equal(s.t, sql.StateRunning, fake.Warehouse(ws, "wh-bi-classic").State)
	assert.Equal(s.t, pipelines.PipelineStateRunning, fake.Pipeline(ws, "pl-orders-stream").State)
}

func (s *scenario) assertOnNewKey(workspace int64, keyARN string) string {
	s.t.Helper()
	id := s.rig.Fake.Workspace(workspace).ManagedServicesCustomerManagedKeyId
	require.NotEqual(s.t, rig.OldKeyConfigID, id)
	var found bool
	for _, c := range s.rig.Fake.KeyConfigs() {
		if c.CustomerManagedKeyId == id {
			found = true
			assert.Equal(s.t, keyARN, c.AwsKeyInfo.KeyArn)
		}
	}
	assert.True(s.t, found, "workspace points at key configuration %s, which does not exist", id)
	return id
}

func (s *scenario) assertNoSecretLeaked() {
	var places []string
	for _, line := range s.rig.Logs() {
		if strings.Contains(line, testSecret) {
			places = append(places, "log: "+line)
		}
	}
	for _, e := range append(s.rig.AWS.Events(), s.rig.AWS.FailedEvents()...) {
		if strings.Contains(e.Detail, testSecret) {
			places = append(places, "event "+e.DetailType)
		}
	}
	for _, e := range s.rig.AWS.Executions() {
		for _, text := range []string{e.Input, e.Output, e.Error, e.Cause} {
			if strings.Contains(text, testSecret) {
				places = append(places, "execution "+e.Name)
			}
		}
		for _, ev := range s.rig.Timeline(e.ExecutionArn) {
			if strings.Contains(string(ev.Input)+string(ev.Output)+ev.Cause, testSecret) {
				places = append(places, fmt.Sprintf("execution %s state %s", e.Name, ev.State))
			}
		}
	}
	for _, r := range s.rig.Fake.Requests() {
		if strings.Contains(string(r.Body), testSecret) {
			places = append(places, "Databricks request body "+r.Path)
		}
	}
	assert.Empty(s.t, places, "the client secret leaked")
}

func TestRotationFromACreateKeyEvent(t *testing.T) {
	s := start(t, nil)
	s.deliverFile("kms-createkey-cloudtrail.json")
	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)

	newID := s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.EventKeyID))
	s.assertAnalyticsComputeRestored()

	succeeded := s.events("Rotation Succeeded")
	require.Len(t, succeeded, 1)
	d := succeeded[0]
	assert.Equal(t, "1234567890123456", d["workspace_id"])
	assert.Equal(t, rig.OldKeyConfigID, d["previous_key_config_id"])
	assert.Equal(t, newID, d["new_key_config_id"])
	assert.Greater(t, d["downtime_seconds"], 0.0)
	assert.Equal(t, map[string]any{"clusters": 3.0, "pools": 1.0, "warehouses": 1.0, "pipelines": 1.0}, d["restarted"])
	assert.Len(t, d["not_restarted"], 1, "the job cluster")

	retirable := s.events("Previous Key Retirable")
	require.Len(t, retirable, 1, "the 24-hour reminder ran as its own execution")
	assert.Equal(t, s.rig.KeyARN(rig.EventKeyID), retirable[0]["new_key_arn"])
	assert.NotContains(t, s.statesVisited(exec.ExecutionArn), "QuietWindow", "managed services only: no quiet window")
}

func TestRotationFromAnUpdateAliasEvent(t *testing.T) {
	s := start(t, nil)
	s.deliverFile("kms-updatealias-cloudtrail.json")
	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	newID := s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.AliasTargetKeyID))
	for _, c := range s.rig.Fake.KeyConfigs() {
		if c.CustomerManagedKeyId == newID {
			assert.Equal(t, "alias/databricks/ws-cmk", c.AwsKeyInfo.KeyAlias)
		}
	}
	s.assertAnalyticsComputeRestored()
}

func TestRotationFromAConsoleInput(t *testing.T) {
	s := start(t, nil)
	arn := s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	exec := s.onlyRotation()
	require.Equal(t, arn, exec.ExecutionArn)
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.AliasTargetKeyID))
	s.assertAnalyticsComputeRestored()

	var out struct {
		Results []struct{ Outcome string } `json:"results"`
	}
	require.NoError(t, json.Unmarshal([]byte(exec.Output), &out))
	require.Len(t, out.Results, 1)
	assert.Equal(t, "ROTATED", out.Results[0].Outcome)
}

func TestAddingAStorageKeyKeepsTheQuietWindow(t *testing.T) {
	s := start(t, nil)
	s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID),
		"use_cases": []string{"MANAGED_SERVICES", "STORAGE"}})
	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	id := s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.AliasTargetKeyID))
	assert.Equal(t, id, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).StorageCustomerManagedKeyId)
	visited := s.statesVisited(exec.ExecutionArn)
	require.Contains(t, visited, "QuietWindow")
	assert.Less(t, slices.Index(visited, "QuietWindow"), slices.Index(visited, "RestartCompute"), "no compute starts before the quiet window ends")
	s.assertAnalyticsComputeRestored()
}

func TestRefusalsComeBeforeAnythingIsStopped(t *testing.T) {
	cases := []struct {
		name      string
		input     func(r *rig.Rig) map[string]any
		errorType string
		policy    string
	}{
		{"replacing a storage key", func(r *rig.Rig) map[string]any {
			return map[string]any{"workspace_ids": []string{"2345678901234567"}, "key_arn": r.KeyARN(rig.AliasTargetKeyID), "use_cases": []string{"MANAGED_SERVICES", "STORAGE"}}
		}, "StorageKeyReplacementRefused", ""},
		{"a key in another region", func(r *rig.Rig) map[string]any {
			return map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": "arn:aws:kms:eu-west-1:111122223333:key/" + rig.AliasTargetKeyID}
		}, "KeyRegionMismatch", ""},
		{"an unknown workspace", func(r *rig.Rig) map[string]any {
			return map[string]any{"workspace_ids": []string{"999"}, "key_arn": r.KeyARN(rig.AliasTargetKeyID)}
		}, "WorkspaceNotFound", policyAllowing("999")},
		{"a workspace the rotation policy does not name (default deny)", func(r *rig.Rig) map[string]any {
			return map[string]any{"workspace_ids": []string{"999"}, "key_arn": r.KeyARN(rig.AliasTargetKeyID)}
		}, "PolicyRejected", ""},
		{"a malformed input", func(r *rig.Rig) map[string]any {
			return map[string]any{"workspace_ids": "1234567890123456", "key_arn": r.KeyARN(rig.AliasTargetKeyID)}
		}, "InvalidInput", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, func(o *rig.Options) { o.Policy = tc.policy })
			s.startInput(tc.input(s.rig))
			exec := s.onlyRotation()
			assert.Equal(t, awsfake.StatusFailed, exec.Status)
			assert.Equal(t, tc.errorType, exec.Error, exec.Cause)
			rejected := s.events("Rotation Rejected")
			require.Len(t, rejected, 1)
			assert.Contains(t, rejected[0]["message"], "refused before anything was changed")
			s.assertNothingChanged()
		})
	}
}

func TestAKeyPolicyWithoutTheDatabricksGrantIsRefused(t *testing.T) {
	s := start(t, nil)
	key, err := s.rig.NewKey(s.ctx, "no Databricks grant", rig.AdminOnlyKeyPolicy(), nil)
	require.NoError(t, err)
	s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": *key.Arn})
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status)
	assert.Equal(t, "KeyPolicyRejected", exec.Error, exec.Cause)
	assert.Contains(t, exec.Cause, "414351767826")
	s.assertNothingChanged()
}

func TestASilentRevertEndsWithComputeRestoredAndAFailureEvent(t *testing.T) {
	for _, tc := range []struct {
		name, settle, caughtIn string
		behaviour              dbfake.PatchBehaviour
	}{
		// Default: the new id shows, compute comes back, and the look after the restart sees the
		// revert. The fake reverts at the first restart call, so the revert lands between the check
		// that saw the new id and ConfirmKey however fast or loaded the machine is.
		{"caught when confirming the key after the restart", "", "ConfirmKey", dbfake.PatchBehaviour{RevertAtFirstStart: true}},
		// With a settle window the revert is seen before the restart, and compensation brings compute back.
		{"caught within a settle window, before the restart", "2s", "Compensate", dbfake.PatchBehaviour{SilentRevert: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, func(o *rig.Options) {
				o.FunctionEnv = map[string]string{"WORKSPACE_UPDATE_BUDGET": "2s"}
				if tc.settle != "" {
					o.FunctionEnv["WORKSPACE_SETTLE"] = tc.settle
				}
			})
			s.rig.Fake.SetPatchBehaviour(rig.AnalyticsWorkspace, tc.behaviour)
			s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
			exec := s.onlyRotation()
			assert.Equal(t, awsfake.StatusFailed, exec.Status)
			assert.Equal(t, "RotationFailed", exec.Error)

			failed := s.events("Rotation Failed")
			require.Len(t, failed, 1)
			errDetail, _ := failed[0]["error"].(map[string]any)
			assert.Equal(t, "WorkspaceReverted", errDetail["type"])
			assert.NotNil(t, failed[0]["inventory"], "the failure event carries the whole inventory")
			assert.Empty(t, failed[0]["still_down"])
			assert.Contains(t, failed[0]["message"], "everything that was stopped is running again")
			assert.Equal(t, rig.OldKeyConfigID, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId)
			assert.Contains(t, s.statesVisited(exec.ExecutionArn), tc.caughtIn)
			s.assertAnalyticsComputeRestored()
			// Issue 9, item 4: the PATCH was sent, so Databricks may have used the new key meanwhile and the
			// reminder (which the key guard reads) is scheduled; it names no ROTATED workspace.
			for _, ev := range s.events("Previous Key Retirable") {
				workspaces, _ := ev["workspaces"].([]any)
				for _, w := range workspaces {
					ws, _ := w.(map[string]any)
					assert.Equal(t, "FAILED", ws["outcome"])
					assert.Equal(t, true, ws["patched"])
				}
			}
		})
	}
}

func TestAKeyMaterialRotationStartsNothingAndIsAudited(t *testing.T) {
	s := start(t, nil)
	s.deliverFile("kms-cmk-rotation.json")
	assert.Empty(t, s.finish())
	audits := s.events("Key Material Rotated")
	require.Len(t, audits, 1)
	assert.Contains(t, audits[0]["message"], "Databricks needs no update")
	assert.Empty(t, s.rig.Fake.Requests(), "Databricks was not called")
}

func TestTheSameEventDeliveredTwiceStartsOneExecution(t *testing.T) {
	s := start(t, nil)
	s.deliverFile("kms-createkey-cloudtrail.json")
	s.deliverFile("kms-createkey-cloudtrail.json") // while the first runs
	s.finish()
	s.deliverFile("kms-createkey-cloudtrail.json") // after it closed
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusSucceeded, exec.Status)
	assert.Len(t, s.rig.Fake.KeyConfigs(), 2, "the old and one new key configuration")
}

func TestADryRunChangesNothingAndPublishesThePlan(t *testing.T) {
	s := start(t, nil)
	s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID), "dry_run": true})
	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	s.assertNothingChanged()
	assert.Len(t, s.rig.Fake.KeyConfigs(), 1, "no key configuration was registered")
	plans := s.events("Rotation Plan")
	require.Len(t, plans, 1)
	inv, _ := plans[0]["inventory"].(map[string]any)
	assert.Len(t, inv["clusters"], 4, "three interactive clusters and the job cluster would be stopped")
	assert.Equal(t, true, plans[0]["would_create_key_config"])
}

func TestConcurrentRotationsOfOneWorkspaceRunOneAndRefuseTheOther(t *testing.T) {
	s := start(t, nil)
	inputs := []map[string]any{
		{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)},
		{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.EventKeyID)},
	}
	done := make(chan string, len(inputs))
	for _, in := range inputs {
		go func() {
			raw, _ := json.Marshal(in)
			arn, err := s.rig.StartExecution(s.ctx, "", raw)
			assert.NoError(t, err)
			done <- arn
		}()
	}
	<-done
	<-done
	rotations := s.finish()
	require.Len(t, rotations, 2)
	var statuses, errs []string
	for _, e := range rotations {
		statuses = append(statuses, string(e.Status))
		errs = append(errs, e.Error)
	}
	assert.ElementsMatch(t, []string{"SUCCEEDED", "FAILED"}, statuses, "errors: %v", errs)
	assert.Contains(t, errs, "WorkspaceBusy")
	rejected := s.events("Rotation Rejected")
	require.Len(t, rejected, 1)
	assert.Contains(t, rejected[0]["message"], "is being rotated by execution")
	assert.Len(t, s.events("Rotation Succeeded"), 1)
	s.assertAnalyticsComputeRestored()
	assert.Empty(t, s.rig.AWS.Items(rig.LockTable), "every lock was released")

	// Once the first has finished, the workspace can be rotated again.
	s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.UntaggedKeyID)})
	rotations = s.finish()
	assert.Equal(t, awsfake.StatusSucceeded, rotations[len(rotations)-1].Status)
}

func TestAClusterThatFailsToStartIsNamedAndFailsTheExecution(t *testing.T) {
	s := start(t, nil)
	s.rig.Fake.FailClusterStart(rig.AnalyticsWorkspace, "0102-data-science", "Instance launch failed: InsufficientInstanceCapacity")
	s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status)
	assert.Equal(t, "ComputeNotRestored", exec.Error)
	s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.AliasTargetKeyID))

	succeeded := s.events("Rotation Succeeded")
	require.Len(t, succeeded, 1)
	stillDown, _ := succeeded[0]["still_down"].([]any)
	require.Len(t, stillDown, 1, "exactly the cluster that did not start")
	assert.Equal(t, "0102-data-science", stillDown[0].(map[string]any)["id"])
	assert.Contains(t, stillDown[0].(map[string]any)["reason"], "InsufficientInstanceCapacity")
	assert.Equal(t, compute.StateRunning, s.rig.Fake.Cluster(rig.AnalyticsWorkspace, "0101-etl-interactive").State, "the rest came back")
	assert.Len(t, s.events("Previous Key Retirable"), 1, "the workspace did rotate: its old key still gets its reminder")
}

// withExtraWorkspaces adds n small workspaces (ids 5000000000000001...) to the demo account.
func withExtraWorkspaces(n int) func(*rig.Options) {
	return func(o *rig.Options) {
		var ids []string
		defer func() { o.Policy = rig.PolicyAllowing(ids...) }()
		for i := 1; i <= n; i++ {
			id := int64(5000000000000000 + i)
			ids = append(ids, fmt.Sprint(id))
			ws := rig.DemoSeed(rig.DefaultRegion).Workspaces[0].Workspace
			ws.WorkspaceId, ws.WorkspaceName, ws.DeploymentName = id, fmt.Sprintf("team-%02d", i), fmt.Sprintf("dbc-team-%02d", i)
			o.Seed.Workspaces = append(o.Seed.Workspaces, dbfake.WorkspaceSeed{Workspace: ws, Clusters: []compute.ClusterDetails{
				{ClusterId: fmt.Sprintf("c-%02d-a", i), ClusterName: "shared", State: compute.StateRunning, ClusterSource: compute.ClusterSourceUi},
				{ClusterId: fmt.Sprintf("c-%02d-b", i), ClusterName: "etl", State: compute.StateRunning, ClusterSource: compute.ClusterSourceApi},
			}})
		}
	}
}

func TestManyWorkspacesShareOneKeyConfigurationAndRotateIndependently(t *testing.T) {
	const n = 10
	s := start(t, func(o *rig.Options) {
		withExtraWorkspaces(n)(o)
		o.FunctionEnv = map[string]string{"MAX_CONCURRENT_WORKSPACES": "4"}
	})
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprint(5000000000000000+i))
	}
	s.rig.Fake.FailClusterStart(5000000000000003, "c-03-a", "capacity") // one workspace's trouble is its own
	s.startInput(map[string]any{"workspace_ids": ids, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	exec := s.onlyRotation()
	assert.Equal(t, "ComputeNotRestored", exec.Error, "one workspace has a cluster down")

	var out struct {
		Results []struct {
			WorkspaceID string `json:"workspace_id"`
			Outcome     string `json:"outcome"`
		} `json:"results"`
	}
	// A failed execution has no output; read the outcomes from the events instead.
	succeeded := s.events("Rotation Succeeded")
	require.Len(t, succeeded, n, "every workspace rotated")
	configs := map[any]bool{}
	for _, d := range succeeded {
		configs[d["new_key_config_id"]] = true
	}
	assert.Len(t, configs, 1, "one key configuration, shared")
	assert.Len(t, s.rig.Fake.KeyConfigs(), 2, "the old one and one new one")
	for i := 1; i <= n; i++ {
		id := int64(5000000000000000 + i)
		assert.NotEqual(t, rig.OldKeyConfigID, s.rig.Fake.Workspace(id).ManagedServicesCustomerManagedKeyId)
		assert.Equal(t, compute.StateRunning, s.rig.Fake.Cluster(id, fmt.Sprintf("c-%02d-b", i)).State)
	}
	_ = json.Unmarshal([]byte(exec.Output), &out)
	assert.Empty(t, s.rig.AWS.Items(rig.LockTable), "every workspace lock was released")
}

func TestALargeInventoryTravelsByReferenceThroughTheRealFunctions(t *testing.T) {
	s := start(t, func(o *rig.Options) {
		// A 200-byte inline limit sends even the demo workspace's inventory to S3.
		o.FunctionEnv = map[string]string{"INVENTORY_INLINE_LIMIT": "200"}
	})
	s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	objects := map[string]int{}
	for key, size := range s.rig.AWS.Objects(rig.InventoryBucket) {
		// The bucket also keeps the key policy Validate accepted (key-policies/).
		if strings.HasPrefix(key, "inventories/") {
			objects[key] = size
		}
	}
	require.Len(t, objects, 1, "the inventory was stored in the bucket")
	succeeded := s.events("Rotation Succeeded")
	require.Len(t, succeeded, 1)
	stopped, _ := succeeded[0]["stopped"].(map[string]any)
	assert.Equal(t, 4.0, stopped["clusters"], "the counts travel in the state")
	s.assertAnalyticsComputeRestored()
}
