//go:build bench

package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/polling"
)

const (
	// p95Rotations is how many workspace rotations the p95 is taken over.
	p95Rotations = 20
	// p95Minute is one Databricks minute in the fake: a cluster terminates in 2–20 s, starts in
	// 6–14 s, a workspace update lands in 10–40 s (dbfake.RealisticTime's ranges).
	p95Minute = 2 * time.Second
	// watchEvery is how often the benchmark reads the fake to see when Databricks finished a change.
	watchEvery = 100 * time.Millisecond
)

// dbTimes is what Databricks itself needed in one workspace's rotation, as the fake shows it.
type dbTimes struct {
	stopAsked, stopped, startAsked, running time.Time
}

// benchDowntimeP95 measures downtime_overhead_p95_s: 20 workspace rotations (one request, every
// workspace at once) against the fake in realistic mode, where every stop, update and start draws
// its own duration, so each change lands at a random moment between two checks. Per workspace:
// downtime_seconds of its Rotation Succeeded event − the time Databricks itself needed (first
// cluster leaving RUNNING → every cluster TERMINATED, the update's PROVISIONING span, first restarted
// cluster leaving TERMINATED → both RUNNING), the clusters as watched on the fake every 100 ms.
func benchDowntimeP95(t *testing.T, env *environment, rep *report) {
	const title = "3b. Downtime overhead when Databricks' changes land at random moments"
	seed := uint64(time.Now().UnixNano())
	r, ctx := startRig(t, env, func(o *rig.Options) {
		withWorkspaces(p95Rotations)(o)
		o.Instances = 10
		o.FunctionEnv["MAX_CONCURRENT_WORKSPACES"] = strconv.Itoa(p95Rotations)
		o.Fake.Realistic = &dbfake.RealisticTime{Minute: p95Minute, Seed: seed}
	})
	times := make([]dbTimes, p95Rotations+1)
	watchCtx, stopWatching := context.WithCancel(ctx)
	var watched sync.WaitGroup
	watched.Add(1)
	go func() {
		defer watched.Done()
		watchDatabricks(watchCtx, r.Fake, times)
	}()
	rot := rotate(t, ctx, r, manyIDs(p95Rotations))
	stopWatching()
	watched.Wait()

	spans := map[int64]dbfake.WorkspaceUpdateSpan{}
	for _, u := range r.Fake.WorkspaceUpdates() {
		spans[u.WorkspaceID] = u
	}
	downtimes := map[int64]float64{}
	for _, d := range rot.succeeded {
		id, err := strconv.ParseInt(fmt.Sprint(d["workspace_id"]), 10, 64)
		require.NoError(t, err, "workspace_id in %v", d)
		v, ok := d["downtime_seconds"].(float64)
		require.True(t, ok, "downtime_seconds in %v", d)
		downtimes[id] = v
	}
	require.Len(t, downtimes, p95Rotations, "one Rotation Succeeded event per workspace")
	firstPolls := polling.ComputeStop.After(0) + polling.WorkspaceUpdate.After(0) + polling.ComputeStart.After(0)
	rep.note(title, "**Set-up.** One request naming %d workspaces (each: two clusters that are restarted and a job cluster), "+
		"`MAX_CONCURRENT_WORKSPACES=%d`, 10 execution environments per function, real Wait durations (first polls: stop %d s, update %d s, "+
		"restart %d s), through the real bootstraps and the real ASL, against the fake in realistic mode (`dbfake.RealisticTime`, one "+
		"Databricks minute = %s, seed %d): every stop, update and start draws its own duration (a cluster terminates in %s–%s, starts in %s–%s, "+
		"an update lands in %s–%s), so the changes of the %d rotations land at moments that owe nothing to the checks' schedule. Per workspace, "+
		"the overhead is the `downtime_seconds` of its Rotation Succeeded event − what Databricks itself needed, watched on the fake every %s: "+
		"first cluster leaving RUNNING → every cluster TERMINATED, the update from the PATCH accepted until its new values show (`WorkspaceUpdateSpan.Landed`), first restarted cluster leaving TERMINATED → "+
		"both RUNNING. The goal is one first poll interval per waiting phase (%d s). Execution %s in %.1f s.",
		p95Rotations, p95Rotations, polling.ComputeStop.After(0), polling.WorkspaceUpdate.After(0), polling.ComputeStart.After(0),
		p95Minute, seed, p95Minute, 10*p95Minute, 3*p95Minute, 7*p95Minute, 5*p95Minute, 20*p95Minute, p95Rotations, watchEvery, firstPolls,
		rot.exec.Status, rot.wall.Seconds())
	rep.note(title, "| workspace | downtime | Databricks: stop | update | start | overhead |\n|---|---:|---:|---:|---:|---:|")
	var overheads []float64
	for i := 1; i <= p95Rotations; i++ {
		id := manyID(i)
		tm, span := times[i], spans[id]
		require.False(t, tm.stopAsked.IsZero() || tm.stopped.IsZero() || tm.startAsked.IsZero() || tm.running.IsZero(),
			"workspace %d: a change was not seen on the fake: %+v", id, tm)
		require.False(t, span.Accepted.IsZero() || span.Landed.IsZero(), "workspace %d: no update landed on the fake: %+v", id, span)
		update := span.Landed.Sub(span.Accepted)
		stop, start := tm.stopped.Sub(tm.stopAsked), tm.running.Sub(tm.startAsked)
		overhead := downtimes[id] - (stop + update + start).Seconds()
		overheads = append(overheads, overhead)
		rep.note(title, "| %d | %.1f s | %.1f s | %.1f s | %.1f s | %.1f s |", id, downtimes[id], stop.Seconds(), update.Seconds(), start.Seconds(), overhead)
	}
	slices.Sort(overheads)
	p95 := overheads[int(math.Ceil(0.95*float64(len(overheads))))-1]
	rep.figure("downtime_overhead_p95_s", p95, "s", 1, atMost(float64(firstPolls)))
	rep.note(title, "**`downtime_overhead_p95_s`** = %.1f s (nearest rank: rank %d of %d sorted overheads; median %.1f s, max %.1f s), against "+
		"%d s. Each phase's checks come every first poll interval for the first %d checks (`internal/polling`: stop %s, update %s, restart %s), "+
		"long enough for every draw here, so a change is noticed at most one first interval after it lands, plus the tasks' and the engine's "+
		"own time; the event's window opens when StopCompute reads the clock, after the function has loaded the inventory.",
		p95, int(math.Ceil(0.95*float64(len(overheads)))), len(overheads), overheads[len(overheads)/2], overheads[len(overheads)-1], firstPolls,
		polling.ComputeStop.Hold, heldWindow(polling.ComputeStop), heldWindow(polling.WorkspaceUpdate), heldWindow(polling.ComputeStart))
}

