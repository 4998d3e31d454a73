//go:build bench

package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	computetask "github.com/cmk-rotator/databricks-cmk-rotator/internal/compute"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/invstore"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/polling"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// The Databricks the stop/start figures run against: every call takes apiLatency, the workspace
// admits apiRate calls per second (the fake's token bucket answers 429 beyond it) and the
// rotator's own client is limited to the same rate, as DATABRICKS_RATE_LIMIT would set it.
const (
	apiLatency = 50 * time.Millisecond
	apiRate    = 30
	// transition is how long a cluster or warehouse takes to stop or start in figures 1 and 2.
	transition = time.Second
	// cliPoll is how often the CLI-style script reads a resource while it waits for it.
	cliPoll = time.Second
)

type fleet struct{ clusters, warehouses, pools int }

func (f fleet) total() int { return f.clusters + f.warehouses + f.pools }

// scaled is a proportional subset: the same share of every kind, at least one of each.
func (f fleet) scaled(share float64) fleet {
	n := func(x int) int { return max(1, int(math.Round(float64(x)*share))) }
	return fleet{clusters: n(f.clusters), warehouses: n(f.warehouses), pools: n(f.pools)}
}

func (f fleet) String() string {
	return fmt.Sprintf("%d clusters, %d warehouses, %d pools", f.clusters, f.warehouses, f.pools)
}

var stopStartFleet = fleet{clusters: 2000, warehouses: 200, pools: 100}

const benchWorkspace = int64(7100)

// seedFleet adds a workspace whose compute all runs: every cluster can be restarted by hand (UI or
// API source), every pool keeps idle instances, every warehouse is classic.
func seedFleet(fake *dbfake.Server, ws int64, f fleet) {
	faketest.Workspace(fake, ws, "bench")
	for i := range f.pools {
		fake.AddPool(ws, compute.InstancePoolAndStats{InstancePoolId: fmt.Sprintf("pool-%04d", i), InstancePoolName: fmt.Sprintf("team-%04d", i),
			NodeTypeId: "i3.xlarge", MinIdleInstances: 1 + i%3, IdleInstanceAutoterminationMinutes: 15, MaxCapacity: 50})
	}
	for i := range f.clusters {
		source := compute.ClusterSourceUi
		if i%2 == 1 {
			source = compute.ClusterSourceApi
		}
		fake.AddCluster(ws, compute.ClusterDetails{ClusterId: fmt.Sprintf("0101-120000-%08d", i), ClusterName: fmt.Sprintf("team-%04d-interactive", i),
			State: compute.StateRunning, ClusterSource: source, InstancePoolId: fmt.Sprintf("pool-%04d", i%max(1, f.pools))})
	}
	for i := range f.warehouses {
		fake.AddWarehouse(ws, sql.EndpointInfo{Id: fmt.Sprintf("wh%014d", i), Name: fmt.Sprintf("bi-%04d", i), State: sql.StateRunning})
	}
}

func startFake(t *testing.T, opts dbfake.Options) *dbfake.Server {
	opts.MaxRecordedRequests = 2_000_000
	return faketest.Start(t, opts)
}

// clients are the rotator's SDK clients for the fake, limited to rate calls per second.
func clients(fake *dbfake.Server, rate int) *dbclient.Factory {
	return dbclient.NewFactory(dbclient.Settings{AccountHost: fake.URL(), AccountID: faketest.AccountID, WorkspaceHostTemplate: fake.URL(),
		Credentials: dbclient.Credentials{Token: faketest.Token}, RateLimitPerSecond: rate})
}

