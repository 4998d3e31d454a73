package rig_test

// Item 3 of issue 11: one child execution per workspace, at reduced size in `make test`.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/sandbox"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

func extraIDs(n int) []string {
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprint(5000000000000000+i))
	}
	return ids
}

// parentResults reads the request execution's results: one small, fixed-shape entry per workspace.
type parentResult struct {
	WorkspaceID string `json:"workspace_id"`
	Outcome     string `json:"outcome"`
	Patched     bool   `json:"patched"`
	ChildError  string `json:"child_error"`
}

// statesVisitedOf lists the states one execution entered, without those of its children.
func (s *scenario) statesVisitedOf(arn string) []string {
	var out []string
	for _, ev := range s.rig.Timeline(arn) {
		if ev.State != "" && !slices.Contains(out, ev.State) {
			out = append(out, ev.State)
		}
	}
	return out
}

func TestThirtyWorkspacesOfOneRequestRotateInTheirOwnChildExecutions(t *testing.T) {
	const n = 30
	s := start(t, func(o *rig.Options) {
		withExtraWorkspaces(n)(o)
		o.FunctionEnv = map[string]string{"MAX_CONCURRENT_WORKSPACES": "30"}
		o.Instances = 4
	})
	began := time.Now()
	arn := s.startInput(map[string]any{"workspace_ids": extraIDs(n), "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	exec := s.onlyRotation()
	t.Logf("%d workspaces rotated in %s", n, time.Since(began).Round(time.Millisecond))
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)

	children := s.rig.Children(arn)
	require.Len(t, children, n, "one child execution per workspace")
	seen := map[string]bool{}
	for _, c := range children {
		assert.Equal(t, awsfake.StatusSucceeded, c.Status, "%s: %s %s", c.Name, c.Error, c.Cause)
		var in struct {
			Workspace struct {
				WorkspaceID string `json:"workspace_id"`
			} `json:"workspace"`
			Execution string `json:"execution"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.Input), &in))
		assert.False(t, seen[in.Workspace.WorkspaceID], "workspace %s was given two children", in.Workspace.WorkspaceID)
		seen[in.Workspace.WorkspaceID] = true
		assert.Equal(t, exec.Name, in.Execution, "the child acts for the request's execution (lock owner, reports)")
		assert.Contains(t, s.statesVisitedOf(c.ExecutionArn), "PatchWorkspace", "the workspace's steps run in its own execution")
	}
	assert.NotContains(t, s.statesVisitedOf(arn), "PatchWorkspace", "the request's execution holds no workspace step")

	var out struct {
		Results []parentResult `json:"results"`
	}
	require.NoError(t, json.Unmarshal([]byte(exec.Output), &out))
	require.Len(t, out.Results, n)
	for _, r := range out.Results {
		assert.Equal(t, "ROTATED", r.Outcome, r.WorkspaceID)
	}
	assert.Len(t, s.events("Rotation Succeeded"), n)
	configs := map[string]bool{}
	for _, id := range extraIDs(n) {
		var wsID int64
		_, _ = fmt.Sscan(id, &wsID)
		configs[s.rig.Fake.Workspace(wsID).ManagedServicesCustomerManagedKeyId] = true
	}
	assert.Len(t, configs, 1, "every workspace is on the one new key configuration")
	assert.NotContains(t, configs, rig.OldKeyConfigID)
	assert.Empty(t, s.rig.AWS.Items(rig.LockTable), "every workspace lock was released")
	assert.Len(t, s.events("Previous Key Retirable"), 1, "one reminder for the request")
	assertStateBoundedAtTheCap(t, s.rig.Timeline(arn), n)
}

// payloadQuota is Step Functions' limit on a state's input or output (256 KiB).
const payloadQuota = 262144

// widest pads a per-workspace value to the longest it can be in AWS: names of 64 characters,
// 19-digit workspace ids, ARNs of the longest partition and region (GovCloud) and status words of
// the longest outcome.
func widest(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = widest(e, k)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = widest(e, key)
		}
		return out
	case string:
		switch {
		case key == "workspace_name" || key == "deployment_name":
			return strings.Repeat("n", 64)
		case key == "outcome":
			return "ROTATED_COMPUTE_DOWN"
		case strings.HasPrefix(x, "arn:aws:"):
			return strings.Replace(strings.Replace(x, "arn:aws:", "arn:aws-us-gov:", 1), ":us-west-2:", ":us-gov-west-1:", 1)
		case len(x) == 16 && strings.Trim(x, "0123456789") == "":
			return x + "000"
		}
	}
	return v
}

// assertStateBoundedAtTheCap extrapolates the request execution's largest state from n workspaces
// to rotation.MaxWorkspacesPerRequest: every array of n elements in it is per-workspace (targets
// or results, the lock, the collected outcomes, the released locks), the rest is fixed. Each element
// is counted at its largest, widened to the longest names, ids and ARNs AWS and Databricks allow
// (widest), so the bound holds for any request at the cap whose workspaces all rotate, as this
// engine ran it. The case of every workspace failed, with its summary and the failure cause, is
// built at the cap by statemachine TestTheRequestStateAtTheCapStaysUnderThePayloadQuota.
func assertStateBoundedAtTheCap(t *testing.T, tl sandbox.Timeline, n int) {
	t.Helper()
	var largest json.RawMessage
	for _, ev := range tl {
		for _, doc := range []json.RawMessage{ev.Input, ev.Output} {
			if len(doc) > len(largest) {
				largest = doc
			}
		}
	}
	var doc any
	require.NoError(t, json.Unmarshal(largest, &doc))
	perWorkspace := 0
	var strip func(v any) any
	strip = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = strip(e)
			}
		case []any:
			if len(x) == n {
				most := 0
				for _, e := range x {
					b, _ := json.Marshal(widest(e, ""))
					most = max(most, len(b)+1)
				}
				perWorkspace += most
				return []any{}
			}
		}
		return v
	}
	fixed, _ := json.Marshal(strip(doc))
	bound := len(fixed) + rotation.MaxWorkspacesPerRequest*perWorkspace
	t.Logf("largest state of the request's execution: %d bytes at %d workspaces (%d fixed, at most %d per workspace); at %d workspaces at most %d bytes of %d",
		len(largest), n, len(fixed), perWorkspace, rotation.MaxWorkspacesPerRequest, bound, payloadQuota)
	assert.Less(t, bound, payloadQuota, "the request's state could exceed the payload quota at the cap")
}

func TestAChildExecutionThatEndsBadlyLeavesTheOtherWorkspacesRotating(t *testing.T) {
	const n = 6
	s := start(t, func(o *rig.Options) {
		withExtraWorkspaces(n)(o)
		o.FunctionEnv = map[string]string{"MAX_CONCURRENT_WORKSPACES": fmt.Sprint(n)}
	})
	arn := s.startInput(map[string]any{"workspace_ids": extraIDs(n), "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})

	// An operator stops one workspace's execution once it has stopped that workspace's compute: the
	// child ends ABORTED, outside every Catch of its own.
	const victim = "5000000000000003"
	var child awsfake.Execution
	require.Eventually(t, func() bool {
		for _, c := range s.rig.Children(arn) {
			var in struct {
				Workspace struct {
					WorkspaceID string `json:"workspace_id"`
				} `json:"workspace"`
			}
			if json.Unmarshal([]byte(c.Input), &in) == nil && in.Workspace.WorkspaceID == victim {
				child = c
				return true
			}
		}
		return false
	}, time.Minute, 10*time.Millisecond)
	s.waitForState(child.ExecutionArn, "StopCompute")
	_, err := s.rig.SFN.StopExecution(s.ctx, &sfn.StopExecutionInput{ExecutionArn: aws.String(child.ExecutionArn),
		Error: aws.String("Operator.Stopped"), Cause: aws.String("stopped one workspace by hand")})
	require.NoError(t, err)

	exec := s.onlyRotation()
	assert.Equal(t, awsfake.StatusFailed, exec.Status, "one workspace failed, so the request reports a failure")
	children := s.rig.Children(arn)
	require.Len(t, children, n)
	for _, c := range children {
		if c.ExecutionArn == child.ExecutionArn {
			assert.Equal(t, awsfake.StatusAborted, c.Status)
			continue
		}
		assert.Equal(t, awsfake.StatusSucceeded, c.Status, "%s: %s", c.Name, c.Error)
	}
	succeeded := s.events("Rotation Succeeded")
	assert.Len(t, succeeded, n-1, "every other workspace rotated")
	for i := 1; i <= n; i++ {
		id := int64(5000000000000000 + i)
		if fmt.Sprint(id) == victim {
			continue
		}
		assert.NotEqual(t, rig.OldKeyConfigID, s.rig.Fake.Workspace(id).ManagedServicesCustomerManagedKeyId, id)
		assert.Equal(t, compute.StateRunning, s.rig.Fake.Cluster(id, fmt.Sprintf("c-%02d-b", i)).State, id)
	}
	// The parent's own iteration turned the child's end into one small outcome.
	var results []parentResult
	for _, ev := range s.rig.Timeline(arn) {
		if ev.Type == "StateExited" && ev.State == "ChildFailed" {
			var r parentResult
			require.NoError(t, json.Unmarshal(ev.Output, &r))
			results = append(results, r)
		}
	}
	require.Len(t, results, 1)
	assert.Equal(t, parentResult{WorkspaceID: victim, Outcome: "FAILED", Patched: true, ChildError: "States.TaskFailed"}, results[0])
	assert.Contains(t, exec.Cause, "workspace "+victim+": FAILED")
	assert.Empty(t, s.rig.AWS.Items(rig.LockTable), "the request's execution released every lock it took")
}

func TestStoppingTheRequestStopsTheChildExecutionsItWaitsFor(t *testing.T) {
	const n = 2
	s := start(t, func(o *rig.Options) {
		withExtraWorkspaces(n)(o)
		o.FunctionEnv = map[string]string{"MAX_CONCURRENT_WORKSPACES": fmt.Sprint(n)}
	})
	arn := s.startInput(map[string]any{"workspace_ids": extraIDs(n), "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	require.Eventually(t, func() bool { return len(s.rig.Children(arn)) == n }, time.Minute, 10*time.Millisecond)
	for _, c := range s.rig.Children(arn) {
		s.waitForState(c.ExecutionArn, "StopCompute")
	}
	_, err := s.rig.SFN.StopExecution(s.ctx, &sfn.StopExecutionInput{ExecutionArn: aws.String(arn)})
	require.NoError(t, err)
	s.rig.WaitForAll(s.ctx)
	for _, c := range s.rig.Children(arn) {
		assert.Equal(t, awsfake.StatusAborted, c.Status, "%s: a .sync child is stopped with its parent, as in Step Functions", c.Name)
	}
}
