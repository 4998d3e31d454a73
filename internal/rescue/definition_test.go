package rescue

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The rescue reads the execution history of statemachine/rotation.asl.json: a few states by name,
// and the shape of what the workspace iterations output. These tests hold the two together, so that
// renaming a state or reshaping an iteration's result fails here rather than silently in a rescue.

type aslState struct {
	Type           string            `json:"Type"`
	Resource       string            `json:"Resource"`
	End            bool              `json:"End"`
	ResultPath     json.RawMessage   `json:"ResultPath"`
	Parameters     map[string]any    `json:"Parameters"`
	ItemSelector   map[string]any    `json:"ItemSelector"`
	ResultSelector map[string]any    `json:"ResultSelector"`
	Catch          []aslCatch        `json:"Catch"`
	Processor      *aslProcessor     `json:"ItemProcessor"`
	Iterator       *aslProcessor     `json:"Iterator"`
	Choices        []json.RawMessage `json:"Choices"`
}

type aslCatch struct {
	ResultPath *string `json:"ResultPath"`
}

type aslProcessor struct {
	States map[string]aslState `json:"States"`
}

func loadDefinition(t *testing.T) map[string]aslState {
	t.Helper()
	raw, err := os.ReadFile("../../statemachine/rotation.asl.json")
	require.NoError(t, err)
	var def struct {
		States map[string]aslState `json:"States"`
	}
	require.NoError(t, json.Unmarshal(raw, &def))
	return def.States
}

// iterations are the states of each workspace Map's iteration, by Map name.
func iterations(t *testing.T, top map[string]aslState) map[string]map[string]aslState {
	t.Helper()
	out := map[string]map[string]aslState{}
	for name, s := range top {
		if s.Type != "Map" {
			continue
		}
		p := s.Processor
		if p == nil {
			p = s.Iterator
		}
		require.NotNil(t, p, "Map %s has no ItemProcessor", name)
		out[name] = p.States
		assert.Contains(t, s.ItemSelector, "workspace.$", "Map %s: each iteration's run must carry its workspace, which is how the rescue attributes history events", name)
	}
	require.Contains(t, out, "RotateWorkspaces")
	require.Contains(t, out, "PlanWorkspaces")
	// RotateWorkspaces starts one child execution per workspace: the child's history is the one the
	// rescue reads for that workspace, with the child's top-level states as the iteration's.
	rotate := out["RotateWorkspaces"]["RotateWorkspace"]
	require.Equal(t, "arn:aws:states:::states:startExecution.sync:2", rotate.Resource)
	assert.Contains(t, rotate.ResultSelector, "workspace_id.$", "the parent's iteration result names its workspace")
	assert.Contains(t, rotate.ResultSelector, "outcome.$", "the parent's iteration result says the outcome, so the parent's rescue sees it ended")
	raw, err := os.ReadFile("../../statemachine/workspace-rotation.asl.json")
	require.NoError(t, err)
	var child struct {
		States map[string]aslState `json:"States"`
	}
	require.NoError(t, json.Unmarshal(raw, &child))
	out["RotateWorkspaces"] = child.States
	return out
}

func resultPath(s aslState) string {
	if len(s.ResultPath) == 0 {
		return "<absent>"
	}
	return string(s.ResultPath)
}

func TestTheStatesTheRescueReadsByNameAreInTheDefinition(t *testing.T) {
	top := loadDefinition(t)
	rotate := iterations(t, top)["RotateWorkspaces"]

	for name, path := range map[string]string{stateStopCompute: `"$.stop"`, statePatchWorkspace: `"$.patch"`} {
		s, ok := rotate[name]
		if assert.True(t, ok, "RotateWorkspaces has no state %s", name) {
			assert.Equal(t, "Task", s.Type, name)
			assert.Equal(t, path, resultPath(s), "%s: the rescue reads its result there", name)
		}
	}
	lock, ok := top["LockWorkspaces"]
	require.True(t, ok)
	assert.Equal(t, `"$.lock"`, resultPath(lock), "the rescue reads the execution's lock at $.lock")
	assert.Equal(t, "$$.Execution.Name", lock.Parameters["execution.$"], "the lock owner is the execution name")
}

