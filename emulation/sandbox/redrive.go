package sandbox

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
)

var _ awsfake.Redriver = (*EngineRunner)(nil)

// Redrive emulates Step Functions' RedriveExecution, which aws-local-stepfunctions does not have,
// from the execution's recorded history:
//
//   - when the execution ended inside a Map (the Map was entered and never exited), each iteration
//     that did not succeed runs again from the last state it entered, with the input that state
//     received (its StateEntered input), through the real definition of the Map's ItemProcessor:
//     its Parameters, Retry and Catch apply, its Tasks invoke the real functions. That is what a
//     redrive does for an inline Map's unsuccessful iterations. Unlike AWS, the states after the
//     Map are not run: the redriven execution closes SUCCEEDED with the redriven iterations'
//     outputs ({"redriven_iterations": [...]}), or FAILED with the first iteration's error;
//   - otherwise the top-level state entered last runs again with its recorded input, and the
//     definition continues from there as AWS would.
//
// Events of the redriven run are added to the execution's timeline and history.
func (r *EngineRunner) Redrive(ctx context.Context, execution awsfake.Execution, history []awsfake.HistoryEvent) (string, *awsfake.ExecError) {
	var def struct {
		States map[string]json.RawMessage `json:"States"`
	}
	if err := json.Unmarshal(r.definition, &def); err != nil {
		return "", &awsfake.ExecError{Error: "Sandbox.EngineError", Cause: "read definition: " + err.Error()}
	}
	var full map[string]json.RawMessage
	_ = json.Unmarshal(r.definition, &full)

	mapName, mapFrom, ok := openMap(history)
	if !ok {
		name, input, found := lastEntered(history, -1)
		if !found {
			return "", &awsfake.ExecError{Error: "Sandbox.RedriveUnsupported", Cause: "the history names no state to redrive from"}
		}
		full["StartAt"], _ = json.Marshal(name)
		full["States"], _ = json.Marshal(reachable(def.States, name))
		doc, _ := json.Marshal(full)
		return r.runJob(ctx, execution, doc, json.RawMessage(input))
	}

	var m struct {
		ItemProcessor *struct {
			States map[string]json.RawMessage `json:"States"`
		} `json:"ItemProcessor"`
		Iterator *struct {
			States map[string]json.RawMessage `json:"States"`
		} `json:"Iterator"`
	}
	if err := json.Unmarshal(def.States[mapName], &m); err != nil {
		return "", &awsfake.ExecError{Error: "Sandbox.EngineError", Cause: "read Map " + mapName + ": " + err.Error()}
	}
	processor := m.ItemProcessor
	if processor == nil {
		processor = m.Iterator
	}
	if processor == nil {
		return "", &awsfake.ExecError{Error: "Sandbox.RedriveUnsupported", Cause: "Map " + mapName + " has no ItemProcessor"}
	}

	var outputs []json.RawMessage
	for _, index := range unsuccessfulIterations(history[mapFrom:], mapName) {
		name, input, found := lastEntered(history[mapFrom:], index)
		if !found {
			continue
		}
		doc, err := json.Marshal(map[string]any{"StartAt": name, "States": reachable(processor.States, name)})
		if err != nil {
			return "", &awsfake.ExecError{Error: "Sandbox.EngineError", Cause: err.Error()}
		}
		out, eerr := r.runJob(ctx, execution, doc, json.RawMessage(input))
		if eerr != nil {
			return "", eerr
		}
		outputs = append(outputs, json.RawMessage(out))
	}
	out, _ := json.Marshal(map[string]any{"redriven_iterations": outputs})
	return string(out), nil
}

// openMap finds the top-level Map the execution was in when it ended: entered, not exited.
func openMap(history []awsfake.HistoryEvent) (name string, from int, ok bool) {
	for i := len(history) - 1; i >= 0; i-- {
		ev := history[i]
		switch {
		case ev.Type == "MapStateExited" && ev.Index < 0:
			return "", 0, false
		case ev.Type == "MapStateEntered":
			return ev.StateName, i, true
		}
	}
	return "", 0, false
}

// unsuccessfulIterations lists the iterations of the Map that started and did not succeed.
func unsuccessfulIterations(history []awsfake.HistoryEvent, mapName string) []int {
	var out []int
	done := map[int]bool{}
	for _, ev := range history {
		switch ev.Type {
		case "MapIterationStarted":
			if !done[ev.Index] && !slices.Contains(out, ev.Index) {
				out = append(out, ev.Index)
			}
		case "MapIterationSucceeded":
			done[ev.Index] = true
		}
	}
	kept := out[:0]
	for _, i := range out {
		if !done[i] {
			kept = append(kept, i)
		}
	}
	return kept
}

// lastEntered is the state of iteration index (-1: the top level) entered last, and its input.
func lastEntered(history []awsfake.HistoryEvent, index int) (name, input string, ok bool) {
	for i := len(history) - 1; i >= 0; i-- {
		ev := history[i]
		if strings.HasSuffix(ev.Type, "StateEntered") && ev.Index == index {
			return ev.StateName, ev.Input, true
		}
	}
	return "", "", false
}

// reachable keeps the states reachable from start (by Next, Default, a Choice's or a Catch's
// Next): the engine refuses a definition with a state nothing leads to, and a redrive that starts
// past the beginning leaves the earlier states behind.
func reachable(states map[string]json.RawMessage, start string) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	todo := []string{start}
	for len(todo) > 0 {
		name := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		raw, ok := states[name]
		if _, seen := out[name]; seen || !ok {
			continue
		}
		out[name] = raw
		var st struct {
			Next    string `json:"Next"`
			Default string `json:"Default"`
			Choices []struct {
				Next string `json:"Next"`
			} `json:"Choices"`
			Catch []struct {
				Next string `json:"Next"`
			} `json:"Catch"`
		}
		_ = json.Unmarshal(raw, &st)
		todo = append(todo, st.Next, st.Default)
		for _, c := range st.Choices {
			todo = append(todo, c.Next)
		}
		for _, c := range st.Catch {
			todo = append(todo, c.Next)
		}
	}
	return out
}
