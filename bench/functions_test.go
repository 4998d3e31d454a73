//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/sandbox"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

const coldStartRuns = 20

// function is a Lambda function of template.yaml: its LogicalId and its functions/ directory.
type function struct{ id, dir string }

// functions lists the Makefile's FUNCTIONS (BENCH_FUNCTIONS, "LogicalId:dir" pairs), or else
// every directory make build-local filled.
func functions(t *testing.T, dir string) []function {
	var out []function
	for _, f := range strings.Fields(os.Getenv("BENCH_FUNCTIONS")) {
		id, d, _ := strings.Cut(f, ":")
		out = append(out, function{id, d})
	}
	if len(out) > 0 {
		return out
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "bootstrap")); e.IsDir() && err == nil {
			out = append(out, function{id: e.Name()})
		}
	}
	require.NotEmpty(t, out, "no bootstraps in %s", dir)
	return out
}

// linked tells, for each function directory, which of the given import path prefixes its shipped
// binary links (built as the Makefile builds it, against env.modfile).
func linked(t *testing.T, env *environment, prefixes []string) map[string][]string {
	cmd := exec.Command(env.goCmd, "list", "-modfile="+env.modfile, "-tags", "lambda.norpc", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "./functions/...")
	cmd.Dir = env.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	require.NoError(t, err)
	module := "github.com/cmk-rotator/databricks-cmk-rotator/functions/"
	res := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], module) {
			continue
		}
		var found []string
		for _, p := range prefixes {
			if slices.ContainsFunc(fields[1:], func(dep string) bool { return strings.HasPrefix(dep, p) }) {
				found = append(found, p)
			}
		}
		res[strings.TrimPrefix(fields[0], module)] = found
	}
	return res
}

// privateCopy copies a bootstrap to a directory of this run, so that its processes are told
// apart by path from those of anything else running the same build.
func privateCopy(t *testing.T, src string) string {
	dst := filepath.Join(t.TempDir(), "bootstrap")
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	return dst
}

// functionEnv is what every function needs to initialise in the sandbox: the Databricks fake
// (OAuth M2M, credentials read from the local Secrets Manager at init), and the local AWS endpoint.
func functionEnv(t *testing.T) map[string]string {
	secret := "bench-client-secret"
	fake := faketest.Start(t, dbfake.Options{AccountID: rig.DatabricksAccountID, ClientID: rig.ClientID, ClientSecret: secret})
	aws, err := awsfake.Start(awsfake.Config{Region: rig.DefaultRegion, AccountID: rig.AWSAccount})
	require.NoError(t, err)
	t.Cleanup(aws.Close)
	aws.CreateTable(rig.LockTable, "workspace_id")
	aws.CreateBucket(rig.InventoryBucket)
	secretARN := fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:databricks-cmk-rotator/service-principal", rig.DefaultRegion, rig.AWSAccount)
	doc, _ := json.Marshal(map[string]string{"client_id": rig.ClientID, "client_secret": secret})
	rotationARN := fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:databricks-cmk-rotation", rig.DefaultRegion, rig.AWSAccount)
	aws.PutSecret(secretARN, string(doc))
	return map[string]string{
		"DATABRICKS_HOST": fake.URL(), "DATABRICKS_WORKSPACE_HOST": fake.URL(), "DATABRICKS_ACCOUNT_ID": rig.DatabricksAccountID,
		"DATABRICKS_SECRET_ARN":            secretARN,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": aws.URL(), "AWS_ENDPOINT_URL_DYNAMODB": aws.URL(), "AWS_ENDPOINT_URL_S3": aws.URL(),
		"AWS_ENDPOINT_URL_SFN": aws.URL(), "AWS_ENDPOINT_URL_EVENTBRIDGE": aws.URL(), "AWS_ENDPOINT_URL_KMS": aws.URL(),
		"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_LAMBDA_LOG_FORMAT": "JSON",
		"LOCK_TABLE_NAME": rig.LockTable, "INVENTORY_BUCKET": rig.InventoryBucket, "EVENT_BUS_NAME": rig.EventBus,
		"STATE_MACHINE_ARN":          rotationARN,
		"ROTATION_STATE_MACHINE_ARN": rotationARN,
		"REMINDER_STATE_MACHINE_ARN": fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:databricks-cmk-retirement-reminder", rig.DefaultRegion, rig.AWSAccount),
		"IGNORED_PRINCIPAL_ARNS":     rig.RotatorRoleARN,
	}
}

