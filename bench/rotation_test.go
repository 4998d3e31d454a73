//go:build bench

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/sandbox"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/polling"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wsupdate"
)

// Databricks' own delays in the rotation figures: how long clusters, warehouses, pools and
// pipelines take to stop and to start, and how long an accepted workspace update takes to show.
const (
	rotationTransition = 20 * time.Second
	rotationUpdate     = 10 * time.Second
)

// Public list prices (us-east-1) used for the cost figures.
const (
	pricePerTransition   = 0.025 / 1000  // Step Functions Standard, per state transition
	pricePerRequest      = 0.20 / 1e6    // Lambda, per request
	pricePerGBSecondArm  = 0.0000133334  // Lambda arm64, per GB-second
	reminderTransitions  = 2             // retirement-reminder.asl.json: WaitOneDay, PublishRetirable
	productionBudgetsEnv = "30m/30m/30m" // STOP_BUDGET/START_BUDGET/WORKSPACE_UPDATE_BUDGET
)

// productionBudgets undo the sandbox's short budgets, which exist to make timeout scenarios quick:
// with real delays they would fire.
var productionBudgets = map[string]string{"STOP_BUDGET": "30m", "START_BUDGET": "30m", "WORKSPACE_UPDATE_BUDGET": "30m", "STORAGE_UPDATE_BUDGET": "45m", "WORKSPACE_PROVISIONING_GRACE": "60m"}

// startRig starts the sandbox with the definitions' own Wait durations (no override) and the
// given Databricks delays.
func startRig(t *testing.T, env *environment, customise func(*rig.Options)) (*rig.Rig, context.Context) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	opts := rig.Options{RepoRoot: env.root, BuildDir: env.localDir, Seed: rig.DemoSeed(rig.DefaultRegion), ClientSecret: "bench-client-secret",
		WaitMS: -1, Fake: dbfake.Options{Latency: apiLatency, TransitionDelay: rotationTransition, WorkspaceUpdateDelay: rotationUpdate},
		FunctionEnv: map[string]string{}}
	for k, v := range productionBudgets {
		opts.FunctionEnv[k] = v
	}
	if customise != nil {
		customise(&opts)
	}
	r, err := rig.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	require.NoError(t, r.PrepareFixtureKeys(ctx))
	return r, ctx
}

// withWorkspaces adds n workspaces, each with two clusters that are restarted and a job cluster.
func withWorkspaces(n int) func(*rig.Options) {
	return func(o *rig.Options) {
		// The bundled rotation policy names only the demo's workspaces (default deny).
		o.Policy = rig.PolicyAllowing(manyIDs(n)...)
		for i := 1; i <= n; i++ {
			ws := rig.DemoSeed(rig.DefaultRegion).Workspaces[0].Workspace
			ws.WorkspaceId, ws.WorkspaceName, ws.DeploymentName = manyID(i), fmt.Sprintf("team-%02d", i), fmt.Sprintf("dbc-team-%02d", i)
			o.Seed.Workspaces = append(o.Seed.Workspaces, dbfake.WorkspaceSeed{Workspace: ws, Clusters: []compute.ClusterDetails{
				{ClusterId: fmt.Sprintf("c-%02d-a", i), ClusterName: "shared", State: compute.StateRunning, ClusterSource: compute.ClusterSourceUi},
				{ClusterId: fmt.Sprintf("c-%02d-b", i), ClusterName: "etl", State: compute.StateRunning, ClusterSource: compute.ClusterSourceApi},
				{ClusterId: fmt.Sprintf("c-%02d-j", i), ClusterName: "nightly", State: compute.StateRunning, ClusterSource: compute.ClusterSourceJob},
			}})
		}
	}
}

func manyID(i int) int64 { return int64(5000000000000000 + i) }

func manyIDs(n int) []string {
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, strconv.FormatInt(manyID(i), 10))
	}
	return ids
}

// rotationRun is one finished rotation execution in the sandbox.
type rotationRun struct {
	exec      awsfake.Execution
	wall      time.Duration
	timeline  sandbox.Timeline
	children  []sandbox.Timeline // one per workspace: each rotates in its own child execution
	succeeded []map[string]any   // the Rotation Succeeded details
}

