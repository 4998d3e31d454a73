// Package rig assembles the local sandbox: the real bootstrap binaries under aws-lambda-rie, the
// real ASL in aws-local-stepfunctions, local-kms, the Databricks fake and a local AWS endpoint for
// Step Functions, EventBridge and Secrets Manager. The sandbox command and the scenario tests both
// drive a rotation through it.
//
// Endpoints come from the standard variables when they are set (DATABRICKS_HOST,
// DATABRICKS_ACCOUNT_ID, DATABRICKS_TOKEN, DATABRICKS_WORKSPACE_HOST, AWS_ENDPOINT_URL_KMS,
// AWS_REGION); a built-in emulator starts only for what is not set.
package rig

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/sandbox"
	rotationpolicy "github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
)

// Fixed identities of the sandbox. The AWS account and region match the KMS events in events/kms.
const (
	AWSAccount          = "111122223333"
	DefaultRegion       = "us-west-2"
	DatabricksAccountID = "e11e38c5-a449-47b9-b37f-0fa36c821612"
	ClientID            = "rotator-service-principal"
	EventBus            = "databricks-cmk-rotator"
	LockTable           = "databricks-cmk-rotator-locks"
	InventoryBucket     = "databricks-cmk-rotator-inventories"
	RotatorRoleARN      = "arn:aws:iam::111122223333:role/databricks-cmk-rotator"
)

// Function is one Lambda function of template.yaml: its logical id and its functions/ directory.
type Function struct {
	LogicalID string
	Dir       string
}

// Functions are the task functions the state machine invokes, and the trigger.
var (
	TaskFunctions = []Function{
		{"LockWorkspacesFunction", "lock-workspaces"}, {"UnlockWorkspacesFunction", "unlock-workspaces"},
		{"ValidateFunction", "validate"}, {"RegisterKeyConfigFunction", "register-key-config"},
		{"InventoryFunction", "inventory"}, {"StopComputeFunction", "stop-compute"},
		{"ComputeStatusFunction", "compute-status"}, {"PatchWorkspaceFunction", "patch-workspace"},
		{"WorkspaceStatusFunction", "workspace-status"}, {"RestartComputeFunction", "restart-compute"},
		{"BuildReportFunction", "build-report"},
		// Invoked by the retirement reminder; it does nothing unless KEY_CONFIG_HYGIENE=true (FunctionEnv).
		{"KeyConfigHygieneFunction", "key-config-hygiene"},
		{"CheckPolicyFunction", "check-policy"}, {"RequestApprovalFunction", "request-approval"},
	}
	TriggerFunction = Function{"TriggerFunction", "trigger"}
	// KeyAgeCheckFunction runs on a schedule in AWS; the rig starts it only with Options.KeyAgeCheck.
	KeyAgeCheckFunction = Function{"KeyAgeCheckFunction", "key-age-check"}
	// RescueFunction receives the rotation's status changes in AWS; the rig starts it only with
	// Options.Rescue, and Rig.Rescue hands it one.
	RescueFunction = Function{"RescueFunction", "rescue"}
)

// Options configure a rig.
type Options struct {
	// RepoRoot holds go.mod, statemachine/, sandbox/, .tools/ and node_modules/.
	RepoRoot string
	// BuildDir holds <LogicalId>/bootstrap built for this machine (make build-local).
	BuildDir string
	// Lookup reads the standard variables that point the rig at external endpoints (os.LookupEnv in
	// the command; nil in tests, which always use the emulators).
	Lookup func(string) (string, bool)
	// Seed is the Databricks account the fake starts with.
	Seed dbfake.SeedFile
	// Fake tunes the fake's delays, latency and rate limit.
	Fake dbfake.Options
	// ClientSecret is the service principal's OAuth secret kept in the local Secrets Manager.
	ClientSecret string
	// FunctionEnv is added to every task function's environment (budgets, concurrency).
	FunctionEnv map[string]string
	// FunctionTimeoutSeconds is each function's Lambda timeout (default 60).
	FunctionTimeoutSeconds int
	// Instances is the number of execution environments per function (default 2).
	Instances int
	// WaitMS replaces every Wait of the definitions (default 20 ms; negative: none is replaced, the
	// definitions' own durations apply); RetryMS every Retry interval (default 0).
	WaitMS  int
	RetryMS int
	// Policy, if set, replaces the bundled rotation policy (policy/rotation-policy.yaml) in the
	// trigger and the task functions (ROTATION_POLICY).
	Policy string
	// KMSProxy puts a fault-injecting proxy in front of KMS (Rig.KMSProxy), for scenarios that throttle it.
	KMSProxy bool
	// KeyAgeCheck starts the scheduled KeyAgeCheckFunction too (Rig.CheckKeyAge runs it).
	KeyAgeCheck bool
	// Rescue starts the RescueFunction too (Rig.Rescue delivers an execution's end to it).
	Rescue bool
	// Log receives the functions' log lines live; nil discards them (they stay in Function.Logs).
	Log io.Writer
	// Logger receives the engine's own diagnostics.
	Logger *slog.Logger
}

