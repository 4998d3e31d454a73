package rig_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/operator"
)

// cmkrotate status follows a request of the real definition into the children the real engine
// starts: while the Map waits under its concurrency of 1, and once every child has ended.
func TestStatusFollowsARequestIntoTheChildrenTheEngineStarts(t *testing.T) {
	const n = 3
	s := start(t, func(o *rig.Options) {
		withExtraWorkspaces(n)(o)
		o.FunctionEnv = map[string]string{"MAX_CONCURRENT_WORKSPACES": "1"}
	})
	s.rig.Fake.FailClusterStart(5000000000000002, "c-02-a", "capacity")
	arn := s.startInput(map[string]any{"workspace_ids": extraIDs(n), "key_arn": s.rig.KeyARN(rig.AliasTargetKeyID)})
	name := arn[strings.LastIndex(arn, ":")+1:]
	sum := md5.Sum([]byte(name))
	child := func(id string) string { return id + "-" + hex.EncodeToString(sum[:]) }
	// The local engine records no TaskScheduled parameters, so the child state machine is given.
	status := func() (int, string, string) {
		return s.cmkrotate("status", arn, "--workspace-state-machine", s.rig.WorkspaceRotationARN)
	}

	sawWaiting, sawState := false, false
	// A running child's row names the state the child entered last (a child state has a phase).
	runningInState := regexp.MustCompile(`\n  500000000000000\d  team-0\d  500000000000000\d-[0-9a-f]{32}  RUNNING  +[A-Z][A-Za-z]+\?? \([a-z ]+\)`)
	for {
		code, stdout, stderr := status()
		// Still running after the snapshot, so running throughout it.
		exec, ok := s.rig.AWS.Execution(arn)
		require.True(t, ok)
		if exec.Status != awsfake.StatusRunning {
			break
		}
		require.Equal(t, operator.ExitOK, code, "a running request: stdout: %s\nstderr: %s", stdout, stderr)
		if strings.Contains(stdout, "1 RUNNING") && strings.Contains(stdout, "not started") {
			sawWaiting = true
		}
		if runningInState.MatchString(stdout) {
			sawState = true
		}
		select {
		case <-s.ctx.Done():
			t.Fatal("the request did not end")
		case <-time.After(100 * time.Millisecond):
		}
	}
	assert.True(t, sawWaiting, "a snapshot showed one child running and the others not started (MaxConcurrency 1)")
	assert.True(t, sawState, "a snapshot showed a running child in the state it entered last")

	s.rig.WaitForAll(s.ctx)
	code, stdout, stderr := status()
	assert.Equal(t, operator.ExitFailure, code, "the request ended ComputeNotRestored: stdout: %s\nstderr: %s", stdout, stderr)
	assert.Contains(t, stdout, "\nChildren    3 workspaces: 3 SUCCEEDED (state machine databricks-cmk-workspace-rotation)\n")
	for i, want := range []struct{ state, outcome string }{
		{"Rotated", "ROTATED, patched"},
		{"RotatedComputeDown", "ROTATED_COMPUTE_DOWN, patched"},
		{"Rotated", "ROTATED, patched"},
	} {
		id := fmt.Sprint(5000000000000001 + i)
		assert.Regexp(t, fmt.Sprintf(`\n  %s  team-%02d  %s  SUCCEEDED  +%s  +%s\n`, id, i+1, child(id), want.state, want.outcome), stdout)
	}
}
