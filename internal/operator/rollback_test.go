package operator_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/operator"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

func TestRollbackMovesOnlyTheRotatedWorkspacesBackToTheirPreviousConfiguration(t *testing.T) {
	h := newHarness(t)
	noPreviousKey := mlResearch()
	noPreviousKey.target.PreviousManagedKeyID, noPreviousKey.target.PreviousManagedKeyARN = "", ""
	h.srv.RegisterStateMachine(smARN, immediate(func(exec awsfake.Execution) script {
		switch {
		case strings.HasPrefix(exec.Name, "partly-failed"):
			stuck := mlResearch()
			stuck.stopTimesOut = true
			return rotationScript(t, exec, analyticsProd(), stuck)
		case strings.HasPrefix(exec.Name, "from-no-key"):
			return rotationScript(t, exec, noPreviousKey)
		case strings.HasPrefix(exec.Name, "rejected"):
			return rejectedScript(t, exec)
		case strings.HasPrefix(exec.Name, "rollback-"):
			return rotationScript(t, exec, analyticsProd())
		}
		return rotationScript(t, exec, analyticsProd(), mlResearch())
	}))
	h.waitClosed(h.startDirect("partly-failed", rotationInput(t, false, "1234567890123456", "2345678901234567")))
	h.waitClosed(h.startDirect("from-no-key", rotationInput(t, false, "2345678901234567")))
	h.waitClosed(h.startDirect("rejected", rotationInput(t, false, "1234567890123456")))

	t.Run("--print gives the console input of the rotated workspace only", func(t *testing.T) {
		h.stdout.Reset()
		code := h.run("rollback", "partly-failed", "--print")
		require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
		assert.JSONEq(t, `{
			"workspace_ids": ["1234567890123456"],
			"key_arn": "`+oldKeyARN+`",
			"use_cases": ["MANAGED_SERVICES"],
			"rollback_of": {"execution": "partly-failed", "key_config_id": "`+newConfig+`", "previous_key_config_id": "`+oldConfig+`"}
		}`, h.stdout.String())
		assert.Len(t, h.srv.Executions(), 3, "--print starts nothing")
	})

	t.Run("a workspace that had no managed services key cannot be moved back", func(t *testing.T) {
		h.stderr.Reset()
		code := h.run("rollback", "from-no-key")
		assert.Equal(t, operator.ExitUsage, code)
		assert.Contains(t, h.stderr.String(), "workspace 2345678901234567 had no managed services key configuration before from-no-key")
		assert.Len(t, h.srv.Executions(), 3)
	})

	t.Run("a rejected execution changed nothing to roll back", func(t *testing.T) {
		h.stderr.Reset()
		code := h.run("rollback", "rejected")
		assert.Equal(t, operator.ExitFailure, code)
		assert.Contains(t, h.stderr.String(), "changed no workspace")
		assert.Len(t, h.srv.Executions(), 3)
	})

	t.Run("the rollback starts under a name derived from the execution, once", func(t *testing.T) {
		h.stdout.Reset()
		code := h.run("rollback", "partly-failed")
		require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
		execs := h.srv.Executions()
		require.Len(t, execs, 4)
		started := execs[3]
		assert.True(t, strings.HasPrefix(started.Name, "rollback-partly-failed-"), started.Name)
		req, err := rotation.ParseRequest([]byte(started.Input))
		require.NoError(t, err)
		assert.Equal(t, &rotation.RollbackOf{Execution: "partly-failed", KeyConfigID: newConfig, PreviousKeyConfigID: oldConfig}, req.RollbackOf)
		assert.Contains(t, h.stdout.String(), "Started rollback "+started.Name)

		h.waitClosed(started.ExecutionArn)
		h.stderr.Reset()
		code = h.run("rollback", "partly-failed")
		assert.Equal(t, operator.ExitFailure, code)
		assert.Contains(t, h.stderr.String(), "already exists")
		assert.Len(t, h.srv.Executions(), 4)
	})
}

func TestRollbackUsageErrorsStartNothing(t *testing.T) {
	h := newHarness(t)
	assert.Equal(t, operator.ExitUsage, h.run("rollback"))
	assert.Equal(t, operator.ExitUsage, h.run("rollback", "a", "b"))
	assert.Equal(t, operator.ExitOK, h.run("rollback", "--help"))
	assert.Contains(t, h.stdout.String(), "rollback_of")
	var none []json.RawMessage
	assert.Len(t, h.srv.Executions(), len(none))
}
