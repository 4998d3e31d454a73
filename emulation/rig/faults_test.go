package rig_test

// The fault matrix ("Never leave a workspace broken"): each scenario injects one fault through the
// real binaries and the real state machine and asserts one of three endings:
//
//	(a) rotated, compute restored;
//	(b) failed, compute restored: the workspace on its old key, a Rotation Failed event with the
//	    error type, the phase, the whole inventory and an empty still_down;
//	(c) failed, and exactly what is still down is named in an event.
//
// Every scenario also asserts the invariant behind all three: nothing that ran before the rotation
// is left stopped without an event saying so (assertNothingLeftDownSilently). docs/faults.md is
// the table of these scenarios.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// Paths of the account API calls of the rotation.
const (
	workspacePath  = `^/api/2\.0/accounts/[^/]+/workspaces/\d+$`
	keyConfigsPath = `^/api/2\.0/accounts/[^/]+/customer-managed-keys/?$`
	deleteCluster  = `^/api/2\.1/clusters/delete$`
)

// rotationRoutes is every Databricks route a rotation of the analytics workspace calls, one fault
// each: a storm on every route, spread over the whole run, from Validate to the restart check.
var rotationRoutes = []struct{ method, path string }{
	{"GET", workspacePath}, {"PATCH", workspacePath},
	{"GET", keyConfigsPath}, {"POST", keyConfigsPath},
	{"GET", `^/api/2\.1/clusters/list$`}, {"GET", `^/api/2\.1/clusters/get$`},
	{"POST", deleteCluster}, {"POST", `^/api/2\.1/clusters/start$`},
	{"GET", `^/api/2\.0/instance-pools/list$`}, {"GET", `^/api/2\.0/instance-pools/get$`},
	{"POST", `^/api/2\.0/instance-pools/edit$`},
	{"GET", `^/api/2\.0/sql/warehouses/?$`}, {"GET", `^/api/2\.0/sql/warehouses/[^/]+$`},
	{"POST", `^/api/2\.0/sql/warehouses/[^/]+/stop$`}, {"POST", `^/api/2\.0/sql/warehouses/[^/]+/start$`},
	{"GET", `^/api/2\.0/pipelines/?$`}, {"GET", `^/api/2\.0/pipelines/[^/]+$`},
	{"POST", `^/api/2\.0/pipelines/[^/]+/stop$`}, {"POST", `^/api/2\.0/pipelines/[^/]+/updates$`},
}

// The Databricks message for a PATCH while classic compute runs (the fake uses it too).
const computeRunningMessage = "Please terminate all pool & cluster EC2 instances in your workspace subnets before attempting to update the workspace."

// What the analytics workspace's inventory holds: every classic resource rig.DemoSeed starts running.
var (
	inventoryClusters   = []string{"0101-etl-interactive", "0102-data-science", "0103-api-automation", "0104-nightly-job"}
	inventoryPools      = []string{"pool-general"}
	inventoryWarehouses = []string{"wh-bi-classic"}
	inventoryPipelines  = []string{"pl-orders-stream"}
	// What comes back: the three interactive clusters, the pool's settings, the classic warehouse
	// and the continuous pipeline (the job cluster is reported, not started).
	restartedCounts = map[string]any{"clusters": 3.0, "pools": 1.0, "warehouses": 1.0, "pipelines": 1.0}
)