func inventoryStore(t *testing.T) *invstore.Store {
	srv, err := awsfake.Start(awsfake.Config{Region: "us-west-2"})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	srv.CreateBucket("inventories")
	client := s3.New(s3.Options{Region: "us-west-2", BaseEndpoint: aws.String(srv.URL()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("x", "y", "")})
	return &invstore.Store{S3: client, Bucket: "inventories"}
}

// calls is what task invocations cost: wall time, and the API calls the fake saw meanwhile.
type calls struct {
	wall        time.Duration
	served      int // answered by the service (anything but 429)
	throttled   int // refused with 429
	invocations int
}

func (c *calls) add(o calls) {
	c.wall += o.wall
	c.served += o.served
	c.throttled += o.throttled
	c.invocations += o.invocations
}

// cycle drives the real compute tasks in-process, as the state machine would: inventory, stop
// (with continuations), the stop check loop, restart, the restart check loop.
type cycle struct {
	fake  *dbfake.Server
	tasks *computetask.Tasks
	// statePolls waits between checks what each task asks for (poll_after_seconds), as the state
	// machine's Wait states do; otherwise it checks every 200 ms (the waits are then not measured).
	statePolls bool
}

type cycleResult struct {
	inventory, stop, restart, checks calls
	stopChecks, startChecks          int
	total                            time.Duration // inventory until everything is back, waits included
	restarted                        rotation.Counts
}

func (c *cycle) measure(fn func() error) (calls, error) {
	before := len(c.fake.Requests())
	started := time.Now()
	err := fn()
	out := calls{wall: time.Since(started), invocations: 1}
	for _, r := range c.fake.Requests()[before:] {
		if r.Status == 429 {
			out.throttled++
		} else {
			out.served++
		}
	}
	return out, err
}

func (c *cycle) pause(seconds int) {
	if c.statePolls {
		time.Sleep(time.Duration(seconds) * time.Second)
	} else {
		time.Sleep(200 * time.Millisecond)
	}
}

// invoke runs one task invocation under a Lambda-like deadline.
func invoke[T any](timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return fn(ctx)
}

func (c *cycle) run(t *testing.T, ws rotation.WorkspaceTarget, name string) cycleResult {
	var res cycleResult
	run := rotation.WorkspaceRun{Workspace: ws, Execution: name, UseCases: []string{rotation.UseCaseManagedServices}}
	began := time.Now()

	cost, err := c.measure(func() error {
		inv, err := invoke(300*time.Second, func(ctx context.Context) (rotation.Inventory, error) { return c.tasks.Inventory(ctx, run) })
		run.Inventory = &inv
		return err
	})
	require.NoError(t, err)
	res.inventory = cost

	for more := true; more; {
		cost, err := c.measure(func() error {
			stop, err := invoke(900*time.Second, func(ctx context.Context) (rotation.StopResult, error) { return c.tasks.Stop(ctx, run) })
			run.Stop, more = &stop, stop.More
			return err
		})
		require.NoError(t, err)
		res.stop.add(cost)
	}
	c.pause(run.Stop.PollAfterSeconds)
	for {
		var status rotation.ComputeStatus
		cost, err := c.measure(func() (err error) {
			status, err = invoke(300*time.Second, func(ctx context.Context) (rotation.ComputeStatus, error) {
				return c.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: run})
			})
			return err
		})
		require.NoError(t, err)
		res.checks.add(cost)
		res.stopChecks++
		run.StopStatus = &status
		if status.Done {
			break
		}
		c.pause(status.PollAfterSeconds)
	}

	for more := true; more; {
		cost, err := c.measure(func() error {
			restart, err := invoke(900*time.Second, func(ctx context.Context) (rotation.RestartResult, error) { return c.tasks.Restart(ctx, run) })
			run.Restart, more = &restart, restart.More
			return err
		})
		require.NoError(t, err)
		res.restart.add(cost)
	}
	c.pause(run.Restart.PollAfterSeconds)
	for {
		var status rotation.ComputeStatus
		cost, err := c.measure(func() (err error) {
			status, err = invoke(300*time.Second, func(ctx context.Context) (rotation.ComputeStatus, error) {
				return c.tasks.Status(ctx, rotation.ComputeStatusInput{Target: rotation.TargetRunning, Run: run})
			})
			return err
		})
		require.NoError(t, err)
		res.checks.add(cost)
		res.startChecks++
		run.RestartStatus = &status
		if status.Done {
			require.Zero(t, status.StillDownCount, "still down: %v", status.StillDown)
			break
		}
		c.pause(status.PollAfterSeconds)
	}
	res.total = time.Since(began)
	res.restarted = run.Restart.Started
	require.Empty(t, run.Restart.Failed)
	return res
}

// runCycle seeds a fresh fake with f and runs the compute cycle with the given workers.
func runCycle(t *testing.T, f fleet, workers int, statePolls bool, name string) cycleResult {
	fake := startFake(t, dbfake.Options{Latency: apiLatency, RateLimit: apiRate, TransitionDelay: transition, PageSize: 100})
	seedFleet(fake, benchWorkspace, f)
	settings := computetask.DefaultSettings
	settings.Workers = workers
	c := &cycle{fake: fake, statePolls: statePolls,
		tasks: &computetask.Tasks{Clients: clients(fake, apiRate), Settings: settings, Store: inventoryStore(t)}}
	res := c.run(t, rotation.WorkspaceTarget{WorkspaceID: strconv.FormatInt(benchWorkspace, 10), DeploymentName: "bench"}, name)
	require.Equal(t, rotation.Counts{Clusters: f.clusters, Pools: f.pools, Warehouses: f.warehouses}, res.restarted, "everything came back")
	return res
}