func rotate(t *testing.T, ctx context.Context, r *rig.Rig, workspaceIDs []string) rotationRun {
	input, err := json.Marshal(map[string]any{"workspace_ids": workspaceIDs, "key_arn": r.KeyARN(rig.AliasTargetKeyID)})
	require.NoError(t, err)
	started := time.Now()
	arn, err := r.StartExecution(ctx, "", input)
	require.NoError(t, err)
	// Only the rotation: the retirement reminder it starts really waits 24 hours.
	exec := r.AWS.WaitExecution(ctx, arn)
	out := rotationRun{exec: exec, wall: time.Since(started), timeline: r.Timeline(arn)}
	for _, child := range r.Children(arn) {
		out.children = append(out.children, r.Timeline(child.ExecutionArn))
	}
	if exec.Status != awsfake.StatusSucceeded {
		var b strings.Builder
		_ = sandbox.FormatTimeline(&b, out.timeline)
		t.Fatalf("rotation %s: %s %s\n%s", exec.Status, exec.Error, exec.Cause, b.String())
	}
	for _, e := range r.AWS.Events() {
		if e.DetailType != "Rotation Succeeded" {
			continue
		}
		var d map[string]any
		require.NoError(t, json.Unmarshal([]byte(e.Detail), &d))
		out.succeeded = append(out.succeeded, d)
	}
	return out
}

// transitions counts the states entered by the request's execution and by its children.
func (rot rotationRun) transitions() int {
	n := 0
	for _, tl := range append([]sandbox.Timeline{rot.timeline}, rot.children...) {
		for _, ev := range tl {
			if ev.Type == "StateEntered" {
				n++
			}
		}
	}
	return n
}

// phase is one waiting phase of a workspace's rotation (its child execution's top level, index -1), from the task that starts it until the task that
// starts the next phase (or, for the last, until its last check ends).
type phase struct {
	start, end time.Time
	checks     int
}

func (p phase) duration() time.Duration { return p.end.Sub(p.start) }

func phaseOf(tl sandbox.Timeline, index int, first, check, next string) phase {
	var p phase
	for _, ev := range tl {
		if ev.Index != index {
			continue
		}
		switch {
		case ev.Type == "StateEntered" && ev.State == first && p.start.IsZero():
			p.start = ev.Time
		case ev.Type == "StateEntered" && ev.State == check:
			p.checks++
		case next == "" && ev.Type == "StateExited" && ev.State == check:
			p.end = ev.Time
		case next != "" && ev.Type == "StateEntered" && ev.State == next && p.end.IsZero():
			p.end = ev.Time
		}
	}
	return p
}

// lambdaUse is what the functions of a rig were invoked for, from aws-lambda-rie's REPORT lines
// and its INIT REPORT lines (a cold start each).
type lambdaUse struct {
	invocations int
	gbSeconds   float64
	perFunction []string
}

var (
	reportDuration = regexp.MustCompile(`^REPORT RequestId: .*\tDuration: ([0-9.]+) ms`)
	initDuration   = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
)

func lambdaUseOf(t *testing.T, r *rig.Rig, memory map[string]int) lambdaUse {
	var use lambdaUse
	names := make([]string, 0, len(r.Functions))
	for name := range r.Functions {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f := r.Functions[name]
		mem, ok := memory[name]
		require.True(t, ok, "no MemorySize for %s in template.yaml", name)
		var n int
		var billedMS float64
		for _, line := range f.Logs() {
			if m := reportDuration.FindStringSubmatch(line); m != nil {
				ms, _ := strconv.ParseFloat(m[1], 64)
				billedMS += math.Ceil(ms)
				n++
			}
		}
		var initMS float64
		for _, line := range f.EmulatorLogs() {
			if m := initDuration.FindStringSubmatch(line); m != nil {
				ms, _ := strconv.ParseFloat(m[1], 64)
				initMS += math.Ceil(ms)
			}
		}
		if n == 0 {
			continue
		}
		use.invocations += n
		gbs := (billedMS + initMS) / 1000 * float64(mem) / 1024
		use.gbSeconds += gbs
		use.perFunction = append(use.perFunction, fmt.Sprintf("%s %d× (%.0f ms + %.0f ms init, %d MB)", strings.TrimSuffix(name, "Function"), n, billedMS, initMS, mem))
	}
	return use
}

func (u lambdaUse) cost() float64 {
	return float64(u.invocations)*pricePerRequest + u.gbSeconds*pricePerGBSecondArm
}