func (s *scenario) rotateAnalytics() string {
	s.t.Helper()
	return s.startInput(map[string]any{"workspace_ids": []string{"1234567890123456"}, "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
}

// resource is a cluster, warehouse or pipeline of the analytics workspace.
type resource struct{ kind, id string }

// runningBefore lists what rig.DemoSeed starts running in the analytics workspace: clusters,
// warehouses (the serverless one too: the rotation must not touch it) and pipelines.
func runningBefore() []resource {
	var out []resource
	for _, ws := range rig.DemoSeed(rig.DefaultRegion).Workspaces {
		if ws.Workspace.WorkspaceId != rig.AnalyticsWorkspace {
			continue
		}
		for _, c := range ws.Clusters {
			if c.State == compute.StateRunning {
				out = append(out, resource{"cluster", c.ClusterId})
			}
		}
		for _, w := range ws.Warehouses {
			if w.State == sql.StateRunning {
				out = append(out, resource{"warehouse", w.Id})
			}
		}
		for _, p := range ws.Pipelines {
			if p.State == pipelines.PipelineStateRunning {
				out = append(out, resource{"pipeline", p.PipelineID})
			}
		}
	}
	return out
}

func (s *scenario) currentState(r resource) string {
	ws := rig.AnalyticsWorkspace
	switch r.kind {
	case "cluster":
		return string(s.rig.Fake.Cluster(ws, r.id).State)
	case "warehouse":
		return string(s.rig.Fake.Warehouse(ws, r.id).State)
	case "pipeline":
		return string(s.rig.Fake.Pipeline(ws, r.id).State)
	}
	s.t.Fatalf("unknown resource kind %q", r.kind)
	return ""
}

// namedInEvents collects what the published events of the analytics workspace say is not running:
// still_down, not_restarted (job clusters, by design), and the whole inventory when the event says
// still_down_unknown (or is the raw last-resort report, whose run holds the inventory).
func (s *scenario) namedInEvents() map[resource]string {
	named := map[resource]string{}
	addRefs := func(refs any, why string) {
		list, _ := refs.([]any)
		for _, item := range list {
			ref, _ := item.(map[string]any)
			kind, _ := ref["kind"].(string)
			id, _ := ref["id"].(string)
			named[resource{kind, id}] = why
		}
	}
	addInventory := func(inv any, why string) {
		m, _ := inv.(map[string]any)
		for field, kind := range map[string]string{"clusters": "cluster", "warehouses": "warehouse", "pipelines": "pipeline"} {
			list, _ := m[field].([]any)
			for _, item := range list {
				ref, _ := item.(map[string]any)
				id, _ := ref["id"].(string)
				named[resource{kind, id}] = why
			}
		}
	}
	for _, detailType := range []string{"Rotation Succeeded", "Rotation Failed"} {
		for _, d := range s.events(detailType) {
			if run, ok := d["run"].(map[string]any); ok { // PublishRawFailure
				addInventory(run["inventory"], detailType+" (raw run state)")
				continue
			}
			if d["workspace_id"] != strconv.FormatInt(rig.AnalyticsWorkspace, 10) {
				continue
			}
			addRefs(d["still_down"], detailType+" still_down")
			addRefs(d["not_restarted"], detailType+" not_restarted")
			if d["still_down_unknown"] == true {
				addInventory(d["inventory"], detailType+" still_down_unknown")
			}
		}
	}
	return named
}

// assertNothingLeftDownSilently is the invariant of every row: each cluster, warehouse and pipeline
// of the analytics workspace that ran before the rotation is running at the end, or a published
// event names it as not running.
func (s *scenario) assertNothingLeftDownSilently() {
	s.t.Helper()
	named := s.namedInEvents()
	for _, r := range runningBefore() {
		state := s.currentState(r)
		if state == "RUNNING" {
			continue
		}
		why, ok := named[r]
		assert.True(s.t, ok, "%s %s ran before the rotation, is %s now, and no published event says so", r.kind, r.id, state)
		if ok {
			s.t.Logf("%s %s is %s, named in %s", r.kind, r.id, state, why)
		}
	}
}

func ids(refs any) []string {
	var out []string
	list, _ := refs.([]any)
	for _, item := range list {
		ref, _ := item.(map[string]any)
		id, _ := ref["id"].(string)
		out = append(out, id)
	}
	return out
}

// countsOf reads an event's restarted field as counts by kind, whether it lists the resources or
// counts them.
func countsOf(field any) map[string]any {
	if counts, ok := field.(map[string]any); ok {
		return counts
	}
	out := map[string]any{"clusters": 0.0, "pools": 0.0, "warehouses": 0.0, "pipelines": 0.0}
	list, _ := field.([]any)
	for _, item := range list {
		ref, _ := item.(map[string]any)
		kind, _ := ref["kind"].(string)
		n, _ := out[kind+"s"].(float64)
		out[kind+"s"] = n + 1
	}
	return out
}

// assertWholeInventory checks an event's inventory lists every resource that was running.
func (s *scenario) assertWholeInventory(inv any) {
	s.t.Helper()
	m, ok := inv.(map[string]any)
	require.True(s.t, ok, "the event carries no inventory: %v", inv)
	assert.ElementsMatch(s.t, inventoryClusters, ids(m["clusters"]))
	assert.ElementsMatch(s.t, inventoryPools, ids(m["pools"]))
	assert.ElementsMatch(s.t, inventoryWarehouses, ids(m["warehouses"]))
	assert.ElementsMatch(s.t, inventoryPipelines, ids(m["pipelines"]))
}

// assertRotated is ending (a): on the new key, everything back, one Rotation Succeeded event that
// accounts for the whole inventory.
func (s *scenario) assertRotated(exec awsfake.Execution) map[string]any {
	s.t.Helper()
	require.Equal(s.t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.AliasTargetKeyID))
	s.assertAnalyticsComputeRestored()
	assert.Empty(s.t, s.events("Rotation Failed"))
	succeeded := s.events("Rotation Succeeded")
	require.Len(s.t, succeeded, 1)
	d := succeeded[0]
	assert.Empty(s.t, d["still_down"])
	assert.Equal(s.t, map[string]any{"clusters": 4.0, "pools": 1.0, "warehouses": 1.0, "pipelines": 1.0}, d["stopped"], "the whole inventory was stopped")
	assert.Equal(s.t, restartedCounts, countsOf(d["restarted"]), "everything restartable came back")
	assert.ElementsMatch(s.t, []string{"0104-nightly-job"}, ids(d["not_restarted"]), "the job cluster is reported")
	return d
}

// assertFailedAndRestored is ending (b): the workspace on its old key, compute back, one Rotation
// Failed event with the error type, the phase, the whole inventory and nothing still down.
func (s *scenario) assertFailedAndRestored(exec awsfake.Execution, errorType, phase string) map[string]any {
	s.t.Helper()
	assert.Equal(s.t, awsfake.StatusFailed, exec.Status)
	assert.Equal(s.t, "RotationFailed", exec.Error, exec.Cause)
	assert.Equal(s.t, rig.OldKeyConfigID, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId, "the workspace stays on its old key")
	s.assertAnalyticsComputeRestored()
	failed := s.events("Rotation Failed")
	require.Len(s.t, failed, 1)
	d := failed[0]
	errDetail, _ := d["error"].(map[string]any)
	assert.Equal(s.t, errorType, errDetail["type"], "error: %v", errDetail)
	assert.Equal(s.t, phase, d["phase"])
	s.assertWholeInventory(d["inventory"])
	assert.Empty(s.t, d["still_down"])
	assert.Nil(s.t, d["still_down_unknown"])
	assert.Contains(s.t, d["message"], "everything that was stopped is running again")
	assert.Empty(s.t, s.events("Rotation Succeeded"))
	// The retirement reminder follows any PATCH that was sent (issue 9): the previous key may be in use.
	// PatchWorkspace returned (run.patch is set, summary.patched) exactly when Databricks accepted an
	// update in these rows.
	if len(s.rig.Fake.WorkspaceUpdates()) > 0 {
		assert.Len(s.t, s.events("Previous Key Retirable"), 1, "a PATCH was sent: the previous key stays watched for 24 h")
	} else {
		assert.Empty(s.t, s.events("Previous Key Retirable"), "no PATCH was sent, so no key to retire")
	}
	return d
}

// failuresOf lists the error of every failed attempt of a state, in order.
func (s *scenario) failuresOf(arn, state string) []string {
	var out []string
	for _, ev := range s.timeline(arn) {
		if ev.Type == "StateFailed" && ev.State == state {
			out = append(out, ev.Error)
		}
	}
	return out
}

// anyFailure lists "state: error" for every failed attempt of any state.
func (s *scenario) anyFailure(arn string) []string {
	var out []string
	for _, ev := range s.timeline(arn) {
		if ev.Type == "StateFailed" {
			out = append(out, ev.State+": "+ev.Error)
		}
	}
	return out
}

// waitForState waits until the execution has entered state.
func (s *scenario) waitForState(arn, state string) {
	s.t.Helper()
	for {
		for _, ev := range s.timeline(arn) {
			if ev.Type == "StateEntered" && ev.State == state {
				return
			}
		}
		if exec, ok := s.rig.AWS.Execution(arn); ok && exec.Status != awsfake.StatusRunning {
			s.t.Fatalf("the execution ended (%s %s) before entering %s", exec.Status, exec.Error, state)
		}
		select {
		case <-s.ctx.Done():
			s.t.Fatalf("the execution did not enter %s: %v", state, s.ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stormEveryRoute answers the first call of every route of the rotation with status (Times 1 per
// route, 19 routes: about twenty faults over the run). The SDK retries 429 and 503 itself, 1 s and
// more apart, so the state machine should see none of it; one fault per route keeps the SDK's
// backoff at its first step, so the storm costs about 1.5 s per route.
func (s *scenario) stormEveryRoute(status int, errorCode string) {
	for _, route := range rotationRoutes {
		s.rig.Fake.InjectFault(dbfake.Fault{Method: route.method, Path: route.path, Status: status, ErrorCode: errorCode, Times: 1})
	}
}

func (s *scenario) assertStormAbsorbed(exec awsfake.Execution, status int) {
	s.t.Helper()
	var patchedAt time.Time
	for _, r := range s.rig.Fake.Requests() {
		if r.Method == "PATCH" && r.Status == 200 {
			patchedAt = r.Time
		}
	}
	var before, after int
	for _, route := range rotationRoutes {
		re := regexp.MustCompile(route.path)
		var calls, faults int
		for _, r := range s.rig.Fake.Requests() {
			if r.Method != route.method || !re.MatchString(r.Path) {
				continue
			}
			calls++
			if r.Injected {
				faults++
				assert.Equal(s.t, status, r.Status)
				if r.Time.Before(patchedAt) {
					before++
				} else {
					after++
				}
			}
		}
		if calls > 0 {
			assert.Equal(s.t, 1, faults, "%s %s: the route's first call got the fault", route.method, route.path)
		}
	}
	assert.GreaterOrEqual(s.t, before+after, 15, "a storm: most routes of the rotation got a %d", status)
	assert.Positive(s.t, before, "faults before the PATCH")
	assert.Positive(s.t, after, "faults after the PATCH")
	assert.Empty(s.t, s.anyFailure(exec.ExecutionArn), "the SDK absorbed every %d: no task failed", status)
}

// Row 1.
func TestFault_ThrottlingStormOnEveryRouteIsAbsorbed(t *testing.T) {
	t.Parallel() // mostly the SDK's backoff sleeping
	s := start(t, nil)
	s.stormEveryRoute(429, "REQUEST_LIMIT_EXCEEDED")
	s.rotateAnalytics()
	exec := s.onlyRotation()
	s.assertRotated(exec)
	s.assertStormAbsorbed(exec, 429)
	s.assertNothingLeftDownSilently()
}

// Row 2.
func TestFault_UnavailableStormOnEveryRouteIsAbsorbed(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	s.stormEveryRoute(503, "TEMPORARILY_UNAVAILABLE")
	s.rotateAnalytics()
	exec := s.onlyRotation()
	s.assertRotated(exec)
	s.assertStormAbsorbed(exec, 503)
	s.assertNothingLeftDownSilently()
}

// Row 3.
func TestFault_OneInternalErrorOnThePatchIsRetried(t *testing.T) {
	s := start(t, nil)
	s.rig.Fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: workspacePath, Status: 500, Times: 1})
	s.rotateAnalytics()
	exec := s.onlyRotation()
	s.assertRotated(exec)
	assert.Equal(t, []string{"DatabricksUnavailable"}, s.failuresOf(exec.ExecutionArn, "PatchWorkspace"), "the SDK does not retry a 500; the state machine does")
	s.assertNothingLeftDownSilently()
}

func TestFault_APersistentInternalErrorOnThePatchFailsWithComputeRestored(t *testing.T) {
	s := start(t, nil)
	s.rig.Fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: workspacePath, Status: 500})
	s.rotateAnalytics()
	exec := s.onlyRotation()
	s.assertFailedAndRestored(exec, "DatabricksUnavailable", "patch-workspace")
	assert.Equal(t, slices.Repeat([]string{"DatabricksUnavailable"}, 7), s.failuresOf(exec.ExecutionArn, "PatchWorkspace"), "the first attempt and 6 retries")
	assert.Contains(t, s.statesVisited(exec.ExecutionArn), "Compensate")
	s.assertNothingLeftDownSilently()
}

// Row 4.
func TestFault_APatchRefusedWhileComputeRunsIsRetried(t *testing.T) {
	s := start(t, nil)
	s.rig.Fake.InjectFault(dbfake.Fault{Method: "PATCH", Path: workspacePath, Status: 400, ErrorCode: "INVALID_STATE", Message: computeRunningMessage, Times: 2})
	s.rotateAnalytics()
	exec := s.onlyRotation()
	s.assertRotated(exec)
	assert.Equal(t, []string{"ComputeStillRunning", "ComputeStillRunning"}, s.failuresOf(exec.ExecutionArn, "PatchWorkspace"))
	s.assertNothingLeftDownSilently()
}

// TestFault_APatchRefusedPersistentlyGoesBackToStopThenFailsWithComputeRestored is in update_test.go.

// Row 5 (TestFault_AWorkspaceStuckProvisioningFailsWithComputeLeftStoppedAndNamed) is in update_test.go.

// Row 7, second half (the first half is TestAClusterThatFailsToStartIsNamedAndFailsTheExecution):
// the cluster does not come back during the compensation of a silent revert.
func TestFault_AClusterThatFailsToStartDuringCompensationIsNamed(t *testing.T) {
	// A settle window makes the revert visible before the restart, so the compensation path runs.
	s := start(t, func(o *rig.Options) {
		o.FunctionEnv = map[string]string{"WORKSPACE_UPDATE_BUDGET": "2s", "WORKSPACE_SETTLE": "2s"}
	})
	s.rig.Fake.SetPatchBehaviour(rig.AnalyticsWorkspace, dbfake.PatchBehaviour{SilentRevert: true})
	s.rig.Fake.FailClusterStart(rig.AnalyticsWorkspace, "0102-data-science", "Instance launch failed: InsufficientInstanceCapacity")
	s.rotateAnalytics()
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status)
	assert.Equal(t, "RotationFailed", exec.Error)
	assert.Contains(t, s.statesVisited(exec.ExecutionArn), "Compensate")
	assert.Equal(t, rig.OldKeyConfigID, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId)

	failed := s.events("Rotation Failed")
	require.Len(t, failed, 1)
	d := failed[0]
	assert.Equal(t, "WorkspaceReverted", d["error"].(map[string]any)["type"])
	s.assertWholeInventory(d["inventory"])
	stillDown, _ := d["still_down"].([]any)
	require.Len(t, stillDown, 1, "exactly the cluster that did not start: %v", d["still_down"])
	assert.Equal(t, "0102-data-science", stillDown[0].(map[string]any)["id"])
	assert.Contains(t, stillDown[0].(map[string]any)["reason"], "InsufficientInstanceCapacity")
	assert.Contains(t, d["message"], "some compute is still down")
	for _, id := range []string{"0101-etl-interactive", "0103-api-automation"} {
		assert.Equal(t, compute.StateRunning, s.rig.Fake.Cluster(rig.AnalyticsWorkspace, id).State, "the rest came back: %s", id)
	}
	assert.Equal(t, sql.StateRunning, s.rig.Fake.Warehouse(rig.AnalyticsWorkspace, "wh-bi-classic").State)
	assert.Equal(t, pipelines.PipelineStateRunning, s.rig.Fake.Pipeline(rig.AnalyticsWorkspace, "pl-orders-stream").State)
	s.assertNothingLeftDownSilently()
}

// Row 8.
func TestFault_KMSThrottlingIsAbsorbed(t *testing.T) {
	s := start(t, func(o *rig.Options) { o.KMSProxy = true })
	// The SDK makes 3 attempts per call: the first Validate fails with AWSUnavailable after three
	// throttles, its retry absorbs the fourth with the SDK's own retry.
	s.rig.KMSProxy.Throttle(4)
	s.rotateAnalytics()
	exec := s.onlyRotation()
	s.assertRotated(exec)
	assert.Len(t, s.rig.KMSProxy.Throttled(), 4)
	assert.Equal(t, []string{"AWSUnavailable"}, s.failuresOf(exec.ExecutionArn, "Validate"))
	s.assertNothingLeftDownSilently()
}

func TestFault_PermanentKMSThrottlingIsRejectedBeforeAnythingStops(t *testing.T) {
	s := start(t, func(o *rig.Options) {
		o.KMSProxy = true
		// One attempt per KMS call: the SDK's own backoff would add ~3 s to each of the 7 attempts.
		o.FunctionEnv = map[string]string{"AWS_MAX_ATTEMPTS": "1"}
	})
	forwarded := len(s.rig.KMSProxy.Forwarded()) // the fixture keys' setup
	s.rig.KMSProxy.Throttle(-1)
	s.rotateAnalytics()
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status)
	assert.Equal(t, "AWSUnavailable", exec.Error, exec.Cause)
	assert.Equal(t, slices.Repeat([]string{"AWSUnavailable"}, 7), s.failuresOf(exec.ExecutionArn, "Validate"), "the first attempt and 6 retries")
	assert.Len(t, s.rig.KMSProxy.Throttled(), 7)
	assert.Len(t, s.rig.KMSProxy.Forwarded(), forwarded, "no KMS call got through")
	rejected := s.events("Rotation Rejected")
	require.Len(t, rejected, 1)
	assert.Equal(t, "AWSUnavailable", rejected[0]["error"].(map[string]any)["type"])
	assert.Contains(t, rejected[0]["message"], "refused before anything was changed")
	s.assertNothingChanged()
	assert.Empty(t, s.events("Rotation Failed"))
	s.assertNothingLeftDownSilently()
}

