package rig

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/sandbox"
)

const usage = `rotator-sandbox runs a whole rotation locally: the real Lambda binaries under aws-lambda-rie,
the real state machine in aws-local-stepfunctions, local-kms, and a Databricks fake.

Usage:
  rotator-sandbox demo                      create a key, deliver its CreateKey event, rotate, verify
  rotator-sandbox run --event FILE          deliver a KMS EventBridge event (e.g. events/kms/*.json)
  rotator-sandbox run --input FILE          start the state machine with a console input (e.g. events/inputs/*.json)

Flags for run and demo:
  --seed FILE      Databricks account to start the fake with (JSON; default: the built-in demo account)
  --verbose        print every function log line as it is written
  --wait-ms N      how long every Wait state lasts (default 200; the definition is not changed)

Endpoints come from DATABRICKS_HOST, DATABRICKS_ACCOUNT_ID, DATABRICKS_TOKEN, DATABRICKS_WORKSPACE_HOST,
AWS_ENDPOINT_URL_KMS and AWS_REGION when set; an emulator starts for each one that is not.
Function binaries come from ROTATOR_BUILD_DIR (default .build/local, written by make build-local).
`

// Main is the sandbox command. It returns the process exit code: 0 when the rotation did what was
// asked, 1 when it did not, 2 for a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	eventFile := fs.String("event", "", "KMS EventBridge event file")
	inputFile := fs.String("input", "", "state machine input file")
	seedFile := fs.String("seed", "", "Databricks fake seed file")
	verbose := fs.Bool("verbose", false, "print function logs")
	waitMS := fs.Int("wait-ms", 200, "duration of every Wait state in milliseconds")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cmd := args[0]
	switch {
	case cmd == "run" && (*eventFile == "") == (*inputFile == ""):
		fmt.Fprintln(stderr, "run needs exactly one of --event FILE or --input FILE")
		return 2
	case cmd != "run" && cmd != "demo":
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	root, err := sandbox.RepoRoot()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	opts := Options{RepoRoot: root, BuildDir: filepath.Join(root, ".build", "local"), Lookup: lookup,
		ClientSecret: "sandbox-client-secret", WaitMS: *waitMS,
		Fake: dbfake.Options{TransitionDelay: 300 * time.Millisecond, WorkspaceUpdateDelay: 500 * time.Millisecond}}
	if dir, ok := lookup("ROTATOR_BUILD_DIR"); ok && dir != "" {
		opts.BuildDir = dir
	}
	opts.Seed = DemoSeed(DefaultRegion)
	if region, ok := lookup("AWS_REGION"); ok && region != "" {
		opts.Seed = DemoSeed(region)
	}
	if *seedFile != "" {
		if opts.Seed, err = dbfake.ReadSeedFile(*seedFile); err != nil {
			fmt.Fprintf(stderr, "reading --seed %s: %v\n", *seedFile, err)
			return 2
		}
	}
	if *verbose {
		opts.Log = stdout
	}
	p := printer{w: stdout}
	p.section("Starting the local sandbox")
	r, err := Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(stderr, "cannot start the sandbox:", err)
		return 1
	}
	defer r.Close()
	if err := r.PrepareFixtureKeys(ctx); err != nil && r.Fake != nil {
		fmt.Fprintln(stderr, "preparing the fixture keys in local KMS:", err)
		return 1
	}
	r.describe(p)
	if r.Fake != nil {
		p.section("Before")
		r.describeWorkspace(p, AnalyticsWorkspace)
	}

	switch {
	case cmd == "demo":
		return r.demo(ctx, p, stderr)
	case *eventFile != "":
		event, err := os.ReadFile(*eventFile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		p.section("Delivering " + *eventFile + " to TriggerFunction")
		if err := r.Deliver(ctx, event); err != nil {
			fmt.Fprintln(stderr, "the trigger failed:", err)
			return 1
		}
	default:
		input, err := os.ReadFile(*inputFile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		p.section("Starting the state machine with " + *inputFile)
		arn, err := r.StartExecution(ctx, "", input)
		if err != nil {
			fmt.Fprintln(stderr, "StartExecution:", err)
			return 1
		}
		p.line("execution %s", arn)
	}
	if ok := r.report(ctx, p); !ok {
		return 1
	}
	return 0
}

// demo is the bundled scenario: an operator creates a key with the Databricks policy and the
// opt-in tag; CloudTrail's CreateKey event reaches the trigger; the workspace moves onto the key.
func (r *Rig) demo(ctx context.Context, p printer, stderr io.Writer) int {
	if r.Fake == nil {
		fmt.Fprintln(stderr, "demo needs the built-in Databricks fake: unset DATABRICKS_HOST, or use run --event/--input")
		return 2
	}
	tags := map[string]string{"databricks:workspace": fmt.Sprint(AnalyticsWorkspace)}
	key, err := r.NewKey(ctx, "Databricks managed services key (demo)", DatabricksKeyPolicy(DatabricksAccountID), tags)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	p.section("1. Created a KMS key with the Databricks key policy and the opt-in tag")
	p.line("key  %s", *key.Arn)
	p.line("tag  databricks:workspace=%d", AnalyticsWorkspace)
	event := CreateKeyEvent(key, tags, "7d3a9c1e-5b2f-4e8a-9c6d-0f1e2d3c4b5a", time.Now())
	p.section("2. Delivered the CreateKey CloudTrail event to TriggerFunction (as EventBridge would)")
	if err := r.Deliver(ctx, event); err != nil {
		fmt.Fprintln(stderr, "the trigger failed:", err)
		return 1
	}
	if !r.report(ctx, p) {
		return 1
	}
	// The demo's promise, checked rather than assumed.
	ws := r.Fake.Workspace(AnalyticsWorkspace)
	var problems []string
	onKey := false
	for _, c := range r.Fake.KeyConfigs() {
		if c.CustomerManagedKeyId == ws.ManagedServicesCustomerManagedKeyId && c.AwsKeyInfo != nil && c.AwsKeyInfo.KeyArn == *key.Arn {
			onKey = true
		}
	}
	if !onKey {
		problems = append(problems, "the workspace is not on a key configuration for the new key")
	}
	for _, seed := range DemoSeed(r.Region).Workspaces[0].Clusters {
		if seed.State == compute.StateRunning && seed.ClusterSource != compute.ClusterSourceJob && r.Fake.Cluster(AnalyticsWorkspace, seed.ClusterId).State != compute.StateRunning {
			problems = append(problems, "cluster "+seed.ClusterName+" is not running")
		}
	}
	if len(problems) > 0 {
		p.section("Demo FAILED")
		for _, pr := range problems {
			p.line("%s", pr)
		}
		return 1
	}
	p.section("Demo passed: workspace %d is on the new key configuration %s and every non-job resource that was running runs again", AnalyticsWorkspace, ws.ManagedServicesCustomerManagedKeyId)
	return 0
}

// report waits for every execution, prints timelines, results, events and the workspace after.
// It returns false if a rotation failed or if nothing the caller expected happened.
func (r *Rig) report(ctx context.Context, p printer) bool {
	executions := r.WaitForAll(ctx)
	ok := true
	if len(executions) == 0 {
		p.section("No execution was started")
	}
	for _, e := range executions {
		kind := "rotation"
		if e.StateMachineArn == r.ReminderARN {
			kind = "retirement reminder (its 24-hour Wait shortened by the engine override)"
		}
		p.section("Timeline of %s %s", kind, e.Name)
		var b strings.Builder
		_ = sandbox.FormatTimeline(&b, r.Timeline(e.ExecutionArn))
		p.block(b.String())
		p.line("result: %s (%s)", e.Status, e.StopDate.Sub(e.StartDate).Round(time.Millisecond))
		if e.Status != awsfake.StatusSucceeded {
			ok = false
			p.line("error:  %s", e.Error)
			p.line("cause:  %s", e.Cause)
		} else if e.Output != "" && e.StateMachineArn == r.RotationARN {
			p.block(indentJSON(e.Output))
		}
	}
	p.section("Events published to EventBridge")
	if len(r.AWS.Events()) == 0 {
		p.line("(none)")
	}
	for _, ev := range r.AWS.Events() {
		var d map[string]any
		_ = json.Unmarshal([]byte(ev.Detail), &d)
		p.line("%-24s %s", ev.DetailType, summarise(d))
	}
	if r.Fake != nil {
		p.section("After")
		r.describeWorkspace(p, AnalyticsWorkspace)
	}
	return ok
}

func (r *Rig) describe(p printer) {
	p.line("KMS         %s (region %s, account %s)", r.KMSEndpoint, r.Region, AWSAccount)
	if r.Fake != nil {
		p.line("Databricks  fake at %s (account %s, OAuth M2M from the local Secrets Manager)", r.Fake.URL(), DatabricksAccountID)
	} else {
		p.line("Databricks  %s", r.databricksHost)
	}
	p.line("AWS         Step Functions, EventBridge and Secrets Manager at %s", r.AWS.URL())
	names := make([]string, 0, len(r.Functions))
	for n := range r.Functions {
		names = append(names, n)
	}
	sort.Strings(names)
	p.line("Functions   %s (bootstrap binaries under aws-lambda-rie)", strings.Join(names, ", "))
}

func (r *Rig) describeWorkspace(p printer, id int64) {
	ws := r.Fake.Workspace(id)
	keyARN := "none"
	for _, c := range r.Fake.KeyConfigs() {
		if c.CustomerManagedKeyId == ws.ManagedServicesCustomerManagedKeyId && c.AwsKeyInfo != nil {
			keyARN = c.AwsKeyInfo.KeyArn
		}
	}
	p.line("workspace %d (%s) %s", id, ws.WorkspaceName, ws.WorkspaceStatus)
	p.line("  managed services key configuration %s -> %s", orNone(ws.ManagedServicesCustomerManagedKeyId), keyARN)
	p.line("  storage key configuration          %s", orNone(ws.StorageCustomerManagedKeyId))
	for _, c := range r.Fake.Clusters(id) {
		p.line("  cluster   %-22s %-12s (%s)", c.ClusterName, c.State, c.ClusterSource)
	}
	for _, pool := range r.Fake.Pools(id) {
		p.line("  pool      %-22s min idle %d, idle autotermination %d min", pool.InstancePoolName, pool.MinIdleInstances, pool.IdleInstanceAutoterminationMinutes)
	}
	for _, w := range r.Fake.Warehouses(id) {
		kind := "classic"
		if w.EnableServerlessCompute {
			kind = "serverless"
		}
		p.line("  warehouse %-22s %-12s (%s)", w.Name, w.State, kind)
	}
	for _, pl := range r.Fake.Pipelines(id) {
		p.line("  pipeline  %-22s %s", pl.Name, pl.State)
	}
}

func summarise(d map[string]any) string {
	var parts []string
	for _, k := range []string{"outcome", "workspace_id", "key_arn", "new_key_arn", "new_key_config_id", "downtime_seconds", "message"} {
		if v, ok := d[k]; ok && v != "" {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if e, ok := d["error"].(map[string]any); ok {
		parts = append(parts, fmt.Sprintf("error=%v: %v", e["type"], e["message"]))
	}
	return strings.Join(parts, " ")
}

func indentJSON(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

type printer struct{ w io.Writer }

func (p printer) section(format string, args ...any) {
	fmt.Fprintf(p.w, "\n== "+format+"\n", args...)
}

func (p printer) line(format string, args ...any) { fmt.Fprintf(p.w, "   "+format+"\n", args...) }

func (p printer) block(text string) {
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintln(p.w, "   "+l)
	}
}
