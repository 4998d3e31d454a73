package statemachine

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// historyQuota is the most events one Step Functions execution may hold.
const historyQuota = 25000

type boundedState struct {
	Type          string                       `json:"Type"`
	Resource      string                       `json:"Resource"`
	Retry         []struct{ MaxAttempts *int } `json:"Retry"`
	ItemProcessor *struct {
		States map[string]boundedState `json:"States"`
	} `json:"ItemProcessor"`
}

// eventsOf is the most history events one visit of a state can write, every retry used: a Task
// writes Entered and Exited, and per attempt Scheduled, Started and Succeeded/Failed (plus
// Submitted for a .sync integration); a Map writes Entered, Started, Succeeded and Exited around its
// iterations; any other state Entered and Exited.
func eventsOf(s boundedState, retries bool) int {
	switch s.Type {
	case "Task":
		attempts := 1
		if retries {
			for _, r := range s.Retry {
				if r.MaxAttempts == nil {
					attempts += 3 // the ASL default
				} else {
					attempts += *r.MaxAttempts
				}
			}
		}
		perAttempt := 3
		if strings.Contains(s.Resource, ".sync") {
			perAttempt = 4
		}
		return 2 + attempts*perAttempt
	case "Map":
		return 4
	default:
		return 2
	}
}

// iterationEvents bounds one Map iteration: MapIterationStarted and Succeeded/Failed, and every
// state of the iteration at most once (no iteration of the request's execution loops).
func iterationEvents(m boundedState, retries bool) int {
	n := 2
	for _, s := range m.ItemProcessor.States {
		n += eventsOf(s, retries)
	}
	return n
}

// TestTheRequestExecutionHistoryIsBoundedAtTheCap proves by a count over rotation.asl.json that the
// request's execution stays under the 25,000-event quota at MaxWorkspacesPerRequest workspaces,
// now that every workspace's steps run in its own child execution: the top-level states at most
// once each (the top level has no loop: TestTheRequestsTopLevelHasNoLoop), the approval inventory
// per workspace, then the child per workspace; or, for a dry run (never gated), the plan per workspace.
func TestTheRequestExecutionHistoryIsBoundedAtTheCap(t *testing.T) {
	raw, err := os.ReadFile("rotation.asl.json")
	require.NoError(t, err)
	var def struct {
		States map[string]boundedState `json:"States"`
	}
	require.NoError(t, json.Unmarshal(raw, &def))
	for _, retries := range []bool{false, true} {
		top := 2 // ExecutionStarted and its end
		for _, s := range def.States {
			top += eventsOf(s, retries)
		}
		approval := iterationEvents(def.States["InventoryForApproval"], retries)
		rotate := iterationEvents(def.States["RotateWorkspaces"], retries)
		plan := iterationEvents(def.States["PlanWorkspaces"], retries)
		rotation_ := top + rotation.MaxWorkspacesPerRequest*(approval+rotate)
		// A dry run needs neither an approval nor a window (policy.Evaluate), so it has no approval Map.
		dryRun := top + rotation.MaxWorkspacesPerRequest*plan
		t.Logf("every retry used: %v; top level %d events, per workspace: approval %d, child start %d, dry-run plan %d; at %d workspaces: rotation %d, dry run %d events",
			retries, top, approval, rotate, plan, rotation.MaxWorkspacesPerRequest, rotation_, dryRun)
		assert.Less(t, rotation_, historyQuota, "a rotation of %d workspaces could exceed the history quota (retries used: %v)", rotation.MaxWorkspacesPerRequest, retries)
		// A dry run inventories and reports every workspace in the request's own history (no child).
		assert.Less(t, dryRun, historyQuota, "a dry run of %d workspaces could exceed the history quota (retries used: %v)", rotation.MaxWorkspacesPerRequest, retries)
	}
}

// TestTheRequestsTopLevelHasNoLoop holds the assumption of the count above: each top-level state of
// the request's execution is visited at most once.
func TestTheRequestsTopLevelHasNoLoop(t *testing.T) {
	d := load(t, "rotation.asl.json")
	next := func(s state) []string {
		out := []string{s.Next, s.Default}
		for _, c := range s.Catch {
			out = append(out, c.Next)
		}
		for _, raw := range s.Choices {
			var c struct{ Next string }
			require.NoError(t, json.Unmarshal(raw, &c))
			out = append(out, c.Next)
		}
		return out
	}
	const (
		unseen = iota
		onPath
		done
	)
	mark := map[string]int{}
	var visit func(name string)
	visit = func(name string) {
		if name == "" || mark[name] == done {
			return
		}
		require.NotEqual(t, onPath, mark[name], "the request's top level loops through %s", name)
		mark[name] = onPath
		for _, n := range next(d.States[name]) {
			visit(n)
		}
		mark[name] = done
	}
	visit(d.StartAt)
}