var (
	initReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
	initDone   = regexp.MustCompile(`INIT RTDONE\(status: (\w+)\)`)
	invokeDone = regexp.MustCompile(`INVOKE RTDONE\(status: \w+, produced bytes: \d+, duration: ([0-9.]+)ms\)`)
)

type coldStart struct {
	init, invoke, wall time.Duration
}

// startCold starts a function's emulator, invokes it once and reads the emulator's own account of
// the init phase (bootstrap process start until it asks for its first event) and of the invocation.
func startCold(t *testing.T, env *environment, id, bootstrap string, fnEnv map[string]string) coldStart {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	f, err := sandbox.StartFunction(ctx, sandbox.FunctionSpec{Name: id, Bootstrap: bootstrap, Emulator: env.tools.Emulator, Env: fnEnv,
		TimeoutSeconds: 60, Region: rig.DefaultRegion})
	require.NoError(t, err)
	defer f.Stop()
	_, ferr, err := f.Invoke(ctx, []byte(`{}`))
	wall := time.Since(began)
	require.NoError(t, err)
	// The emulator may log the end of the invocation just after it has answered.
	var logs string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		logs = strings.Join(f.EmulatorLogs(), "\n")
		if invokeDone.MatchString(logs) || time.Now().After(deadline) {
			break
		}
	}
	if ferr != nil && ferr.ErrorType == sandbox.ErrorTypeExit {
		t.Fatalf("%s did not initialise: %v\n%s\n%s", id, ferr, logs, strings.Join(f.Logs(), "\n"))
	}
	status := initDone.FindStringSubmatch(logs)
	require.NotNil(t, status, "no INIT RTDONE in the emulator log of %s:\n%s", id, logs)
	require.Equal(t, "success", status[1], "%s init:\n%s", id, logs)
	ini, inv := initReport.FindStringSubmatch(logs), invokeDone.FindStringSubmatch(logs)
	require.NotNil(t, ini, logs)
	require.NotNil(t, inv, logs)
	ms := func(s string) time.Duration {
		v, _ := strconv.ParseFloat(s, 64)
		return time.Duration(v * float64(time.Millisecond))
	}
	return coldStart{init: ms(ini[1]), invoke: ms(inv[1]), wall: wall}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

const mib = 1 << 20

