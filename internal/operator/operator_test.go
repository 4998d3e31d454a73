package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/operator"
)

func TestStartWithFlagsStartsTheNormalisedInputAndSaysWhereToFollowIt(t *testing.T) {
	h := newHarness(t)
	h.srv.RegisterStateMachine(smARN, newStepper(func(exec awsfake.Execution) script { return rotationScript(t, exec, analyticsProd(), mlResearch()) }))

	code := h.run("start",
		"--workspace", "1234567890123456", "--workspace", "2345678901234567,1234567890123456",
		"--key-arn", keyARN, "--alias", "alias/databricks-cmk", "--use-cases", "storage,MANAGED_SERVICES",
		"--no-reuse-key-for-cluster-volumes", "--name", "ops-rotation-1")

	require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
	execs := h.srv.Executions()
	require.Len(t, execs, 1)
	assert.Equal(t, execPfx+"ops-rotation-1", execs[0].ExecutionArn)
	assert.JSONEq(t, `{
		"workspace_ids": ["1234567890123456", "2345678901234567"],
		"key_arn": "`+keyARN+`",
		"key_alias": "alias/databricks-cmk",
		"use_cases": ["MANAGED_SERVICES", "STORAGE"],
		"reuse_key_for_cluster_volumes": false
	}`, execs[0].Input)
	assert.Equal(t, "Started rotation ops-rotation-1\n"+
		"Execution   "+execPfx+"ops-rotation-1\n"+
		"Console     https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/"+execPfx+"ops-rotation-1\n"+
		"Follow it with: cmkrotate watch "+execPfx+"ops-rotation-1\n", h.stdout.String())
	assert.Empty(t, h.stderr.String())
}

func TestStartWithAnInputFileSendsItAfterTheSameValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input func(h *harness, doc string) string
	}{
		{"from a file", func(h *harness, doc string) string {
			path := filepath.Join(t.TempDir(), "input.json")
			require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
			return path
		}},
		{"from stdin", func(h *harness, doc string) string {
			h.stdin = strings.NewReader(doc)
			return "-"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.srv.RegisterStateMachine(smARN, newStepper(func(exec awsfake.Execution) script { return rotationScript(t, exec, analyticsProd()) }))
			// A console-style input: the id as a number, as the console makes easy to type.
			doc := `{"workspace_ids": [1234567890123456], "key_arn": "` + keyARN + `"}`

			code := h.run("start", "--input", tc.input(h, doc))

			require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
			execs := h.srv.Executions()
			require.Len(t, execs, 1)
			assert.Regexp(t, `^cmkrotate-\d{8}T\d{6}Z-[0-9a-f]{8}$`, execs[0].Name)
			assert.JSONEq(t, `{"workspace_ids": ["1234567890123456"], "key_arn": "`+keyARN+`", "use_cases": ["MANAGED_SERVICES"]}`, execs[0].Input)
			assert.Contains(t, h.stdout.String(), "Execution   "+execs[0].ExecutionArn+"\n")
		})
	}
}

