package operator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// invalidInputError lists every problem offline validation found with an execution input.
type invalidInputError struct{ problems []string }

func (e *invalidInputError) Error() string {
	return "the input is not valid: " + strings.Join(e.problems, "; ")
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		*l = append(*l, part)
	}
	return nil
}

type startFlags struct {
	workspaces   listFlag
	keyARN       string
	alias        string
	useCases     listFlag
	noReuse      bool
	input        string
	name         string
	stateMachine string
	watch        bool
	emergency    bool
}

// requestFlagNames are the flags that build the input; --input replaces them all.
var requestFlagNames = []string{"workspace", "key-arn", "alias", "use-cases", "no-reuse-key-for-cluster-volumes"}

func (f *startFlags) register(fs *flag.FlagSet, dryRun bool) {
	fs.Var(&f.workspaces, "workspace", "")
	fs.StringVar(&f.keyARN, "key-arn", "", "")
	fs.StringVar(&f.alias, "alias", "", "")
	fs.Var(&f.useCases, "use-cases", "")
	fs.BoolVar(&f.noReuse, "no-reuse-key-for-cluster-volumes", false, "")
	fs.StringVar(&f.input, "input", "", "")
	fs.StringVar(&f.name, "name", "", "")
	fs.StringVar(&f.stateMachine, "state-machine", "", "")
	if !dryRun {
		fs.BoolVar(&f.watch, "watch", false, "")
		fs.BoolVar(&f.emergency, "emergency", false, "")
	}
}

// start starts a rotation, or a dry run that it then follows and whose plan it prints.
func (a *App) start(ctx context.Context, args []string, dryRun bool) error {
	cmd := "start"
	if dryRun {
		cmd = "plan"
	}
	fs := newFlagSet(cmd)
	var f startFlags
	f.register(fs, dryRun)
	positional, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageErrorf("unexpected argument %q (workspaces are given with --workspace)", positional[0])
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	machine, err := a.requireStateMachine(f.stateMachine)
	if err != nil {
		return err
	}
	raw, fromFlags, err := a.requestDocument(f, set)
	if err != nil {
		return err
	}
	req, err := checkRequest(raw, fromFlags)
	if err != nil {
		return err
	}
	if dryRun {
		req.DryRun = true
	}
	if f.emergency {
		// Skips the maintenance window, and the approval unless the policy requires it for emergencies.
		req.Emergency = true
	}
	input, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode the execution input: %w", err)
	}
	name := f.name
	if name == "" {
		name = executionName(req.DryRun, a.Now(), input)
	}

	api, err := a.client(ctx)
	if err != nil {
		return err
	}
	arn, err := startExecution(ctx, api, machine, name, string(input))
	if err != nil {
		return err
	}
	what := "rotation"
	if req.DryRun {
		what = "dry run"
	}
	fmt.Fprintf(a.Stdout, "Started %s %s\n", what, name)
	fmt.Fprintf(a.Stdout, "%-*s%s\n", labelWidth, "Execution", arn)
	fmt.Fprintf(a.Stdout, "%-*s%s\n", labelWidth, "Console", ConsoleURL(arn))
	if !dryRun && !f.watch {
		fmt.Fprintf(a.Stdout, "Follow it with: cmkrotate watch %s\n", arn)
		return nil
	}
	fmt.Fprintln(a.Stdout)
	p, err := a.follow(ctx, api, arn)
	if err != nil {
		return err
	}
	if dryRun && p.Status == statusSucceeded {
		fmt.Fprintln(a.Stdout)
		fmt.Fprint(a.Stdout, RenderPlan(p))
	}
	return outcomeError(p)
}

// requestDocument is the execution input as the operator gave it: a file, stdin, or the flags.
func (a *App) requestDocument(f startFlags, set map[string]bool) (raw []byte, fromFlags bool, err error) {
	if set["input"] {
		for _, name := range requestFlagNames {
			if set[name] {
				return nil, false, usageErrorf("--input cannot be combined with --%s: the file is the whole input", name)
			}
		}
		raw, err := a.readInput(f.input)
		return raw, false, err
	}
	doc := map[string]any{}
	if len(f.workspaces) > 0 {
		doc["workspace_ids"] = []string(f.workspaces)
	}
	if set["key-arn"] {
		doc["key_arn"] = f.keyARN
	}
	if f.alias != "" {
		doc["key_alias"] = f.alias
	}
	if len(f.useCases) > 0 {
		doc["use_cases"] = []string(f.useCases)
	}
	if f.noReuse {
		doc["reuse_key_for_cluster_volumes"] = false
	}
	raw, err = json.Marshal(doc)
	if err != nil {
		return nil, false, fmt.Errorf("encode the input: %w", err)
	}
	return raw, true, nil
}