// benchBinaries measures figure 5: cold start and binary size per function.
func benchBinaries(t *testing.T, env *environment, rep *report) {
	const title = "5. Cold start and binary size"
	fns := functions(t, env.localDir)
	fnEnv := functionEnv(t)
	heavy := []string{"github.com/databricks/databricks-sdk-go/config", "google.golang.org/grpc", "google.golang.org/protobuf",
		"cloud.google.com/go/auth", "github.com/aws/aws-sdk-go-v2/service/s3"}
	links := linked(t, env, heavy)
	rep.note(title, "**`cold_start_ms_<LogicalId>`**: median of %d cold starts of the function's bootstrap (built for this machine by "+
		"`make build-local`, same flags as the Lambda build) under aws-lambda-rie, each a fresh emulator invoked once with `{}`. The figure "+
		"is the emulator's own account: the init phase (from starting the bootstrap process until the runtime asks for its first event: "+
		"Go runtime start, configuration, the Databricks credentials read from the local Secrets Manager, SDK clients built) plus the first "+
		"invocation (which answers `{}` with its validation error, making no further calls). `wall` is from just before "+
		"`sandbox.StartFunction` until that first Invoke returned, so it also holds the emulator's own start and the sandbox's readiness "+
		"polling. The environment points every function at a Databricks fake and a local AWS endpoint, as in the sandbox.", coldStartRuns)
	type sized struct {
		id         string
		mib        float64
		databricks bool
	}
	var sizes []sized
	rep.note(title, "**`binary_mb_<LogicalId>`**: size of the stripped static linux/arm64 bootstrap `make build` writes to `.build/lambda/<LogicalId>/` "+
		"(`CGO_ENABLED=0 -tags lambda.norpc -trimpath -ldflags='-s -w'`), in MiB (2^20 bytes).")
	rep.note(title, "| function | cold start (median) | init | first invoke | wall (median) | min–max cold start | arm64 binary | links |\n|---|---:|---:|---:|---:|---:|---:|---|")
	for _, fn := range fns {
		id := fn.id
		bootstrap := filepath.Join(env.localDir, id, "bootstrap")
		var totals, inits, invokes, walls []time.Duration
		for range coldStartRuns {
			c := startCold(t, env, id, bootstrap, fnEnv)
			totals = append(totals, c.init+c.invoke)
			inits, invokes, walls = append(inits, c.init), append(invokes, c.invoke), append(walls, c.wall)
		}
		cold := median(totals)
		rep.figure("cold_start_ms_"+id, float64(cold)/float64(time.Millisecond), "ms", 1, atMost(50))
		info, err := os.Stat(filepath.Join(env.armDir, id, "bootstrap"))
		require.NoError(t, err, "run `make build` (NO_SAM=1) for the arm64 binaries")
		size := float64(info.Size()) / mib
		rep.figure("binary_mb_"+id, size, "MB", 1, atMost(15))
		var short []string
		for _, p := range links[fn.dir] {
			short = append(short, "`"+strings.TrimPrefix(strings.TrimPrefix(p, "github.com/"), "aws/aws-sdk-go-v2/")+"`")
		}
		rep.note(title, "| %s | %.1f ms | %.1f ms | %.1f ms | %.0f ms | %.1f–%.1f ms | %.1f MiB | %s |", id, ms(cold), ms(median(inits)), ms(median(invokes)),
			ms(median(walls)), ms(slices.Min(totals)), ms(slices.Max(totals)), size, strings.Join(short, ", "))
		sizes = append(sizes, sized{id, size, len(links[fn.dir]) > 0 && links[fn.dir][0] == heavy[0]})
	}
	var with, without []float64
	for _, s := range sizes {
		if s.databricks {
			with = append(with, s.mib)
		} else {
			without = append(without, s.mib)
		}
	}
	if len(with) > 0 && len(without) > 0 {
		rep.note(title, "**What makes the binaries large.** The %d functions that do not link the Databricks SDK are %.1f–%.1f MiB; the %d that do "+
			"are %.1f–%.1f MiB. They are built against a copy of the SDK in which four files are replaced by stubs (`build/sdkoverlay`, "+
			"`LAMBDA_MODFILE`): `config`'s two GCP credential providers, which link gRPC, `cloud.google.com/go/auth`, OpenCensus and "+
			"OpenTelemetry, and `common/types/{time,duration}`, which link protobuf's runtime through protojson. The second matters most: "+
			"protojson's initialisers make protobuf's descriptor formatting reachable, which calls `reflect.Value.MethodByName`, and the "+
			"linker then keeps every exported method of every type (all S3 and KMS operations, every SDK service method), used or not. "+
			"The section below measures what the unmodified SDK would cost. What remains is the AWS SDK's clients (S3 the largest) and the "+
			"SDK's own client, config and service models.",
			len(without), slices.Min(without), slices.Max(without), len(with), slices.Min(with), slices.Max(with))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// The large workspace of figure 6 and of the full-scale scenario.
var largeFleet = fleet{clusters: 5000, warehouses: 1000, pools: 500}

// seedLarge seeds the large workspace as internal/compute's scale test does: every fifth cluster
// is a job cluster (stopped, reported, not restarted).
func seedLarge(fake *dbfake.Server, ws int64, f fleet) {
	faketest.Workspace(fake, ws, "huge")
	for i := range f.pools {
		fake.AddPool(ws, compute.InstancePoolAndStats{InstancePoolId: fmt.Sprintf("pool-%04d", i), InstancePoolName: fmt.Sprintf("team-%04d-general-purpose", i),
			NodeTypeId: "i3.xlarge", MinIdleInstances: 1 + i%3, IdleInstanceAutoterminationMinutes: 15, MaxCapacity: 50, CustomTags: map[string]string{"team": strconv.Itoa(i)}})
	}
	for i := range f.clusters {
		source := compute.ClusterSourceUi
		if i%5 == 0 {
			source = compute.ClusterSourceJob
		}
		fake.AddCluster(ws, compute.ClusterDetails{ClusterId: fmt.Sprintf("0101-120000-%08d", i), ClusterName: fmt.Sprintf("analytics-team-%04d-interactive", i),
			State: compute.StateRunning, ClusterSource: source, InstancePoolId: fmt.Sprintf("pool-%04d", i%max(1, f.pools))})
	}
	for i := range f.warehouses {
		fake.AddWarehouse(ws, sql.EndpointInfo{Id: fmt.Sprintf("wh%014d", i), Name: fmt.Sprintf("bi-warehouse-%04d", i), State: sql.StateRunning})
	}
}

// peakRSS reads VmHWM of the process running the given executable.
func peakRSS(t *testing.T, exe string) float64 {
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if target, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err != nil || target != exe {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		require.NoError(t, err)
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				require.NoError(t, err)
				return kb * 1024 / mib
			}
		}
	}
	t.Fatalf("no running process for %s", exe)
	return 0
}