func TestInvalidInputIsRefusedOfflineAndStartsNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		file     string
		problems []string
	}{
		{
			name: "every problem of a flag-built input, named after its flag",
			args: []string{"start", "--workspace", "12ab", "--workspace", "0123", "--use-cases", "MANAGED_SERVICES,DBFS", "--alias", "databricks"},
			problems: []string{
				`--workspace[0]: "12ab" is not a Databricks workspace id (digits only)`,
				`--workspace[1]: "0123" is not a Databricks workspace id (digits only)`,
				"--key-arn: required",
				`--use-cases[1]: "DBFS" is not MANAGED_SERVICES or STORAGE`,
				`--alias: "databricks" must start with alias/`,
			},
		},
		{
			name:     "a key ARN that is not a KMS key ARN",
			args:     []string{"plan", "--workspace", "1234567890123456", "--key-arn", "arn:aws:kms:us-east-1:123456789012:secret/x"},
			problems: []string{`is not a KMS key or alias ARN: resource "secret/x" is neither key/<key-id> nor alias/<name>`},
		},
		{
			name:     "reuse for cluster volumes without a storage key",
			args:     []string{"start", "--workspace", "1234567890123456", "--key-arn", keyARN, "--no-reuse-key-for-cluster-volumes"},
			problems: []string{"--no-reuse-key-for-cluster-volumes: only applies when --use-cases includes STORAGE"},
		},
		{
			name:     "an input file with a field the state machine does not take",
			file:     `{"workspace_ids": ["1234567890123456"], "key_arn": "` + keyARN + `", "dryrun": true}`,
			problems: []string{`unknown field "dryrun"`},
		},
		{
			name:     "an input file that is not JSON",
			file:     `{"workspace_ids": ["1234567890123456"],`,
			problems: []string{"malformed JSON: the input ends before the object does"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.srv.RegisterStateMachine(smARN, immediate(func(exec awsfake.Execution) script { return rotationScript(t, exec, analyticsProd()) }))
			args := tc.args
			if tc.file != "" {
				path := filepath.Join(t.TempDir(), "input.json")
				require.NoError(t, os.WriteFile(path, []byte(tc.file), 0o600))
				args = []string{"start", "--input", path}
			}

			code := h.run(args...)

			assert.Equal(t, operator.ExitUsage, code)
			assert.Contains(t, h.stderr.String(), "the input is not valid; nothing was started:\n")
			for _, p := range tc.problems {
				assert.Contains(t, h.stderr.String(), p)
			}
			assert.Empty(t, h.srv.Executions(), "nothing may start")
			assert.Empty(t, h.srv.Requests(), "invalid input is refused before any AWS call")
			assert.Empty(t, h.stdout.String())
		})
	}
}

