package operator

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type aslMachine struct {
	States map[string]json.RawMessage `json:"States"`
}

// aslStates returns every state name of a definition, those inside Map and Parallel states included.
func aslStates(t *testing.T, m aslMachine) []string {
	t.Helper()
	var names []string
	for name, raw := range m.States {
		names = append(names, name)
		var st struct {
			ItemProcessor *aslMachine  `json:"ItemProcessor"`
			Iterator      *aslMachine  `json:"Iterator"`
			Branches      []aslMachine `json:"Branches"`
		}
		require.NoError(t, json.Unmarshal(raw, &st), "state %s", name)
		subs := st.Branches
		for _, sub := range []*aslMachine{st.ItemProcessor, st.Iterator} {
			if sub != nil {
				subs = append(subs, *sub)
			}
		}
		for _, sub := range subs {
			names = append(names, aslStates(t, sub)...)
		}
	}
	return names
}

func TestEveryStateOfTheRotationDefinitionHasAPhase(t *testing.T) {
	var states []string
	for _, file := range []string{"rotation.asl.json", "workspace-rotation.asl.json"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "statemachine", file))
		require.NoError(t, err)
		var m aslMachine
		require.NoError(t, json.Unmarshal(raw, &m))
		states = append(states, aslStates(t, m)...)
	}
	require.NotEmpty(t, states)

	known := map[string]bool{}
	for _, name := range states {
		known[name] = true
		assert.NotEmpty(t, phaseOf(name), "state %q of rotation.asl.json has no phase in internal/operator/phase.go", name)
	}
	for name := range phases {
		assert.True(t, known[name], "phase.go names %q, which rotation.asl.json no longer has", name)
	}
}