// templateMemory reads each function's MemorySize from template.yaml (Globals, then the function's own).
func templateMemory(t *testing.T, root string) map[string]int {
	f, err := os.Open(filepath.Join(root, "template.yaml"))
	require.NoError(t, err)
	defer f.Close()
	global, current := 0, ""
	own := map[string]int{}
	var functions []string
	resource := regexp.MustCompile(`^  ([A-Za-z0-9]+):\s*$`)
	memory := regexp.MustCompile(`^(\s+)MemorySize:\s*(\d+)`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := resource.FindStringSubmatch(line); m != nil {
			current = m[1]
			if current != "Function" && strings.HasSuffix(current, "Function") {
				functions = append(functions, current)
			}
			continue
		}
		if m := memory.FindStringSubmatch(line); m != nil {
			mb, _ := strconv.Atoi(m[2])
			if current == "Function" { // Globals: Function: MemorySize
				global = mb
			} else if current != "" {
				own[current] = mb
			}
		}
	}
	require.NotZero(t, global, "Globals.Function.MemorySize in template.yaml")
	out := map[string]int{}
	for _, fn := range functions {
		out[fn] = global
		if mb, ok := own[fn]; ok {
			out[fn] = mb
		}
	}
	return out
}

// benchDowntimeAndTransitions measures figures 3 and 4.
func benchDowntimeAndTransitions(t *testing.T, env *environment, rep *report) {
	memory := templateMemory(t, env.root)
	configured := rotationTransition + rotationUpdate + rotationTransition
	const title3 = "3. Downtime added to Databricks' own delays"
	const title4 = "4. State transitions and cost per rotation"

	// Figure 3, and the one-workspace side of figure 4.
	one, ctx := startRig(t, env, func(o *rig.Options) {
		o.Fake.RateLimit = apiRate
		o.FunctionEnv["DATABRICKS_RATE_LIMIT"] = strconv.Itoa(apiRate)
	})
	single := rotate(t, ctx, one, []string{strconv.FormatInt(rig.AnalyticsWorkspace, 10)})
	require.Len(t, single.succeeded, 1)
	downtime, ok := single.succeeded[0]["downtime_seconds"].(float64)
	require.True(t, ok, "downtime_seconds in %v", single.succeeded[0])
	stop := phaseOf(single.children[0], -1, "StopCompute", "CheckStopped", "PatchWorkspace")
	update := phaseOf(single.children[0], -1, "PatchWorkspace", "CheckWorkspace", "RestartCompute")
	start := phaseOf(single.children[0], -1, "RestartCompute", "CheckRunning", "")
	overhead := downtime - configured.Seconds()
	firstPolls := polling.ComputeStop.After(0) + polling.WorkspaceUpdate.After(0) + polling.ComputeStart.After(0)
	rep.figure("downtime_s", downtime, "s", 1, goal{})
	rep.figure("downtime_overhead_s", overhead, "s", 1, atMost(float64(firstPolls)))
	rep.figure("downtime_phase_stop_s", stop.duration().Seconds(), "s", 1, goal{})
	rep.figure("downtime_phase_update_s", update.duration().Seconds(), "s", 1, goal{})
	rep.figure("downtime_phase_restart_s", start.duration().Seconds(), "s", 1, goal{})
	span := start.end.Sub(stop.start)
	rep.note(title3, "**Set-up.** One managed-services rotation of the sandbox's analytics workspace (3 interactive clusters, a job cluster, "+
		"a pool with idle instances, a classic warehouse, a continuous pipeline) through the real bootstraps and the real ASL, with **no Wait "+
		"override**: every Wait lasts what the tasks ask (first polls: stop %d s, workspace update %d s, restart %d s). The fake takes %s for "+
		"every stop and every start (`TransitionDelay`) and %s for the workspace update to show (`WorkspaceUpdateDelay`), answers each call "+
		"in %s and admits %d calls/s; budgets are the production ones (%s), `WORKSPACE_SETTLE` the production default (%s).",
		polling.ComputeStop.After(0), polling.WorkspaceUpdate.After(0), polling.ComputeStart.After(0), rotationTransition, rotationUpdate,
		apiLatency, apiRate, productionBudgetsEnv, wsupdate.DefaultSettings.Settle)
	rep.note(title3, "**`downtime_overhead_s`** = the `downtime_seconds` of the Rotation Succeeded event (%.1f s, from StopCompute's start until "+
		"the check that finds everything running) − the configured delays inside that window (stop %s + update %s + start %s = %s) = **%.1f s**, "+
		"against a goal of one first poll interval per waiting phase (%d s).", downtime, rotationTransition, rotationUpdate, rotationTransition,
		configured, overhead, firstPolls)
	rep.note(title3, "| phase (from the timeline) | duration | Databricks' delay | overhead | checks |\n|---|---:|---:|---:|---:|")
	for _, row := range []struct {
		name  string
		p     phase
		delay time.Duration
	}{{"stop: StopCompute → PatchWorkspace", stop, rotationTransition}, {"update: PatchWorkspace → RestartCompute", update, rotationUpdate},
		{"restart: RestartCompute → end of the last CheckRunning", start, rotationTransition}} {
		rep.note(title3, "| %s | %.1f s | %s | %.1f s | %d |", row.name, row.p.duration().Seconds(), row.delay, (row.p.duration() - row.delay).Seconds(), row.p.checks)
	}
	rep.note(title3, "The three phases span %.1f s; the event's window is %.1f s shorter because it opens when StopCompute reads the clock "+
		"(after the function has started and loaded the inventory) and closes when the last check reads it (before that check's list calls).",
		span.Seconds(), span.Seconds()-downtime)
	rep.note(title3, "**How to read it.** With these delays each change completes just before a check: the stop checks come %s s after StopCompute, "+
		"the update checks %s s after the PATCH, the restart checks %s s after RestartCompute, so a %s transition is seen by the check at "+
		"%s. What is left is the tasks' own time and the engine's. A delay that ends just *after* a check waits for the next one, at most one "+
		"first interval later while the schedule holds it (`internal/polling`: the first %d checks of a phase, i.e. stop %s, update %s, restart %s); "+
		"past that the interval doubles every two checks, and the overhead of a phase is bounded by the interval then in force (up to %s for "+
		"stop, %s for update and restart). Figure 3b measures the overhead when the changes land at random moments.",
		joinInts(cumulative(polling.ComputeStop, 4)), joinInts(cumulative(polling.WorkspaceUpdate, 4)), joinInts(cumulative(polling.ComputeStart, 4)),
		rotationTransition, rotationTransition, polling.ComputeStop.Hold, heldWindow(polling.ComputeStop), heldWindow(polling.WorkspaceUpdate),
		heldWindow(polling.ComputeStart), polling.ComputeStop.Max, polling.ComputeStart.Max)

	oneUse := lambdaUseOf(t, one, memory)
	oneTransitions := single.transitions() + reminderTransitions
	oneCost := float64(oneTransitions)*pricePerTransition + oneUse.cost()
	rep.figure("transitions_per_rotation_1ws", float64(oneTransitions), "count", 0, goal{})

	// Figure 4 for ten workspaces in one input, with the same delays and real Waits.
	ten, ctx := startRig(t, env, func(o *rig.Options) {
		withWorkspaces(10)(o)
		o.Instances = 4
		o.FunctionEnv["MAX_CONCURRENT_WORKSPACES"] = "10"
	})
	many := rotate(t, ctx, ten, manyIDs(10))
	require.Len(t, many.succeeded, 10, "every workspace rotated")
	tenUse := lambdaUseOf(t, ten, memory)
	tenTransitions := many.transitions() + reminderTransitions
	tenCost := float64(tenTransitions)*pricePerTransition + tenUse.cost()
	rep.figure("transitions_per_rotation_10ws", float64(tenTransitions), "count", 0, goal{})
	rep.figure("cost_per_rotation_1ws", oneCost, "usd", 6, goal{})
	rep.figure("cost_per_rotation_10ws", tenCost, "usd", 6, goal{})

	// A workspace's states are its child execution's (the first child here).
	perIteration := func(rot rotationRun, _ int) int {
		n := 0
		for _, ev := range rot.children[0] {
			if ev.Type == "StateEntered" {
				n++
			}
		}
		return n
	}
	rep.note(title4, "**Transitions** are the StateEntered events of the rotation's timeline (what Step Functions Standard bills), plus the %d "+
		"of the retirement-reminder execution each rotation starts (WaitOneDay, PublishRetirable: counted from its definition, since it waits "+
		"24 hours). Both runs use real Wait durations and the delays of figure 3, so every check loop iterates as often as the polling schedule "+
		"makes it (stop %d checks, update %d, restart %d per workspace here); slower Databricks changes add one Wait, one check and one Choice "+
		"per extra poll (3 transitions), and the schedule's doubling keeps that to a few per phase.",
		reminderTransitions, stop.checks, update.checks, start.checks)
	rep.note(title4, "| rotation | transitions | per workspace iteration | Lambda invocations | Lambda GB-s | cost |\n|---|---:|---:|---:|---:|---:|")
	rep.note(title4, "| 1 workspace | %d | %d | %d | %.2f | $%.6f |", oneTransitions, perIteration(single, 0), oneUse.invocations, oneUse.gbSeconds, oneCost)
	rep.note(title4, "| 10 workspaces, one input | %d | %d | %d | %.2f | $%.6f |", tenTransitions, perIteration(many, 0), tenUse.invocations, tenUse.gbSeconds, tenCost)
	rep.note(title4, "**Cost** at public list prices: Step Functions Standard $0.025 per 1,000 transitions; Lambda arm64 $0.20 per million requests "+
		"and $0.0000133334 per GB-second, at the template's memory sizes (128 MB; 256 MB for Inventory, StopCompute, ComputeStatus, "+
		"RestartCompute), with every invocation's duration as aws-lambda-rie reported it, rounded up to the millisecond, plus the init "+
		"duration of each execution environment used (Lambda bills the INIT phase). Durations are local (x86, a fake that answers in %s), "+
		"so they stand in for, not reproduce, AWS's. EventBridge events (one per workspace) and the Databricks calls are not included. "+
		"Per function, 1 workspace: %s.", apiLatency, strings.Join(oneUse.perFunction, "; "))
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ", ")
}