// Row 9: a call inside StopCompute hangs. Either the invocation times out (Sandbox.Timedout) or
// the SDK's 30 s HTTP timeout ends the call first (DatabricksUnavailable); in both cases the state
// machine retries the idempotent task and the rotation completes with the whole inventory.
func TestFault_ATaskThatTimesOutIsRetriedWithoutLosingTheInventory(t *testing.T) {
	t.Parallel() // mostly waiting for a timeout
	cases := []struct {
		name      string
		timeout   int // seconds; 0 keeps the rig's 60
		delay     time.Duration
		errorType string
		skip      string
	}{
		{"the function times out mid-call", 3, 5 * time.Second, sandbox.ErrorTypeTimedOut, ""},
		// With a timeout over 30 s (the compute tasks start no call in the last 30 s before their
		// deadline), a single call can no longer outlive the invocation: the SDK's HTTP timeout (30 s)
		// ends it first.
		{"the SDK's HTTP timeout ends the call", 0, 31 * time.Second, "DatabricksUnavailable", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			t.Parallel()
			s := start(t, func(o *rig.Options) { o.FunctionTimeoutSeconds = tc.timeout })
			s.rig.Fake.InjectFault(dbfake.Fault{Method: "POST", Path: deleteCluster, Delay: tc.delay, Times: 1})
			s.rotateAnalytics()
			exec := s.onlyRotation()
			s.assertRotated(exec)
			assert.Equal(t, []string{tc.errorType}, s.failuresOf(exec.ExecutionArn, "StopCompute"))
			s.assertNothingLeftDownSilently()
		})
	}
}

