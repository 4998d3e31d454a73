package rescue_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// reminders are the retirement reminder executions started so far.
func (r *rig) reminders() []awsfake.Execution {
	var out []awsfake.Execution
	for _, e := range r.aws.Executions() {
		if e.StateMachineArn == reminderARN {
			out = append(out, e)
		}
	}
	return out
}

type reminderDoc struct {
	Execution   string           `json:"execution"`
	KeyARN      string           `json:"key_arn"`
	KeyConfigID string           `json:"key_config_id"`
	Workspaces  []map[string]any `json:"workspaces"`
}

func reminderWorkspaces(t *testing.T, e awsfake.Execution) (reminderDoc, map[string]map[string]any) {
	t.Helper()
	var doc reminderDoc
	require.NoError(t, json.Unmarshal([]byte(e.Input), &doc))
	byID := map[string]map[string]any{}
	for _, ws := range doc.Workspaces {
		byID[ws["workspace_id"].(string)] = ws
	}
	return doc, byID
}

// abortedAfterThePatch: analytics has sent its PATCH and waits for the workspace, ml has rotated,
// bi has sent its PATCH but PatchWorkspace's result was never recorded, when an operator stops the
// execution.
func abortedAfterThePatch(t *testing.T, r *rig) {
	t.Helper()
	exec := r.execute(fixtureInput(t), play{history: afterThePatch(t, r), untilStopped: true}, "", "")
	require.Equal(t, awsfake.StatusAborted, exec.Status)
}

// afterThePatch is the history of abortedAfterThePatch, up to the end.
func afterThePatch(t *testing.T, r *rig) steps {
	t.Helper()
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(input, analytics, ml, bi)
	a := rotating(0, analytics).inventory(inventoryOf(wsAnalytics, 4)).stopped().allStopped().patched()
	m := rotating(1, ml).inventory(inventoryOf(wsML, 2)).stopped().rotated()
	b := rotating(2, bi).inventory(inventoryOf(wsBI, 1)).stopped().allStopped()
	b.taskStarted("PatchWorkspace", b.run)
	return append(history, interleaved(a, m, b)...)
}

func TestARunThatTimedOutAfterAPatchTookGetsTheReminderToo(t *testing.T) {
	r := newRig(t)
	exec := r.execute(fixtureInput(t), play{history: afterThePatch(t, r),
		fail: &awsfake.ExecError{Error: "States.Timeout", Cause: "TimeoutSeconds", Status: awsfake.StatusTimedOut}}, "", "")
	require.Equal(t, awsfake.StatusTimedOut, exec.Status)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-timed-out.json")))

	got := r.reminders()
	require.Len(t, got, 1)
	_, ws := reminderWorkspaces(t, got[0])
	assert.Equal(t, rotation.OutcomeRescued, ws[wsAnalytics]["outcome"])
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestARunEndedAfterAPatchTookGetsTheRetirementReminderTheDefinitionWouldHaveScheduled(t *testing.T) {
	r := newRig(t)
	abortedAfterThePatch(t, r)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	got := r.reminders()
	require.Len(t, got, 1, "one reminder for the execution")
	assert.Equal(t, rescue.ReminderName(executionName), got[0].Name)
	assert.Regexp(t, `^retire-[0-9a-f]{64}$`, got[0].Name, "States.Hash's SHA-256 in hex")
	doc, ws := reminderWorkspaces(t, got[0])
	assert.Equal(t, executionName, doc.Execution)
	assert.Equal(t, newKeyARN, doc.KeyARN)
	assert.Equal(t, newConfigID, doc.KeyConfigID)
	require.Len(t, ws, 3)
	for _, id := range []string{wsAnalytics, wsBI} {
		assert.Equal(t, rotation.OutcomeRescued, ws[id]["outcome"], "%s: the PATCH was sent, the execution ended", id)
		assert.Equal(t, true, ws[id]["patched"], id)
		assert.Equal(t, oldConfigID, ws[id]["previous_key_config_id"], id)
		assert.Equal(t, oldKeyARN, ws[id]["previous_key_arn"], id)
	}
	assert.Equal(t, rotation.OutcomeRotated, ws[wsML]["outcome"], "an iteration that ended is listed as the Map lists it")
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
	assert.Contains(t, r.logs.String(), `"retirement_reminder":"`+rescue.ReminderName(executionName)+`"`)
}

func TestARunEndedBeforeAnyPatchStartsNoReminder(t *testing.T) {
	r := newRig(t)
	input := fixtureInput(t)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(input, analytics, ml, bi)
	a := rotating(0, analytics).inventory(inventoryOf(wsAnalytics, 4)).stopped().allStopped()
	history = append(history, a.steps...)
	r.execute(input, play{history: history, untilStopped: true}, "", "")

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))

	assert.Empty(t, r.reminders(), "every workspace is on its previous key: nothing to retire")
	assert.Len(t, r.published(), 3)
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestAReminderThatExistsAlreadyIsSuccess(t *testing.T) {
	r := newRig(t)
	abortedAfterThePatch(t, r)
	// The execution scheduled its reminder itself (with its own results) before it ended.
	_, err := r.sfn.StartExecution(context.Background(), &sfn.StartExecutionInput{StateMachineArn: aws.String(reminderARN),
		Name: aws.String(rescue.ReminderName(executionName)), Input: aws.String(`{"execution":"` + executionName + `","workspaces":[]}`)})
	require.NoError(t, err)

	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))
	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")), "a redelivered event")

	assert.Len(t, r.reminders(), 1)
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestAReminderThatCannotStartKeepsTheLocksUntilARetryStartsIt(t *testing.T) {
	r := newRig(t)
	abortedAfterThePatch(t, r)
	r.h.Config.ReminderStateMachineARN = "arn:aws:states:us-west-2:111122223333:stateMachine:not-deployed-yet"

	err := r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "start the retirement reminder "+rescue.ReminderName(executionName))
	assert.Len(t, r.lockedWorkspaces(), 4, "the locks stay until the reminder is started")

	r.h.Config.ReminderStateMachineARN = reminderARN
	require.NoError(t, r.h.Handle(context.Background(), fixture(t, "rotation-execution-aborted.json")))
	assert.Len(t, r.reminders(), 1)
	assert.Equal(t, map[string]string{wsOther: otherExecution}, r.lockedWorkspaces())
}

func TestADryRunStartsNoReminder(t *testing.T) {
	r := newRig(t)
	input := with(json.RawMessage(fixtureInput(t)), "dry_run", true)
	r.lock(executionName, wsAnalytics, wsML, wsBI)
	history, _ := rotationStart(mustJSON(input), analytics, ml, bi)
	r.execute(mustJSON(input), play{history: history, untilStopped: true}, "", "")
	ev := editDetail(t, fixture(t, "rotation-execution-aborted.json"), func(d map[string]any) { d["input"] = mustJSON(input) })

	require.NoError(t, r.h.Handle(context.Background(), ev))

	assert.Empty(t, r.reminders())
}