// benchMaxRSS measures figure 6: the peak resident memory of each compute task's bootstrap on a
// 5,000-cluster workspace.
func benchMaxRSS(t *testing.T, env *environment, rep *report) {
	const ws = int64(7300)
	fake := startFake(t, dbfake.Options{PageSize: 100})
	seedLarge(fake, ws, largeFleet)
	aws, err := awsfake.Start(awsfake.Config{Region: rig.DefaultRegion, AccountID: rig.AWSAccount})
	require.NoError(t, err)
	t.Cleanup(aws.Close)
	aws.CreateBucket(rig.InventoryBucket)
	// StopCompute takes the workspace's lock again before it stops anything (wslock.Guard).
	aws.CreateTable(rig.LockTable, "workspace_id")
	fnEnv := map[string]string{
		"DATABRICKS_HOST": fake.URL(), "DATABRICKS_WORKSPACE_HOST": fake.URL(), "DATABRICKS_ACCOUNT_ID": faketest.AccountID,
		"DATABRICKS_TOKEN": faketest.Token, "DATABRICKS_RATE_LIMIT": "1000",
		"INVENTORY_BUCKET": rig.InventoryBucket, "AWS_ENDPOINT_URL_S3": aws.URL(),
		"LOCK_TABLE_NAME": rig.LockTable, "AWS_ENDPOINT_URL_DYNAMODB": aws.URL(),
		"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_LAMBDA_LOG_FORMAT": "JSON",
	}
	tasks := []struct {
		name, id string
		timeout  int // template.yaml
	}{{"Inventory", "InventoryFunction", 300}, {"StopCompute", "StopComputeFunction", 900},
		{"ComputeStatus", "ComputeStatusFunction", 300}, {"RestartCompute", "RestartComputeFunction", 900}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	functions := map[string]*sandbox.Function{}
	exes := map[string]string{}
	for _, task := range tasks {
		exes[task.name] = privateCopy(t, filepath.Join(env.localDir, task.id, "bootstrap"))
		f, err := sandbox.StartFunction(ctx, sandbox.FunctionSpec{Name: task.id, Bootstrap: exes[task.name], Emulator: env.tools.Emulator,
			Env: fnEnv, TimeoutSeconds: task.timeout, Region: rig.DefaultRegion})
		require.NoError(t, err)
		t.Cleanup(f.Stop)
		functions[task.name] = f
	}
	call := func(task string, in, out any) {
		payload, err := json.Marshal(in)
		require.NoError(t, err)
		res, ferr, err := functions[task].Invoke(ctx, payload)
		require.NoError(t, err)
		require.Nil(t, ferr, "%s failed", task)
		require.NoError(t, json.Unmarshal(res, out))
	}

	run := rotation.WorkspaceRun{Workspace: rotation.WorkspaceTarget{WorkspaceID: strconv.FormatInt(ws, 10), DeploymentName: "huge"},
		Execution: "bench-rss", UseCases: []string{rotation.UseCaseManagedServices}}
	started := time.Now()
	var inv rotation.Inventory
	call("Inventory", run, &inv)
	require.NotEmpty(t, inv.Ref, "a 5,000-cluster inventory goes to S3")
	run.Inventory = &inv
	stops := 0
	for more := true; more; stops++ {
		var stop rotation.StopResult
		call("StopCompute", run, &stop)
		run.Stop, more = &stop, stop.More
	}
	var stopped rotation.ComputeStatus
	call("ComputeStatus", rotation.ComputeStatusInput{Target: rotation.TargetStopped, Run: run}, &stopped)
	require.True(t, stopped.Done, "still running: %d", stopped.PendingCount)
	run.StopStatus = &stopped
	restarts := 0
	for more := true; more; restarts++ {
		var restart rotation.RestartResult
		call("RestartCompute", run, &restart)
		run.Restart, more = &restart, restart.More
	}
	require.Equal(t, largeFleet.clusters-largeFleet.clusters/5, run.Restart.Started.Clusters)
	var running rotation.ComputeStatus
	call("ComputeStatus", rotation.ComputeStatusInput{Target: rotation.TargetRunning, Run: run}, &running)
	require.True(t, running.Done)
	require.Zero(t, running.StillDownCount)
	took := time.Since(started)

	const title = "6. Peak memory of the compute tasks at 5,000 clusters"
	rep.note(title, "**`max_rss_mb_<Task>`**: each compute task's real bootstrap runs under aws-lambda-rie against a fake workspace of %s "+
		"(every fifth cluster a job cluster), driven through a whole cycle: Inventory (%d resources, kept in the local S3 by reference: "+
		"`INVENTORY_BUCKET`, `AWS_ENDPOINT_URL_S3`), StopCompute (%d invocation(s)), ComputeStatus(STOPPED), RestartCompute (%d invocation(s)), "+
		"ComputeStatus(RUNNING), in %.0f s. After the last invocation, the peak resident set (`VmHWM` in `/proc/<pid>/status`) of the bootstrap "+
		"process, found by its path (a private copy per run), in MiB. Settings as deployed (`API_WORKERS` 8, no `TASK_TIME`), except "+
		"`DATABRICKS_RATE_LIMIT=1000` and a fake without latency so that the %d calls take seconds, not minutes; at most 8 calls are in "+
		"flight either way. The ComputeStatus figure is the peak over both checks. The template gives these functions 256 MB.",
		largeFleet, inv.Counts.Clusters+inv.Counts.Pools+inv.Counts.Warehouses+inv.Counts.Pipelines, stops, restarts, took.Seconds(), len(fake.Requests()))
	rep.note(title, "| task | peak RSS |\n|---|---:|")
	for _, task := range tasks {
		rss := peakRSS(t, exes[task.name])
		rep.figure("max_rss_mb_"+task.name, rss, "MB", 1, atMost(128))
		rep.note(title, "| %s | %.1f MiB |", task.name, rss)
	}
}

// benchLargeWorkspace runs internal/compute's large-workspace scenario at full scale.
func benchLargeWorkspace(t *testing.T, env *environment, rep *report) {
	cmd := exec.Command(env.goCmd, "test", "-count=1", "-v", "-run", "LargeWorkspace", "./internal/compute")
	cmd.Dir = env.root
	cmd.Env = append(os.Environ(), "ROTATOR_FULL_SCALE=1")
	started := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(started)
	passed := 0
	var logs []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "--- PASS: ") {
			passed++
		}
		if strings.Contains(line, "scale_test.go") {
			logs = append(logs, strings.TrimSpace(line))
		}
	}
	rep.figure("large_workspace_full_scale_s", took.Seconds(), "s", 1, goal{})
	rep.figure("large_workspace_full_scale_passed", float64(passed), "count", 0, atLeast(1))
	rep.note("Many workspaces and large inventories at full scale", "**`large_workspace_full_scale_s`**: `ROTATOR_FULL_SCALE=1 go test -run LargeWorkspace "+
		"./internal/compute` (reduced to 600 clusters in `make test`): %s in-process, with a 100 ms task time so that every task continues several "+
		"times, checking after each step that the state stays under the 256 KiB payload limit. %d test(s) passed in %.1f s (compile included). %s",
		largeFleet, passed, took.Seconds(), strings.Join(logs, " "))
	require.NoError(t, err, "%s", out)
}