// bootstrapPath is where start finds a function's bootstrap.
func bootstrapPath(t *testing.T, logicalID string) string {
	root, err := sandbox.RepoRoot()
	require.NoError(t, err)
	dir := os.Getenv("ROTATOR_BUILD_DIR")
	if dir == "" {
		dir = filepath.Join(root, ".build", "local")
	}
	return filepath.Join(dir, logicalID, "bootstrap")
}

// bootstrapPIDs finds the running bootstrap processes of one of this rig's functions: the command
// line is exactly the bootstrap's path, and the environment points at this rig's Databricks fake
// and names the function, so no other process (another rig's included) is a candidate.
func (s *scenario) bootstrapPIDs(logicalID string) []int {
	s.t.Helper()
	path := bootstrapPath(s.t, logicalID)
	entries, err := os.ReadDir("/proc")
	require.NoError(s.t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || string(bytes.TrimRight(cmdline, "\x00")) != path {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		env := strings.Split(string(environ), "\x00")
		if slices.Contains(env, "DATABRICKS_HOST="+s.rig.Fake.URL()) && slices.Contains(env, "AWS_LAMBDA_FUNCTION_NAME="+logicalID) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Row 10.
func TestFault_ATaskThatCrashesMidStopIsRetriedAndStopsNothingTwice(t *testing.T) {
	// One execution environment per function, so the StopCompute process in flight is the only one.
	s := start(t, func(o *rig.Options) { o.Instances = 1 })
	// The delete of one cluster hangs for 2 s: while the others are already terminating, the task
	// is mid-stop, and that is when its process dies.
	s.rig.Fake.InjectFault(dbfake.Fault{Method: "POST", Path: deleteCluster, Delay: 2 * time.Second, Times: 1})
	arn := s.rotateAnalytics()
	s.waitForState(arn, "StopCompute")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var stopping int
		for _, id := range inventoryClusters {
			if st := s.rig.Fake.Cluster(rig.AnalyticsWorkspace, id).State; st == compute.StateTerminating || st == compute.StateTerminated {
				stopping++
			}
		}
		if stopping == len(inventoryClusters)-1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "StopCompute never got to the hanging delete (%d clusters stopping)", stopping)
		time.Sleep(10 * time.Millisecond)
	}
	pids := s.bootstrapPIDs("StopComputeFunction")
	require.Len(t, pids, 1, "exactly one StopComputeFunction bootstrap of this rig is running")
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))

	exec := s.onlyRotation()
	s.assertRotated(exec)
	assert.Equal(t, []string{sandbox.ErrorTypeExit}, s.failuresOf(exec.ExecutionArn, "StopCompute"))

	deletes, starts := map[string]int{}, map[string]int{}
	for _, r := range s.rig.Fake.Requests() {
		var body struct {
			ClusterID string `json:"cluster_id"`
		}
		_ = json.Unmarshal([]byte(r.Body), &body)
		switch {
		case r.Path == "/api/2.1/clusters/delete" && r.Status == 200:
			deletes[body.ClusterID]++
		case r.Path == "/api/2.1/clusters/start":
			starts[body.ClusterID]++
		}
	}
	for _, id := range inventoryClusters {
		assert.GreaterOrEqual(t, deletes[id], 1, "cluster %s was stopped", id)
	}
	for _, id := range inventoryClusters[:3] {
		assert.Equal(t, 1, starts[id], "cluster %s was started exactly once", id)
	}
	assert.Zero(t, starts["0104-nightly-job"], "a job cluster is not started by hand")
	s.assertNothingLeftDownSilently()
}