// scriptResult is the time a CLI-style script spends, per step.
type scriptResult struct {
	list                                       time.Duration
	stopClusters, stopPools, stopWarehouses    time.Duration
	startClusters, startPools, startWarehouses time.Duration
	served, throttled                          int
}

func (s scriptResult) total() time.Duration {
	return s.list + s.stopClusters + s.stopPools + s.stopWarehouses + s.startClusters + s.startPools + s.startWarehouses
}

// extrapolated scales each step by how many more resources of its kind the full fleet has.
func (s scriptResult) extrapolated(sub, full fleet) time.Duration {
	scale := func(d time.Duration, a, b int) time.Duration {
		return time.Duration(float64(d) * float64(b) / float64(a))
	}
	return scale(s.list, sub.clusters, full.clusters) +
		scale(s.stopClusters+s.startClusters, sub.clusters, full.clusters) +
		scale(s.stopPools+s.startPools, sub.pools, full.pools) +
		scale(s.stopWarehouses+s.startWarehouses, sub.warehouses, full.warehouses)
}

// runScript does what a shell script over the Databricks CLI does: `databricks clusters delete`,
// `clusters start`, `warehouses stop` and `warehouses start` wait for the resource to reach its
// state (the CLI's waiter reads it until then), so the script handles one resource at a time;
// `instance-pools edit` does not wait.
func runScript(t *testing.T, f fleet) scriptResult {
	fake := startFake(t, dbfake.Options{Latency: apiLatency, RateLimit: apiRate, TransitionDelay: transition, PageSize: 100})
	seedFleet(fake, benchWorkspace, f)
	w, err := clients(fake, apiRate).Workspace(rotation.WorkspaceTarget{WorkspaceID: strconv.FormatInt(benchWorkspace, 10), DeploymentName: "bench"})
	require.NoError(t, err)
	ctx := context.Background()
	var res scriptResult
	step := func(d *time.Duration, fn func()) {
		started := time.Now()
		fn()
		*d += time.Since(started)
	}
	waitFor := func(read func() (bool, error)) {
		for {
			done, err := read()
			require.NoError(t, err)
			if done {
				return
			}
			time.Sleep(cliPoll)
		}
	}

	var clusters []compute.ClusterDetails
	var pools []compute.InstancePoolAndStats
	var warehouses []sql.EndpointInfo
	step(&res.list, func() {
		clusters, err = w.Clusters.ListAll(ctx, compute.ListClustersRequest{FilterBy: &compute.ListClustersFilterBy{ClusterStates: []compute.State{compute.StateRunning}}})
		require.NoError(t, err)
		pools, err = w.InstancePools.ListAll(ctx)
		require.NoError(t, err)
		warehouses, err = w.Warehouses.ListAll(ctx, sql.ListWarehousesRequest{})
		require.NoError(t, err)
	})
	require.Len(t, clusters, f.clusters)
	clusterIs := func(id string, st compute.State) func() (bool, error) {
		return func() (bool, error) {
			c, err := w.Clusters.GetByClusterId(ctx, id)
			return err == nil && c.State == st, err
		}
	}
	warehouseIs := func(id string, st sql.State) func() (bool, error) {
		return func() (bool, error) {
			wh, err := w.Warehouses.GetById(ctx, id)
			return err == nil && wh.State == st, err
		}
	}
	edit := func(p compute.InstancePoolAndStats, minIdle, autoterminate int) {
		require.NoError(t, w.InstancePools.Edit(ctx, compute.EditInstancePool{InstancePoolId: p.InstancePoolId, InstancePoolName: p.InstancePoolName,
			NodeTypeId: p.NodeTypeId, MaxCapacity: p.MaxCapacity, MinIdleInstances: minIdle, IdleInstanceAutoterminationMinutes: autoterminate,
			ForceSendFields: []string{"MinIdleInstances", "IdleInstanceAutoterminationMinutes"}}))
	}

	step(&res.stopClusters, func() {
		for _, c := range clusters {
			require.NoError(t, w.Clusters.DeleteByClusterId(ctx, c.ClusterId))
			waitFor(clusterIs(c.ClusterId, compute.StateTerminated))
		}
	})
	step(&res.stopPools, func() {
		for _, p := range pools {
			edit(p, 0, 0)
		}
	})
	step(&res.stopWarehouses, func() {
		for _, wh := range warehouses {
			_, err := w.Warehouses.Stop(ctx, sql.StopRequest{Id: wh.Id})
			require.NoError(t, err)
			waitFor(warehouseIs(wh.Id, sql.StateStopped))
		}
	})
	step(&res.startClusters, func() {
		for _, c := range clusters {
			require.NoError(t, w.Clusters.StartByClusterId(ctx, c.ClusterId))
			waitFor(clusterIs(c.ClusterId, compute.StateRunning))
		}
	})
	step(&res.startPools, func() {
		for _, p := range pools {
			edit(p, p.MinIdleInstances, p.IdleInstanceAutoterminationMinutes)
		}
	})
	step(&res.startWarehouses, func() {
		for _, wh := range warehouses {
			_, err := w.Warehouses.Start(ctx, sql.StartRequest{Id: wh.Id})
			require.NoError(t, err)
			waitFor(warehouseIs(wh.Id, sql.StateRunning))
		}
	})
	for _, r := range fake.Requests() {
		if r.Status == 429 {
			res.throttled++
		} else {
			res.served++
		}
	}
	return res
}