// maxInputBytes is the Step Functions payload quota: a larger input could never start.
const maxInputBytes = 256 * 1024

func (a *App) readInput(path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = a.Stdin
	} else {
		file, err := os.Open(path)
		if err != nil {
			return nil, usageErrorf("--input: %v", err)
		}
		defer file.Close()
		r = file
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read --input %s: %w", path, err)
	}
	if len(raw) > maxInputBytes {
		return nil, &invalidInputError{problems: []string{fmt.Sprintf("the input is larger than the %d bytes Step Functions accepts", maxInputBytes)}}
	}
	return raw, nil
}

// checkRequest runs the offline validation the Validate task starts with: rotation.ParseRequest,
// then the key ARN's form. Every problem is returned at once, named after the flag that set it when
// the input came from flags.
func checkRequest(raw []byte, fromFlags bool) (rotation.Request, error) {
	req, err := rotation.ParseRequest(raw)
	var problems []string
	if err != nil {
		problems = append(problems, problemsOf(err)...)
	}
	keyARN := req.KeyARN
	if err != nil {
		// A refused request comes back empty, but the key ARN's form is still worth reporting.
		var doc struct {
			KeyARN any `json:"key_arn"`
		}
		if json.Unmarshal(raw, &doc) == nil {
			keyARN, _ = doc.KeyARN.(string)
		}
	}
	if strings.TrimSpace(keyARN) != "" {
		if _, err := kmscheck.ParseKeyARN(strings.TrimSpace(keyARN)); err != nil {
			problems = append(problems, problemsOf(err)...)
		}
	}
	if len(problems) == 0 {
		return req, nil
	}
	if fromFlags {
		for i, p := range problems {
			problems[i] = flagNames.Replace(p)
		}
	}
	return rotation.Request{}, &invalidInputError{problems: problems}
}

// problemsOf splits a validation error into its problems: ParseRequest joins them with "; ".
func problemsOf(err error) []string {
	var invalid *taskerr.InvalidInput
	if !errors.As(err, &invalid) {
		return []string{err.Error()}
	}
	msg := strings.TrimPrefix(invalid.Reason, "input is not valid: ")
	return strings.Split(msg, "; ")
}

// flagNames renames input fields to the flags that set them, for problems with a flag-built input.
var flagNames = strings.NewReplacer(
	"workspace_ids", "--workspace",
	"key_arn", "--key-arn",
	"key_alias", "--alias",
	"use_cases", "--use-cases",
	"reuse_key_for_cluster_volumes", "--no-reuse-key-for-cluster-volumes",
)

// executionName names an operator's execution: when, and a hash of the input. Naming it here rather
// than leaving it to Step Functions makes an SDK retry of StartExecution idempotent (same name and
// input returns the running execution instead of starting a second one).
func executionName(dryRun bool, now time.Time, input []byte) string {
	sum := sha256.Sum256(input)
	prefix := "cmkrotate-"
	if dryRun {
		prefix = "cmkrotate-plan-"
	}
	return prefix + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(sum[:4])
}

func startExecution(ctx context.Context, api StartAPI, machine, name, input string) (string, error) {
	out, err := api.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(machine), Name: aws.String(name), Input: aws.String(input),
	}, inRegionOf(machine))
	var exists *types.ExecutionAlreadyExists
	var noMachine *types.StateMachineDoesNotExist
	var badName *types.InvalidName
	switch {
	case err == nil:
		return deref(out.ExecutionArn), nil
	case errors.As(err, &exists):
		return "", fmt.Errorf("an execution named %q already exists (names are unique for 90 days); choose another --name: %w", name, err)
	case errors.As(err, &noMachine):
		return "", fmt.Errorf("state machine %s does not exist: check --state-machine or %s, and AWS_PROFILE: %w", machine, envStateMachine, err)
	case errors.As(err, &badName):
		return "", &usageError{msg: fmt.Sprintf("--name %q is not a valid execution name (1-80 characters, no spaces or any of <>{}[]?*\"#%%\\^|~`$&,;:/)", name)}
	}
	return "", fmt.Errorf("start execution on %s: %w", machine, err)
}