// heldWindow is how long a schedule keeps its first interval.
func heldWindow(s polling.Schedule) time.Duration { return time.Duration(s.Hold) * s.First }

// watchDatabricks reads every workspace's clusters until ctx ends and records when each change was
// first seen: a stop asked (a cluster left RUNNING), all stopped, a start asked (a restarted cluster
// left TERMINATED), both restarted clusters RUNNING.
func watchDatabricks(ctx context.Context, fake *dbfake.Server, times []dbTimes) {
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		now := time.Now()
		for i := 1; i < len(times); i++ {
			ws, tm := manyID(i), &times[i]
			a, b, j := fake.Cluster(ws, fmt.Sprintf("c-%02d-a", i)), fake.Cluster(ws, fmt.Sprintf("c-%02d-b", i)), fake.Cluster(ws, fmt.Sprintf("c-%02d-j", i))
			switch {
			case tm.stopAsked.IsZero():
				if a.State != compute.StateRunning || b.State != compute.StateRunning || j.State != compute.StateRunning {
					tm.stopAsked = now
				}
			case tm.stopped.IsZero():
				if a.State == compute.StateTerminated && b.State == compute.StateTerminated && j.State == compute.StateTerminated {
					tm.stopped = now
				}
			case tm.startAsked.IsZero():
				if a.State != compute.StateTerminated || b.State != compute.StateTerminated {
					tm.startAsked = now
				}
			case tm.running.IsZero():
				if a.State == compute.StateRunning && b.State == compute.StateRunning {
					tm.running = now
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