func shareFromEnv(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 && v <= 1 {
		return v
	}
	return def
}

// benchStopStart measures figures 1 and 2.
func benchStopStart(t *testing.T, _ *environment, rep *report) {
	full := stopStartFleet
	serialShare := shareFromEnv("BENCH_SERIAL_SHARE", 0.25)
	scriptShare := shareFromEnv("BENCH_SCRIPT_SHARE", 0.05)
	const title = "1–2. Stop and restart at 50 ms per call and 30 requests/s"

	// Figure 1, and the concurrent side of figure 2: the rotator's path, waits included.
	conc := runCycle(t, full, computetask.DefaultSettings.Workers, true, "bench-concurrent")
	work := conc.stop.wall + conc.restart.wall
	served := conc.stop.served + conc.restart.served
	bound := time.Duration(float64(served) / apiRate * float64(time.Second))
	ratio := work.Seconds() / bound.Seconds()
	throttled := conc.inventory.throttled + conc.stop.throttled + conc.checks.throttled + conc.restart.throttled
	allCalls := conc.inventory.served + served + conc.checks.served + throttled
	rep.figure("stop_start_ratio", ratio, "ratio", 3, atMost(1.05))
	rep.figure("stop_start_429s", float64(throttled), "count", 0, judged("few or none (≤ 1 % of calls)", throttled*100 <= allCalls))
	rep.figure("stop_calls", float64(conc.stop.served), "count", 0, goal{})
	rep.figure("restart_calls", float64(conc.restart.served), "count", 0, goal{})
	rep.figure("stop_s", conc.stop.wall.Seconds(), "s", 1, goal{})
	rep.figure("restart_s", conc.restart.wall.Seconds(), "s", 1, goal{})

	// Figure 2a: the same calls one after the other.
	sub := full.scaled(serialShare)
	serial := runCycle(t, sub, 1, false, "bench-serial")
	serialWork := serial.stop.wall + serial.restart.wall
	serialServed := serial.stop.served + serial.restart.served
	serialFull := time.Duration(float64(serialWork) * float64(served) / float64(serialServed))
	rep.figure("speedup_vs_serial_calls", serialFull.Seconds()/work.Seconds(), "ratio", 2, capped("none; capped near 1.5 (30/s ÷ 20/s)"))

	// Figure 2b: a CLI-style script, one resource at a time, each waited for.
	scriptFleet := full.scaled(scriptShare)
	script := runScript(t, scriptFleet)
	scriptFull := script.extrapolated(scriptFleet, full)
	rep.figure("speedup_vs_sequential", scriptFull.Seconds()/conc.total.Seconds(), "ratio", 1, atLeast(10))

	rep.note(title, "**Set-up.** One workspace with %s, all running, in the Databricks fake with `Latency` %s per call, "+
		"`RateLimit` %d requests/s (a token bucket of burst %d; beyond it the fake answers 429 REQUEST_LIMIT_EXCEEDED) and "+
		"`TransitionDelay` %s. The rotator's SDK clients are limited to %d requests/s (`dbclient.Settings.RateLimitPerSecond`, "+
		"i.e. `DATABRICKS_RATE_LIMIT=%d`; the SDK's limiter also has a burst of %d). The real compute tasks run in-process "+
		"(`compute.Tasks` with `DefaultSettings`, %d workers) exactly as the state machine chains them: Inventory, StopCompute until "+
		"`more` is false, ComputeStatus(STOPPED) until done, RestartCompute until `more` is false, ComputeStatus(RUNNING) until done, "+
		"waiting between checks the `poll_after_seconds` each task returns (%d s before the first stop check, %d s before the first restart check).",
		full, apiLatency, apiRate, apiRate, transition, apiRate, apiRate, apiRate, computetask.DefaultSettings.Workers,
		polling.ComputeStop.After(0), polling.ComputeStart.After(0))
	rep.note(title, "**`stop_start_ratio`** = wall time of the StopCompute and RestartCompute invocations (%.1f s + %.1f s, %d + %d invocations) "+
		"÷ the lower bound set by the rate limit: the API calls the fake served during those invocations (%d + %d = %d) ÷ %d/s = %.1f s. "+
		"It can dip just below 1 because both token buckets start full (%d calls of burst). RestartCompute's calls include its "+
		"opening list of every resource (%d pages of 100 clusters, read one after the other at %s each, i.e. slower than the limit allows).",
		conc.stop.wall.Seconds(), conc.restart.wall.Seconds(), conc.stop.invocations, conc.restart.invocations,
		conc.stop.served, conc.restart.served, served, apiRate, bound.Seconds(), apiRate, (full.clusters+99)/100, apiLatency)
	rep.note(title, "**`stop_start_429s`** counts every 429 the fake returned during the whole cycle (inventory, stop, %d stop check(s), restart, "+
		"%d restart check(s)): %d of %d calls (%.2f %%; the others: inventory %d, checks %d). Why any: the SDK's limiter lets a request go the "+
		"moment its own bucket holds a whole token, and at 8 workers it is always at that edge, so the workspace's bucket, which sees the same "+
		"requests a transit delay later, has no slack either. When a request travels faster than the one before it (goroutine scheduling, a new "+
		"connection; well under a millisecond is enough at 0.03 tokens/ms), it arrives while the workspace's bucket holds 0.98 of a token and "+
		"is refused. The SDK retries it after its backoff (about a second) while the other workers keep the rate, so the ratio above does not "+
		"show it. A client limit a little below the workspace's (e.g. `DATABRICKS_RATE_LIMIT=28` for 30/s) would leave the slack that "+
		"absorbs the jitter, for about 7 %% less throughput.",
		conc.stopChecks, conc.startChecks, throttled, allCalls, 100*float64(throttled)/float64(allCalls), conc.inventory.served, conc.checks.served)
	rep.note(title, "**`speedup_vs_serial_calls`** (2a): the same tasks with `Workers=1`, so that every API call waits for the previous one. "+
		"To keep `make bench` short this runs on a proportional %.0f%% subset (%s), whose stop and restart invocations took %.1f s for %d calls "+
		"(%.1f calls/s); scaled linearly to the %d calls of the full run: %.0f s, against %.1f s concurrently. A serial loop at %s per call "+
		"does at most %.0f calls/s (%.1f measured, each call being a little over %s), and the concurrent run cannot beat %d/s, so this speedup "+
		"is capped near %d ÷ %.1f = %.2f: here the rate limit, not the concurrency, is the ceiling.",
		serialShare*100, sub, serialWork.Seconds(), serialServed, float64(serialServed)/serialWork.Seconds(), served, serialFull.Seconds(), work.Seconds(),
		apiLatency, float64(time.Second)/float64(apiLatency), float64(serialServed)/serialWork.Seconds(), apiLatency, apiRate,
		apiRate, float64(serialServed)/serialWork.Seconds(), apiRate/(float64(serialServed)/serialWork.Seconds()))
	rep.note(title, "**`speedup_vs_sequential`** (2b, goal ≥ 10): what a shell script over the Databricks CLI does. `clusters delete`, `clusters start`, "+
		"`warehouses stop` and `warehouses start` wait for the resource's state by default, so the script stops (then starts) one resource and "+
		"reads it every %s until it gets there before touching the next; `instance-pools edit` does not wait. Each transition takes %s in the fake. "+
		"The script runs against its own fake (same latency and limits) on a proportional %.0f%% subset (%s) and took %.1f s "+
		"(list %.1f s; stop: clusters %.1f s, pools %.1f s, warehouses %.1f s; start: clusters %.1f s, pools %.1f s, warehouses %.1f s); "+
		"each step is scaled linearly by its kind's count to the full fleet: **%.0f s (%.0f min)**. The CLI's own process start per command is not "+
		"modelled, which favours the script. The rotator's path on the full fleet with the same transition time, from the inventory until the "+
		"last check finds everything running, waits included: **%.1f s**.",
		cliPoll, transition, scriptShare*100, scriptFleet, script.total().Seconds(), script.list.Seconds(),
		script.stopClusters.Seconds(), script.stopPools.Seconds(), script.stopWarehouses.Seconds(),
		script.startClusters.Seconds(), script.startPools.Seconds(), script.startWarehouses.Seconds(),
		scriptFull.Seconds(), scriptFull.Minutes(), conc.total.Seconds())
}