// Row 11: Databricks goes away for good once the workspace PATCH is due, after everything was
// stopped. Every retry of PatchWorkspace and of the compensation fails; the event must still say
// that the compute may be down, with the whole inventory.
func TestFault_DatabricksDownForLongerThanEveryRetryIsReported(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		status    int
		timeout   int
		errorType string
		skip      string
	}{
		// The SDK does not retry a 500: each attempt fails at once as DatabricksUnavailable and the
		// state machine's 6 retries of PatchWorkspace, then of Compensate, run out in seconds.
		{"500s, which the SDK does not retry", 500, 0, "DatabricksUnavailable", ""},
		// The SDK retries a 503 for up to 20 s: with a 3 s function, each attempt ends at the timeout instead.
		{"503s, which the SDK retries past the function timeout", 503, 3, sandbox.ErrorTypeTimedOut, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			t.Parallel()
			s := start(t, func(o *rig.Options) { o.FunctionTimeoutSeconds = tc.timeout })
			arn := s.rotateAnalytics()
			s.waitForState(arn, "StopCompute")
			// PatchWorkspace's first call is its read of the workspace: hold it so that the outage
			// below is in place before the PATCH, whatever the scheduling.
			s.rig.Fake.InjectFault(dbfake.Fault{Method: "GET", Path: workspacePath, Delay: 500 * time.Millisecond, Times: 1})
			s.waitForState(arn, "PatchWorkspace")
			s.rig.Fake.InjectFault(dbfake.Fault{Path: `^/api/`, Status: tc.status})

			exec := s.onlyRotation()
			assert.Equal(t, awsfake.StatusFailed, exec.Status)
			assert.Equal(t, "RotationFailed", exec.Error, exec.Cause)
			for _, r := range s.rig.Fake.Requests() {
				if r.Method == "PATCH" {
					assert.True(t, r.Injected, "no PATCH reached the workspace")
				}
			}
			assert.Equal(t, rig.OldKeyConfigID, s.rig.Fake.Workspace(rig.AnalyticsWorkspace).ManagedServicesCustomerManagedKeyId)
			assert.Contains(t, s.statesVisited(exec.ExecutionArn), "Compensate")
			t.Logf("failed attempts: %v", s.anyFailure(exec.ExecutionArn))

			failed := s.events("Rotation Failed")
			require.Len(t, failed, 1, "a Rotation Failed event is published even though Databricks is unreachable")
			d := failed[0]
			t.Logf("Rotation Failed: error %v, phase %v, message %q", d["error"], d["phase"], d["message"])
			assert.Equal(t, "patch-workspace", d["phase"])
			assert.Equal(t, tc.errorType, d["error"].(map[string]any)["type"])
			s.assertWholeInventory(d["inventory"])
			assert.Equal(t, true, d["still_down_unknown"], "the compensation could not check anything: the state is unknown")
			assert.Contains(t, d["message"], "everything in inventory may still be stopped")
			assert.NotNil(t, d["compensation_error"], "the event says the compensation failed too")
			s.assertNothingLeftDownSilently()
		})
	}
}