// Rig is a running sandbox.
type Rig struct {
	Region      string
	KMS         *kms.Client
	KMSEndpoint string
	// KMSProxy is set when Options.KMSProxy asked for it; KMSEndpoint is then the proxy.
	KMSProxy *KMSProxy
	// Fake is nil when DATABRICKS_HOST points at another server.
	Fake        *dbfake.Server
	AWS         *awsfake.Server
	SFN         *sfn.Client
	Functions   map[string]*sandbox.Function
	RotationARN string
	ReminderARN string
	// WorkspaceRotationARN is the child state machine: one execution per workspace of a request.
	WorkspaceRotationARN string
	rotationRunner       *sandbox.EngineRunner
	reminderRunner       *sandbox.EngineRunner
	workspaceRunner      *sandbox.EngineRunner
	stops                []func()
	databricksHost       string
	databricksToken      string
}

func lookupOrNil(l func(string) (string, bool), name string) string {
	if l == nil {
		return ""
	}
	v, _ := l(name)
	return strings.TrimSpace(v)
}

// Start brings the whole sandbox up; Close takes it down.
func Start(ctx context.Context, opts Options) (_ *Rig, err error) {
	tools, err := sandbox.FindTools(opts.RepoRoot)
	if err != nil {
		return nil, err
	}
	if opts.Instances == 0 {
		opts.Instances = 2
	}
	if opts.FunctionTimeoutSeconds == 0 {
		opts.FunctionTimeoutSeconds = 60
	}
	if opts.WaitMS == 0 {
		opts.WaitMS = 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Rig{Region: DefaultRegion, Functions: map[string]*sandbox.Function{}}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if region := lookupOrNil(opts.Lookup, "AWS_REGION"); region != "" {
		r.Region = region
	}

	// KMS: local-kms unless AWS_ENDPOINT_URL_KMS names another server.
	r.KMSEndpoint = lookupOrNil(opts.Lookup, "AWS_ENDPOINT_URL_KMS")
	if r.KMSEndpoint == "" {
		dataDir, err := os.MkdirTemp("", "rotator-kms-")
		if err != nil {
			return nil, err
		}
		r.stops = append(r.stops, func() { _ = os.RemoveAll(dataDir) })
		if err := os.WriteFile(filepath.Join(dataDir, "seed.yaml"), []byte(fixtureKeysSeed), 0o600); err != nil {
			return nil, err
		}
		endpoint, stop, err := sandbox.StartLocalKMS(ctx, tools.LocalKMS, dataDir, r.Region, AWSAccount)
		if err != nil {
			return nil, err
		}
		r.stops = append(r.stops, stop)
		r.KMSEndpoint = endpoint
	}
	if opts.KMSProxy {
		if r.KMSProxy, err = StartKMSProxy(r.KMSEndpoint); err != nil {
			return nil, err
		}
		r.stops = append(r.stops, r.KMSProxy.Close)
		r.KMSEndpoint = r.KMSProxy.URL()
	}
	r.KMS = kms.New(kms.Options{Region: r.Region, BaseEndpoint: aws.String(r.KMSEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})

	// Databricks: the fake unless DATABRICKS_HOST names another server.
	r.databricksHost = lookupOrNil(opts.Lookup, "DATABRICKS_HOST")
	if r.databricksHost == "" {
		fakeOpts := opts.Fake
		fakeOpts.AccountID = DatabricksAccountID
		fakeOpts.ClientID, fakeOpts.ClientSecret = ClientID, opts.ClientSecret
		if fakeOpts.Logger == nil {
			fakeOpts.Logger = opts.Logger
		}
		r.Fake, err = dbfake.Start(fakeOpts)
		if err != nil {
			return nil, err
		}
		r.stops = append(r.stops, r.Fake.Close)
		if err := r.Fake.Seed(opts.Seed); err != nil {
			return nil, fmt.Errorf("seeding the Databricks fake: %w", err)
		}
	} else {
		r.databricksToken = lookupOrNil(opts.Lookup, "DATABRICKS_TOKEN")
	}

	r.AWS, err = awsfake.Start(awsfake.Config{Region: r.Region, AccountID: AWSAccount, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, r.AWS.Close)
	r.AWS.CreateTable(LockTable, "workspace_id")
	r.AWS.CreateBucket(InventoryBucket)
	secretARN := r.secretARN()
	secret, _ := json.Marshal(map[string]string{"client_id": ClientID, "client_secret": opts.ClientSecret})
	r.AWS.PutSecret(secretARN, string(secret))
	r.SFN = sfn.New(sfn.Options{Region: r.Region, BaseEndpoint: aws.String(r.AWS.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})

	r.RotationARN = fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:databricks-cmk-rotation", r.Region, AWSAccount)
	r.ReminderARN = fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:databricks-cmk-retirement-reminder", r.Region, AWSAccount)
	r.WorkspaceRotationARN = fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:databricks-cmk-workspace-rotation", r.Region, AWSAccount)

	taskEnv := r.taskEnv(opts, secretARN)
	lambdas := map[string][]string{}
	subs := map[string]string{"EventBusName": EventBus, "RetirementReminderStateMachineArn": r.ReminderARN,
		"WorkspaceRotationStateMachineArn": r.WorkspaceRotationARN}
	for _, fn := range TaskFunctions {
		f, err := r.startFunction(ctx, opts, tools, fn, taskEnv)
		if err != nil {
			return nil, err
		}
		arn := fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", r.Region, AWSAccount, fn.LogicalID)
		lambdas[arn] = f.InvokeURLs()
		subs[strings.TrimSuffix(fn.LogicalID, "Function")+"FunctionArn"] = arn
	}
	triggerEnv := map[string]string{
		"STATE_MACHINE_ARN": r.RotationARN, "EVENT_BUS_NAME": EventBus, "IGNORED_PRINCIPAL_ARNS": RotatorRoleARN,
		"AWS_ENDPOINT_URL_SFN": r.AWS.URL(), "AWS_ENDPOINT_URL_EVENTBRIDGE": r.AWS.URL(), "AWS_ENDPOINT_URL_KMS": r.KMSEndpoint,
		"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_LAMBDA_LOG_FORMAT": "JSON",
	}
	if opts.Policy != "" {
		triggerEnv[rotationpolicy.EnvDocument] = opts.Policy
	}
	if _, err := r.startFunction(ctx, opts, tools, TriggerFunction, triggerEnv); err != nil {
		return nil, err
	}
	if opts.KeyAgeCheck {
		env := map[string]string{"AWS_ENDPOINT_URL_SFN": r.AWS.URL(), "ROTATION_STATE_MACHINE_ARN": r.RotationARN}
		for k, v := range taskEnv {
			env[k] = v
		}
		if _, err := r.startFunction(ctx, opts, tools, KeyAgeCheckFunction, env); err != nil {
			return nil, err
		}
	}

	if opts.Rescue {
		env := map[string]string{
			"AWS_ENDPOINT_URL_SFN": r.AWS.URL(), "ROTATION_STATE_MACHINE_ARN": r.RotationARN,
			"REMINDER_STATE_MACHINE_ARN": r.ReminderARN, "WORKSPACE_ROTATION_STATE_MACHINE_ARN": r.WorkspaceRotationARN,
		}
		for k, v := range taskEnv {
			env[k] = v
		}
		if _, err := r.startFunction(ctx, opts, tools, RescueFunction, env); err != nil {
			return nil, err
		}
	}

	for _, sm := range []struct {
		arn, file string
		runner    **sandbox.EngineRunner
	}{{r.RotationARN, "rotation.asl.json", &r.rotationRunner}, {r.ReminderARN, "retirement-reminder.asl.json", &r.reminderRunner},
		{r.WorkspaceRotationARN, "workspace-rotation.asl.json", &r.workspaceRunner}} {
		definition, err := os.ReadFile(filepath.Join(opts.RepoRoot, "statemachine", sm.file))
		if err != nil {
			return nil, err
		}
		runner, err := sandbox.NewEngineRunner(sandbox.EngineConfig{
			Node: tools.Node, Script: tools.Engine, Definition: string(definition), Substitutions: subs,
			Lambdas: lambdas, AWSEndpoint: r.AWS.URL(),
			WaitOverridesMS: waitOverrides(opts.WaitMS), RetryOverridesMS: map[string]int{"*": opts.RetryMS},
			Logger: opts.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", sm.file, err)
		}
		*sm.runner = runner
		r.AWS.RegisterStateMachine(sm.arn, runner)
	}
	return r, nil
}

func waitOverrides(ms int) map[string]int {
	if ms < 0 {
		return nil
	}
	return map[string]int{"*": ms}
}

func (r *Rig) taskEnv(opts Options, secretARN string) map[string]string {
	env := map[string]string{
		"AWS_ENDPOINT_URL_KMS": r.KMSEndpoint, "AWS_ENDPOINT_URL_SECRETS_MANAGER": r.AWS.URL(),
		"AWS_ENDPOINT_URL_DYNAMODB": r.AWS.URL(), "LOCK_TABLE_NAME": LockTable,
		"AWS_ENDPOINT_URL_S3": r.AWS.URL(), "INVENTORY_BUCKET": InventoryBucket,
		"AWS_ENDPOINT_URL_EVENTBRIDGE": r.AWS.URL(), "EVENT_BUS_NAME": EventBus,
		"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_LAMBDA_LOG_FORMAT": "JSON",
		// Budgets are configuration, not definition: short here so that a timeout scenario ends in seconds.
		"STOP_BUDGET": "30s", "START_BUDGET": "30s", "WORKSPACE_UPDATE_BUDGET": "10s", "STORAGE_UPDATE_BUDGET": "20s",
		// The quiet window is a loop of checks that lasts this long in real time (Waits are shortened, not it).
		"STORAGE_QUIET_WINDOW_SECONDS": "2",
		"WORKSPACE_PROVISIONING_GRACE": "20s",
		"DATABRICKS_RATE_LIMIT":        "100",
	}
	if opts.Policy != "" {
		env[rotationpolicy.EnvDocument] = opts.Policy
	}
	if r.Fake != nil {
		env["DATABRICKS_HOST"] = r.Fake.URL()
		env["DATABRICKS_WORKSPACE_HOST"] = r.Fake.URL()
		env["DATABRICKS_ACCOUNT_ID"] = DatabricksAccountID
		env["DATABRICKS_SECRET_ARN"] = secretARN
	} else {
		env["DATABRICKS_HOST"] = r.databricksHost
		env["DATABRICKS_ACCOUNT_ID"] = lookupOrNil(opts.Lookup, "DATABRICKS_ACCOUNT_ID")
		env["DATABRICKS_WORKSPACE_HOST"] = lookupOrNil(opts.Lookup, "DATABRICKS_WORKSPACE_HOST")
		if r.databricksToken != "" {
			env["DATABRICKS_TOKEN"] = r.databricksToken
		} else {
			env["DATABRICKS_SECRET_ARN"] = secretARN
		}
	}
	for k, v := range opts.FunctionEnv {
		env[k] = v
	}
	return env
}

func (r *Rig) startFunction(ctx context.Context, opts Options, tools sandbox.Tools, fn Function, env map[string]string) (*sandbox.Function, error) {
	bootstrap := filepath.Join(opts.BuildDir, fn.LogicalID, "bootstrap")
	if _, err := os.Stat(bootstrap); err != nil {
		return nil, fmt.Errorf("%s: %w (run `make build-local`)", fn.LogicalID, err)
	}
	f, err := sandbox.StartFunction(ctx, sandbox.FunctionSpec{
		Name: fn.LogicalID, Bootstrap: bootstrap, Emulator: tools.Emulator, Env: env,
		TimeoutSeconds: opts.FunctionTimeoutSeconds, Region: r.Region, Instances: opts.Instances, LogOutput: opts.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", fn.LogicalID, err)
	}
	r.Functions[fn.LogicalID] = f
	r.stops = append(r.stops, f.Stop)
	return f, nil
}

// Close stops everything the rig started, in reverse order.
func (r *Rig) Close() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
	r.stops = nil
}

// Deliver hands an EventBridge event to the trigger function, as EventBridge's asynchronous invoke
// would, and returns the function's error if it failed.
func (r *Rig) Deliver(ctx context.Context, event []byte) error {
	_, fnErr, err := r.Functions[TriggerFunction.LogicalID].Invoke(ctx, event)
	if err != nil {
		return err
	}
	if fnErr != nil {
		return fnErr
	}
	return nil
}

// CheckKeyAge runs the key age check as its daily schedule would and returns its result.
func (r *Rig) CheckKeyAge(ctx context.Context) (json.RawMessage, error) {
	fn, ok := r.Functions[KeyAgeCheckFunction.LogicalID]
	if !ok {
		return nil, fmt.Errorf("the rig was started without Options.KeyAgeCheck")
	}
	out, fnErr, err := fn.Invoke(ctx, []byte(`{"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}`))
	if err != nil {
		return nil, err
	}
	if fnErr != nil {
		return nil, fnErr
	}
	return out, nil
}

// StartExecution starts the rotation state machine with an operator's input, as the console does.
func (r *Rig) StartExecution(ctx context.Context, name string, input []byte) (string, error) {
	in := &sfn.StartExecutionInput{StateMachineArn: aws.String(r.RotationARN), Input: aws.String(string(input))}
	if name != "" {
		in.Name = aws.String(name)
	}
	out, err := r.SFN.StartExecution(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ExecutionArn), nil
}

// Rotations returns the rotation executions, oldest first.
func (r *Rig) Rotations() []awsfake.Execution {
	var out []awsfake.Execution
	for _, e := range r.AWS.Executions() {
		if e.StateMachineArn == r.RotationARN {
			out = append(out, e)
		}
	}
	return out
}

// WaitForAll waits until every execution (rotations and reminders) has closed.
func (r *Rig) WaitForAll(ctx context.Context) []awsfake.Execution {
	for {
		var open bool
		for _, e := range r.AWS.Executions() {
			if e.Status == awsfake.StatusRunning {
				r.AWS.WaitExecution(ctx, e.ExecutionArn)
				open = true
			}
		}
		if !open || ctx.Err() != nil {
			return r.AWS.Executions()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Timeline returns the recorded timeline of an execution of any of the state machines.
func (r *Rig) Timeline(executionARN string) sandbox.Timeline {
	for _, runner := range []*sandbox.EngineRunner{r.rotationRunner, r.workspaceRunner} {
		if tl, ok := runner.Timeline(executionARN); ok {
			return tl
		}
	}
	tl, _ := r.reminderRunner.Timeline(executionARN)
	return tl
}

// Children returns the workspace executions a rotation execution started (RotateWorkspaces), in
// start order: each carries the parent's execution id in its input, as Step Functions links them.
func (r *Rig) Children(parentARN string) []awsfake.Execution {
	var out []awsfake.Execution
	for _, e := range r.AWS.Executions() {
		if e.StateMachineArn != r.WorkspaceRotationARN {
			continue
		}
		var in struct {
			Parent string `json:"AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"`
		}
		if json.Unmarshal([]byte(e.Input), &in) == nil && in.Parent == parentARN {
			out = append(out, e)
		}
	}
	return out
}

// Logs returns every function log line, for searching (the secret-leak test) or debugging.
func (r *Rig) Logs() []string {
	var out []string
	for _, f := range r.Functions {
		out = append(out, f.Logs()...)
	}
	return out
}