// cumulative lists the instants (seconds after the task) of the first n checks of a schedule.
func cumulative(s polling.Schedule, n int) []int {
	var out []int
	at := 0
	for attempt := range n {
		at += s.After(attempt)
		out = append(out, at)
	}
	return out
}

// benchManyWorkspaces rotates 50 workspaces from one input.
func benchManyWorkspaces(t *testing.T, env *environment, rep *report) {
	const n = 50
	r, ctx := startRig(t, env, func(o *rig.Options) {
		withWorkspaces(n)(o)
		o.Instances = 10
		o.FunctionEnv["MAX_CONCURRENT_WORKSPACES"] = strconv.Itoa(n)
	})
	rot := rotate(t, ctx, r, manyIDs(n))
	rotated := 0
	for i := 1; i <= n; i++ {
		ws := r.Fake.Workspace(manyID(i))
		if ws.ManagedServicesCustomerManagedKeyId != rig.OldKeyConfigID &&
			r.Fake.Cluster(manyID(i), fmt.Sprintf("c-%02d-a", i)).State == compute.StateRunning &&
			r.Fake.Cluster(manyID(i), fmt.Sprintf("c-%02d-b", i)).State == compute.StateRunning {
			rotated++
		}
	}
	rep.figure("many_workspaces_50_s", rot.wall.Seconds(), "s", 1, goal{})
	rep.figure("many_workspaces_50_rotated", float64(rotated), "count", 0, atLeast(n))
	var longest float64
	for _, d := range rot.succeeded {
		if v, ok := d["downtime_seconds"].(float64); ok && v > longest {
			longest = v
		}
	}
	rep.note("Many workspaces and large inventories at full scale", "**`many_workspaces_50_s`**: one input naming %d workspaces (3 running clusters each: "+
		"2 restarted, 1 job cluster), `MAX_CONCURRENT_WORKSPACES=%d` so the Map runs them all at once, 10 execution environments per function, "+
		"real Wait durations and the delays of figure 3 (no rate limit in the fake: Databricks limits each workspace, the fake would limit "+
		"them all together). Execution status %s in %.1f s; %d Rotation Succeeded events; %d of %d workspaces on the new key with their "+
		"clusters running again; longest downtime of a workspace %.1f s; %d state transitions.",
		n, n, rot.exec.Status, rot.wall.Seconds(), len(rot.succeeded), rotated, n, longest, rot.transitions())
}