// The same CreateKey event delivered ten times (EventBridge retries, Lambda's asynchronous
// retries), some at once, some while the rotation runs and some after it closed: one execution.
func TestFault_TheSameEventDeliveredTenTimesStartsOneExecution(t *testing.T) {
	s := start(t, nil)
	event, err := os.ReadFile(filepath.Join("..", "..", "events", "kms", "kms-createkey-cloudtrail.json"))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { assert.NoError(t, s.rig.Deliver(s.ctx, event)) })
	}
	wg.Wait()
	for range 3 {
		require.NoError(t, s.rig.Deliver(s.ctx, event))
	}
	s.finish()
	for range 3 {
		wg.Go(func() { assert.NoError(t, s.rig.Deliver(s.ctx, event)) })
	}
	wg.Wait()

	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)
	s.assertOnNewKey(rig.AnalyticsWorkspace, s.rig.KeyARN(rig.EventKeyID))
	s.assertAnalyticsComputeRestored()
	assert.Len(t, s.rig.Fake.KeyConfigs(), 2, "the old and one new key configuration")
	assert.Len(t, s.events("Rotation Succeeded"), 1)
	assert.Len(t, s.events("Previous Key Retirable"), 1)
	var patches int
	for _, r := range s.rig.Fake.Requests() {
		if r.Method == "PATCH" {
			patches++
		}
	}
	assert.Equal(t, 1, patches, "one workspace update")
	s.assertNothingLeftDownSilently()
}