func TestEveryPublishStateTheRescueTrustsPublishesAndCatchesIntoPublishError(t *testing.T) {
	top := loadDefinition(t)
	iters := iterations(t, top)
	check := func(where, name string, s aslState) {
		assert.Equal(t, "arn:aws:states:::events:putEvents", s.Resource, "%s %s", where, name)
		assert.Equal(t, "null", resultPath(s), "%s %s: ResultPath null keeps the run, which is how the rescue sees the state exit", where, name)
		require.NotEmpty(t, s.Catch, "%s %s", where, name)
		for _, c := range s.Catch {
			if assert.NotNil(t, c.ResultPath, "%s %s: a Catch without ResultPath replaces the run", where, name) {
				assert.Equal(t, "$.publish_error", *c.ResultPath, "%s %s: the rescue tells a refused event by publish_error", where, name)
			}
		}
	}
	for _, name := range publishStates {
		found := false
		for mapName, states := range iters {
			if s, ok := states[name]; ok {
				found = true
				check(mapName, name, s)
			}
		}
		assert.True(t, found, "publishStates names %s, which no workspace Map has", name)
	}
	for mapName, states := range iters {
		for name, s := range states {
			if s.Resource == "arn:aws:states:::events:putEvents" {
				assert.Contains(t, publishStates, name, "%s publishes from %s, which publishStates does not list", mapName, name)
			}
		}
	}
	s, ok := top[statePublishRejection]
	require.True(t, ok)
	check("top level", statePublishRejection, s)
}

func TestEveryWorkspaceIterationEndsInAPassStateThatOutputsItsOutcome(t *testing.T) {
	for mapName, states := range iterations(t, loadDefinition(t)) {
		for name, s := range states {
			if !s.End && s.Type != "Succeed" && s.Type != "Fail" {
				continue
			}
			assert.Equal(t, "Pass", s.Type, "%s %s ends an iteration without an outcome: the rescue would take it for unfinished", mapName, name)
			assert.Contains(t, s.Parameters, "workspace_id.$", "%s %s", mapName, name)
			assert.Contains(t, s.Parameters, "outcome", "%s %s", mapName, name)
			assert.NotContains(t, s.Parameters, "workspace.$", "%s %s: an outcome that carries the run would read as a running iteration", mapName, name)
		}
	}
}

func TestTheRescueNamesTheReminderAsTheDefinitionDoes(t *testing.T) {
	var found []aslState
	files, err := filepath.Glob("../../statemachine/*.asl.json")
	require.NoError(t, err)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var def struct {
			States map[string]aslState `json:"States"`
		}
		require.NoError(t, json.Unmarshal(raw, &def))
		if s, ok := def.States["ScheduleRetirementReminder"]; ok {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "one state schedules the reminder")
	s := found[0]
	assert.Equal(t, "States.Format('retire-{}', States.Hash($$.Execution.Name, 'SHA-256'))", s.Parameters["Name.$"],
		"ReminderName computes this name: change both together")
	assert.Equal(t, "${RetirementReminderStateMachineArn}", s.Parameters["StateMachineArn"])
	input, _ := s.Parameters["Input"].(map[string]any)
	assert.Equal(t, map[string]any{"execution.$": "$$.Execution.Name", "key_arn.$": "$.plan.key_arn",
		"key_config_id.$": "$.key_config.key_config_id", "workspaces.$": "$.results"}, input,
		"reminderInput has this shape, and history reads $.plan.key_arn and $.key_config.key_config_id")
	assert.Equal(t, "retire-"+"a591a6d40bf420404a011733cfb7b190d62c65bf0bcda32b57b277d9ad9f146e", ReminderName("Hello World"),
		"SHA-256 of the name, lower-case hex, as States.Hash prints it")
}