func TestUsageErrorsExitTwoAndNameWhatIsWrong(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no state machine anywhere", map[string]string{}, []string{"start", "--workspace", "1234567890123456", "--key-arn", keyARN},
			"no state machine: give --state-machine ARN or set ROTATOR_STATE_MACHINE_ARN"},
		{"a state machine ARN that is not one", nil, []string{"list", "--state-machine", "arn:aws:lambda:us-east-1:123456789012:function:x"},
			"is not a state machine ARN"},
		{"--input together with input flags", nil, []string{"start", "--input", "x.json", "--workspace", "1234567890123456"},
			"--input cannot be combined with --workspace"},
		{"an unknown flag", nil, []string{"start", "--workspaces", "1"}, "flag provided but not defined: -workspaces"},
		{"status without an execution", nil, []string{"status"}, "want one EXECUTION"},
		{"an execution name without a state machine", map[string]string{}, []string{"watch", "cmkrotate-x"},
			`"cmkrotate-x" is not an execution ARN; to give an execution name, also give --state-machine`},
		{"a status filter Step Functions does not know", nil, []string{"list", "--status", "DONE"}, `--status "DONE" is not one of RUNNING, SUCCEEDED, FAILED`},
		{"an unknown command", nil, []string{"rotate"}, `unknown command "rotate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.env != nil {
				h.env = tc.env
			}

			code := h.run(tc.args...)

			assert.Equal(t, operator.ExitUsage, code)
			assert.Contains(t, h.stderr.String(), tc.want)
			assert.Empty(t, h.srv.Requests(), "a usage error makes no AWS call")
		})
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "list"}, {"start", "--help"}, {"plan", "-h"}, {"status", "--help"}, {"watch", "--help"}, {"list", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			h := newHarness(t)

			code := h.run(args...)

			assert.Equal(t, operator.ExitOK, code)
			assert.Contains(t, h.stdout.String(), "Usage")
			assert.Empty(t, h.stderr.String())
		})
	}
}

func TestPlanFollowsTheDryRunAndPrintsWhatWouldBeStopped(t *testing.T) {
	h := newHarness(t)
	h.stepper = newStepper(func(exec awsfake.Execution) script { return rotationScript(t, exec, analyticsProd(), mlResearch()) })
	h.srv.RegisterStateMachine(smARN, h.stepper)

	code := h.run("plan", "--workspace", "1234567890123456,2345678901234567", "--key-arn", keyARN, "--name", "plan-1")

	require.Equal(t, operator.ExitOK, code, "stdout: %s\nstderr: %s", h.stdout, h.stderr)
	exec, ok := h.srv.Execution(execPfx + "plan-1")
	require.True(t, ok)
	var input map[string]any
	require.NoError(t, json.Unmarshal([]byte(exec.Input), &input))
	assert.Equal(t, true, input["dry_run"], "plan starts a dry run")

	out := normalise(h.stdout.String())
	assert.Contains(t, out, "Started dry run plan-1\n")
	assert.Contains(t, out, "+T [0] 1234567890123456 analytics-prod: PlanInventory (planning); would stop 2 clusters, 1 pool, 1 warehouse, 1 pipeline\n")
	assert.Contains(t, out, "Status      SUCCEEDED in T (started TIME)\n")
	assert.Contains(t, out, `Key         `+keyARN+`
Key config  a new key configuration would be registered

1234567890123456 analytics-prod: would stop 2 clusters, 1 pool, 1 warehouse, 1 pipeline
  cluster    etl-nightly   0102-150405-etl1  restarted afterwards
  cluster    job-run-42    0102-150405-job2  not restarted (JOB cluster: its owner starts it)
  pool       shared-pool   0102-pool-shared  drained; its settings restored afterwards
  warehouse  bi-warehouse  wh-bi             restarted afterwards
  pipeline   ingest        pl-ingest         restarted afterwards (continuous)
  Dry run: nothing was changed. This is what a rotation would stop and restart.

2345678901234567 ml-research: would stop 1 cluster
  cluster  gpu-training  0102-150405-gpu1  restarted afterwards
  Dry run: nothing was changed. This is what a rotation would stop and restart.
`)
}

func TestWatchFollowsARotationUntilItSucceeds(t *testing.T) {
	h := newHarness(t)
	h.stepper = newStepper(func(exec awsfake.Execution) script { return rotationScript(t, exec, analyticsProd()) })
	h.srv.RegisterStateMachine(smARN, h.stepper)

	code := h.run("start", "--watch", "--workspace", "1234567890123456", "--key-arn", keyARN, "--name", "rotate-1")

	require.Equal(t, operator.ExitOK, code, "stdout: %s\nstderr: %s", h.stdout, h.stderr)
	assert.Equal(t, `Started rotation rotate-1
Execution   `+execPfx+`rotate-1
Console     https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/`+execPfx+`rotate-1

+T RUNNING
+T RUNNING DryRun? (validating)
+T RUNNING RotateWorkspaces
+T [0] 1234567890123456 analytics-prod: WaitForStopAgain (stopping compute); stopping 2 clusters, 1 pool, 1 warehouse, 1 pipeline; waiting on 1: cluster etl-nightly (TERMINATING)
+T [0] 1234567890123456 analytics-prod: PatchWorkspace (updating workspace); stopped 2 clusters, 1 pool, 1 warehouse, 1 pipeline
+T [0] 1234567890123456 analytics-prod: WaitForRestart (restarting); restarting 2 clusters, 1 pool, 1 warehouse, 1 pipeline
+T [0] 1234567890123456 analytics-prod: ROTATED
Execution   rotate-1
Status      SUCCEEDED in T (started TIME)
Results
  1234567890123456  analytics-prod  ROTATED
Console     https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/`+execPfx+`rotate-1
`, normalise(h.stdout.String()))
	assert.Empty(t, h.stderr.String())
}

func TestWatchOfAFailedRotationExitsOneWithTheCauseAndWhatIsStillDown(t *testing.T) {
	h := newHarness(t)
	stuck := analyticsProd()
	stuck.stopTimesOut = true
	h.stepper = newStepper(func(exec awsfake.Execution) script { return rotationScript(t, exec, stuck, mlResearch()) })
	h.srv.RegisterStateMachine(smARN, h.stepper)
	arn := h.startDirect("rotate-2", rotationInput(t, false, "1234567890123456", "2345678901234567"))

	code := h.run("watch", arn)

	assert.Equal(t, operator.ExitFailure, code)
	out := normalise(h.stdout.String())
	assert.Contains(t, out, "+T [0] 1234567890123456 analytics-prod: Compensated? (restarting after failure); restarted 1 cluster, 1 pool, 1 pipeline; 1 not restartable; still down 1: warehouse bi-warehouse (STOPPED)\n")
	assert.Contains(t, out, `Status      FAILED after T (started TIME)
Error       RotationFailed
Cause       One or more workspaces failed to rotate; each published a Rotation Failed event naming the cause and anything still down.
Results
  1234567890123456  analytics-prod  FAILED   ComputeStopTimedOut: compute of workspace 1234567890123456 did not stop within 30m0s: cluster etl-nightly is still TERMINATING
  2345678901234567  ml-research     ROTATED
  1234567890123456 compute: restarted 1 cluster, 1 pool, 1 pipeline; 1 not restartable; still down 1: warehouse bi-warehouse (STOPPED)
`)
	assert.Equal(t, "cmkrotate watch: execution rotate-2 FAILED: RotationFailed: One or more workspaces failed to rotate; each published a Rotation Failed event naming the cause and anything still down.\n", h.stderr.String())
}

func TestWatchOfARotationWhoseComputeDidNotAllComeBackExitsOneAndNamesWhatIsDown(t *testing.T) {
	h := newHarness(t)
	down := analyticsProd()
	down.stillDownAfterRestart = true
	h.stepper = newStepper(func(exec awsfake.Execution) script { return rotationScript(t, exec, down) })
	h.srv.RegisterStateMachine(smARN, h.stepper)
	arn := h.startDirect("rotate-4", rotationInput(t, false, "1234567890123456"))

	code := h.run("watch", "rotate-4")

	assert.Equal(t, operator.ExitFailure, code)
	assert.Contains(t, normalise(h.stdout.String()), `Status      FAILED after T (started TIME)
Error       ComputeNotRestored
Cause       Every workspace is on the new key, but some compute did not come back; the Rotation Succeeded events list it in still_down.
Results
  1234567890123456  analytics-prod  ROTATED_COMPUTE_DOWN  still down: warehouse bi-warehouse (STOPPED)
  1234567890123456 compute: restarted 2 clusters, 1 pool, 1 warehouse, 1 pipeline; still down 1: warehouse bi-warehouse (STOPPED)
Console     https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/`+arn+`
`)
	assert.Contains(t, h.stderr.String(), "cmkrotate watch: execution rotate-4 FAILED: ComputeNotRestored")
}

func TestStatusOfARunningRotationShowsEachWorkspaceAndWhatIsStopped(t *testing.T) {
	h := newHarness(t)
	flaky := mlResearch()
	flaky.unavailableOnce = true
	st := newStepper(func(exec awsfake.Execution) script { return rotationScript(t, exec, analyticsProd(), flaky) })
	h.srv.RegisterStateMachine(smARN, st)
	arn := h.startDirect("rotate-3", rotationInput(t, false, "1234567890123456", "2345678901234567"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Validate, RegisterKeyConfig, analytics-prod in four steps, then ml-research until its second
	// CheckStopped has failed once.
	for range 8 {
		require.NoError(t, st.advance(ctx, h.srv))
	}

	code := h.run("status", "rotate-3", "--state-machine", smARN)

	require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
	assert.Equal(t, `Execution   rotate-3
Status      RUNNING for T (started TIME)
Workspaces  1234567890123456, 2345678901234567
Key         `+keyARN+`
State       RotateWorkspaces
  [0] 1234567890123456 analytics-prod: ROTATED
  [1] 2345678901234567 ml-research: CheckStopped (stopping compute); retrying after DatabricksUnavailable: listing clusters of workspace 2345678901234567: 503 Service Unavailable
      stopping 1 cluster; waiting on 1: cluster gpu-training (TERMINATING)
Console     https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/`+arn+`
`, normalise(h.stdout.String()))
}

func TestListShowsNewestFirstAndFiltersByStatus(t *testing.T) {
	h := newHarness(t)
	h.srv.RegisterStateMachine(smARN, immediate(func(exec awsfake.Execution) script {
		switch {
		case strings.HasPrefix(exec.Name, "rejected"):
			return rejectedScript(t, exec)
		case strings.HasPrefix(exec.Name, "failed"):
			stuck := analyticsProd()
			stuck.stopTimesOut = true
			return rotationScript(t, exec, stuck, mlResearch())
		}
		return rotationScript(t, exec, analyticsProd(), mlResearch())
	}))
	for _, name := range []string{"rotated", "failed", "planned", "rejected"} {
		arn := h.startDirect(name, rotationInput(t, name == "planned", "1234567890123456", "2345678901234567"))
		h.waitClosed(arn)
	}

	t.Run("every execution, newest first", func(t *testing.T) {
		h.stdout.Reset()
		code := h.run("list")

		require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
		assert.Equal(t, [][]string{
			{"NAME", "STATUS", "STARTED", "DURATION", "WORKSPACES", "OUTCOME"},
			{"rejected", "FAILED", "TIME", "T", "1234567890123456,2345678901234567", "KeyPolicyRejected: key policy does not let the Databricks control plane use the key for MANAGED_SERVICES"},
			{"planned", "SUCCEEDED", "TIME", "T", "1234567890123456,2345678901234567", "dry run: 2 PLANNED"},
			{"failed", "FAILED", "TIME", "T", "1234567890123456,2345678901234567", "1 ROTATED, 1 FAILED (RotationFailed)"},
			{"rotated", "SUCCEEDED", "TIME", "T", "1234567890123456,2345678901234567", "2 ROTATED"},
		}, tableCells(h.stdout.String()))
	})

	t.Run("only the failed ones, at most one", func(t *testing.T) {
		h.stdout.Reset()
		code := h.run("list", "--status", "failed", "--max", "1")

		require.Equal(t, operator.ExitOK, code, "stderr: %s", h.stderr)
		rows := tableCells(h.stdout.String())
		require.Len(t, rows, 2)
		assert.Equal(t, []string{"rejected", "FAILED"}, rows[1][:2])
	})
}

func TestStatusOfAnUnknownExecutionSaysItDoesNotExist(t *testing.T) {
	h := newHarness(t)
	h.srv.RegisterStateMachine(smARN, immediate(func(exec awsfake.Execution) script { return rotationScript(t, exec, analyticsProd()) }))
	var stdout, stderr bytes.Buffer
	newSFN := func(context.Context) (*sfn.Client, error) { return h.client, nil }

	code := operator.Run(context.Background(), []string{"status", execPfx + "no-such-run"}, &stdout, &stderr,
		func(string) string { return "" }, newSFN)

	assert.Equal(t, operator.ExitFailure, code)
	assert.Equal(t, "cmkrotate status: execution "+execPfx+"no-such-run does not exist: check the ARN, and that the credentials (AWS_PROFILE) are for account 123456789012\n", stderr.String())
	assert.Empty(t, stdout.String())
}

var (
	elapsedRE      = regexp.MustCompile(`\+\d+[hms][\dhms]*`)
	durationRE     = regexp.MustCompile(`\b(in|after|for) \d+[hms][\dhms]*`)
	timeRE         = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC`)
	cellGapRE      = regexp.MustCompile(`\s{2,}`)
	durationCellRE = regexp.MustCompile(`^\d+[hms][\dhms]*$`)
)

// tableCells splits a table into its cells, with times and durations replaced.
func tableCells(table string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		cells := cellGapRE.Split(line, -1)
		for i, c := range cells {
			cells[i] = durationCellRE.ReplaceAllString(timeRE.ReplaceAllString(c, "TIME"), "T")
		}
		rows = append(rows, cells)
	}
	return rows
}

// normalise replaces what depends on the clock: elapsed times, durations and timestamps.
func normalise(s string) string {
	s = elapsedRE.ReplaceAllString(s, "+T")
	s = durationRE.ReplaceAllString(s, "$1 T")
	s = timeRE.ReplaceAllString(s, "TIME")
	return s
}
