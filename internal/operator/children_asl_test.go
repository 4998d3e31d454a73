package operator

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The children view reads the request's history by these state names and derives the children's
// names as RotateWorkspace does: this holds both to statemachine/rotation.asl.json.
func TestTheChildrenViewFollowsTheRequestDefinition(t *testing.T) {
	type state struct {
		Type          string         `json:"Type"`
		Resource      string         `json:"Resource"`
		Parameters    map[string]any `json:"Parameters"`
		ItemSelector  map[string]any `json:"ItemSelector"`
		ItemProcessor *struct {
			StartAt string           `json:"StartAt"`
			States  map[string]state `json:"States"`
		} `json:"ItemProcessor"`
	}
	type machine struct {
		StartAt string           `json:"StartAt"`
		States  map[string]state `json:"States"`
	}
	read := func(file string) machine {
		raw, err := os.ReadFile(filepath.Join("..", "..", "statemachine", file))
		require.NoError(t, err)
		var m machine
		require.NoError(t, json.Unmarshal(raw, &m))
		return m
	}
	request, child := read("rotation.asl.json"), read("workspace-rotation.asl.json")

	assert.Equal(t, requestStartState, request.StartAt, "a history that entered it is a request's")
	assert.NotContains(t, child.States, requestStartState, "a child's history must not look like a request's")

	m, ok := request.States[childrenMap]
	require.True(t, ok, "rotation.asl.json has no %s", childrenMap)
	require.Equal(t, "Map", m.Type)
	require.NotNil(t, m.ItemProcessor)
	assert.Equal(t, "$$.Execution.Name", m.ItemSelector["execution.$"], "the children's names derive from the request's execution name")
	task, ok := m.ItemProcessor.States[childrenTask]
	require.True(t, ok, "%s has no %s", childrenMap, childrenTask)
	assert.Equal(t, childrenTask, m.ItemProcessor.StartAt)
	assert.Equal(t, "arn:aws:states:::states:startExecution.sync:2", task.Resource)
	assert.Equal(t, "States.Format('{}-{}', $.workspace.workspace_id, States.Hash($.execution, 'MD5'))", task.Parameters["Name.$"],
		"rescue.ChildName derives the same name: workspace id, a dash, the MD5 of the request's name in lower-case hex")
	assert.Equal(t, "${WorkspaceRotationStateMachineArn}", task.Parameters["StateMachineArn"],
		"childMachineOf reads it from the TaskScheduled parameters, resolved")
}