// Beyond the matrix: EventBridge refuses every entry for longer than PublishFailure retries, in a
// run that leaves a cluster down (it does not start during the compensation of a silent revert).
func TestFault_AFailureEventThatCannotBePublishedStillNamesWhatIsDown(t *testing.T) {
	// A settle window makes the revert visible before the restart, whatever the machine's speed:
	// without it a fast run restarted compute and confirmed the key before the fake's update delay
	// ended, so the revert landed after ConfirmKey and the rotation ended ROTATED_COMPUTE_DOWN.
	s := start(t, func(o *rig.Options) {
		o.FunctionEnv = map[string]string{"WORKSPACE_UPDATE_BUDGET": "2s", "WORKSPACE_SETTLE": "2s"}
	})
	s.rig.Fake.SetPatchBehaviour(rig.AnalyticsWorkspace, dbfake.PatchBehaviour{SilentRevert: true})
	s.rig.Fake.FailClusterStart(rig.AnalyticsWorkspace, "0102-data-science", "Instance launch failed: InsufficientInstanceCapacity")
	s.rig.AWS.FailPutEvents(100)
	s.rotateAnalytics()
	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status)
	assert.Equal(t, "RotationFailed", exec.Error)
	t.Logf("cause: %s", exec.Cause)
	t.Logf("entries EventBridge refused: %d", len(s.rig.AWS.FailedEvents()))
	assert.Contains(t, exec.Cause, "0102-data-science", "the execution's cause names the cluster that is still down")
	assert.Contains(t, exec.Cause, "Still down (1)")
	// No event could be published, so the invariant's usual witness is the execution's cause here
	// (and the ExecutionsFailed alarm that reads it); the job cluster is stopped by design.
}
