// Package operator is the cmkrotate command: an operator's way to start a rotation (or a dry run)
// on the rotation state machine, follow it, and read how it ended, without the console.
//
// Input is validated offline with the same rotation.ParseRequest the Validate task runs first, so an
// invalid input is refused before anything starts. Progress is read from DescribeExecution and the
// execution history alone: the state names of statemachine/rotation.asl.json, the workspace runs
// its Map iterations carry, and the results its output holds.
package operator

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // includes a followed execution that did not succeed
	ExitUsage   = 2 // the command line or the input is wrong; nothing was started
)

const envStateMachine = "ROTATOR_STATE_MACHINE_ARN"

// NewSFN builds the Step Functions client; it is called only once a command needs AWS, so that
// --help, usage errors and invalid input never touch credentials.
type NewSFN func(ctx context.Context) (*sfn.Client, error)

// App is the command with its surroundings. Run fills it with the real ones; the tests set shorter
// polls and their own streams.
type App struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	// Env looks up an environment variable ("" when unset).
	Env    func(string) string
	NewSFN NewSFN
	// NewKeySources builds the Databricks account and KMS clients of cmkrotate keys.
	NewKeySources NewKeySources
	Now           func() time.Time
	Sleep         func(ctx context.Context, d time.Duration) error
	// MinPoll and MaxPoll bound the watch backoff.
	MinPoll, MaxPoll time.Duration
	// Terminal reports whether w is an interactive terminal, where the display redraws in place.
	Terminal func(w io.Writer) bool
}

// Run runs the command line args (without the program name) and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string, newSFN NewSFN, newKeys ...NewKeySources) int {
	a := &App{
		Stdout: stdout, Stderr: stderr, Stdin: os.Stdin, Env: env, NewSFN: newSFN,
		Now: time.Now, Sleep: sleepContext, MinPoll: time.Second, MaxPoll: 5 * time.Second,
		Terminal: isTerminal,
	}
	if len(newKeys) > 0 {
		a.NewKeySources = newKeys[0]
	}
	return a.Run(ctx, args)
}

// isTerminal is true for a character device that is not /dev/null. golang.org/x/term is not a
// requirement of this module, so this is the portable approximation of isatty.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	if err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(info, null)
}

type command struct {
	name, help string
	run        func(a *App, ctx context.Context, args []string) error
}

var commands = []command{
	{"start", startHelp, func(a *App, ctx context.Context, args []string) error { return a.start(ctx, args, false) }},
	{"plan", planHelp, func(a *App, ctx context.Context, args []string) error { return a.start(ctx, args, true) }},
	{"status", statusHelp, (*App).status},
	{"watch", watchHelp, (*App).watch},
	{"list", listHelp, (*App).list},
	{"rollback", rollbackHelp, (*App).rollback},
	{"keys", keysHelp, (*App).keys},
	{"approve", approveHelp, (*App).approve},
	{"reject", rejectHelp, (*App).reject},
}

// Run runs args and returns the exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.Stderr, mainHelp)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			for _, c := range commands {
				if c.name == args[1] {
					fmt.Fprint(a.Stdout, c.help)
					return ExitOK
				}
			}
		}
		fmt.Fprint(a.Stdout, mainHelp)
		return ExitOK
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(a, ctx, args[1:])
		return a.exit(c, err)
	}
	fmt.Fprintf(a.Stderr, "cmkrotate: unknown command %q\n\n%s", name, mainHelp)
	return ExitUsage
}

func (a *App) exit(c command, err error) int {
	var usage *usageError
	var invalid *invalidInputError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(a.Stdout, c.help)
		return ExitOK
	case errors.As(err, &usage):
		fmt.Fprintf(a.Stderr, "cmkrotate %s: %s\nRun 'cmkrotate %s --help' for usage.\n", c.name, usage.msg, c.name)
		return ExitUsage
	case errors.As(err, &invalid):
		fmt.Fprintf(a.Stderr, "cmkrotate %s: the input is not valid; nothing was started:\n", c.name)
		for _, p := range invalid.problems {
			fmt.Fprintf(a.Stderr, "  - %s\n", p)
		}
		return ExitUsage
	}
	fmt.Fprintf(a.Stderr, "cmkrotate %s: %v\n", c.name, err)
	return ExitFailure
}

// usageError is a wrong command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// newFlagSet is a flag set that reports through the returned error instead of printing: Run
// prints the command's own help.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses flags wherever they are among the positional arguments (cmkrotate watch ARN
// --state-machine X), and returns the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{msg: err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// stateMachine is the state machine ARN from the flag or the environment, "" when neither is set.
func (a *App) stateMachine(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return strings.TrimSpace(a.Env(envStateMachine))
}

func (a *App) requireStateMachine(flagValue string) (string, error) {
	arn := a.stateMachine(flagValue)
	if arn == "" {
		return "", usageErrorf("no state machine: give --state-machine ARN or set %s", envStateMachine)
	}
	if _, err := stateMachineARN(arn); err != nil {
		return "", err
	}
	return arn, nil
}

func (a *App) client(ctx context.Context) (*sfn.Client, error) {
	c, err := a.NewSFN(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return c, nil
}

// width is the terminal width for the redrawn block (COLUMNS, else 120).
func (a *App) width() int {
	if n, err := strconv.Atoi(a.Env("COLUMNS")); err == nil && n > 20 {
		return n
	}
	return 120
}

// status prints one snapshot of an execution, and for a request each workspace's child execution.
func (a *App) status(ctx context.Context, args []string) error {
	var childMachine string
	api, arn, err := a.executionCommand(ctx, "status", args, a.childMachineFlag(&childMachine))
	if err != nil {
		return err
	}
	p, err := (&follower{api: api, arn: arn}).poll(ctx)
	if err != nil {
		return err
	}
	children := followChildren(ctx, api, p, childMachine)
	fmt.Fprint(a.Stdout, RenderStatusWithChildren(p, children, a.Now()))
	if err := outcomeError(p); err != nil {
		return err
	}
	return childReadError(children)
}

// watch follows an execution until it closes.
func (a *App) watch(ctx context.Context, args []string) error {
	var childMachine string
	api, arn, err := a.executionCommand(ctx, "watch", args, a.childMachineFlag(&childMachine))
	if err != nil {
		return err
	}
	p, err := a.followWithChildren(ctx, api, arn, childMachine)
	if err != nil {
		return err
	}
	return outcomeError(p)
}

// childMachineFlag is status's and watch's --workspace-state-machine, which defaults to
// ROTATOR_WORKSPACE_STATE_MACHINE_ARN: the children's state machine when the request's history does
// not name it.
func (a *App) childMachineFlag(machine *string) commandFlags {
	return func(fs *flag.FlagSet) func() error {
		f := fs.String("workspace-state-machine", "", "")
		return func() error {
			*machine = firstNonEmpty(*f, strings.TrimSpace(a.Env(envChildState)))
			if *machine == "" {
				return nil
			}
			if _, err := stateMachineARN(*machine); err != nil {
				return usageErrorf("--workspace-state-machine (or %s) %q is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)", envChildState, *machine)
			}
			return nil
		}
	}
}

// commandFlags adds a command's own flags; the check it returns runs once they are parsed, before
// any client is built.
type commandFlags func(fs *flag.FlagSet) (check func() error)

// executionCommand reads the command line of status and watch, EXECUTION [--state-machine ARN]
// and the command's own flags, and builds the client once it is valid.
func (a *App) executionCommand(ctx context.Context, name string, args []string, more commandFlags) (WatchAPI, string, error) {
	fs := newFlagSet(name)
	sm := fs.String("state-machine", "", "")
	check := func() error { return nil }
	if more != nil {
		check = more(fs)
	}
	positional, err := parseFlags(fs, args)
	if err != nil {
		return nil, "", err
	}
	if err := check(); err != nil {
		return nil, "", err
	}
	if len(positional) != 1 {
		return nil, "", usageErrorf("want one EXECUTION (an execution ARN, or an execution name with --state-machine), got %d arguments", len(positional))
	}
	arn, err := executionARN(positional[0], a.stateMachine(*sm))
	if err != nil {
		return nil, "", err
	}
	api, err := a.client(ctx)
	if err != nil {
		return nil, "", err
	}
	return api, arn, nil
}
