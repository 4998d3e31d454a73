package operator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
)

// ErrExecutionNotFound is the cause of a status or watch on an execution Step Functions does not know.
var ErrExecutionNotFound = errors.New("execution not found")

type notFoundError struct {
	arn string
	err error
}

func (e *notFoundError) Error() string {
	account := ""
	if a, ok := parseStatesARN(e.arn); ok {
		account = " " + a.account
	}
	return fmt.Sprintf("execution %s does not exist: check the ARN, and that the credentials (AWS_PROFILE) are for account%s", e.arn, account)
}

func (e *notFoundError) Unwrap() error        { return e.err }
func (e *notFoundError) Is(target error) bool { return target == ErrExecutionNotFound }

// notSucceededError says that an execution ended without doing what was asked; the details are
// already on stdout.
type notSucceededError struct{ p Progress }

func (e *notSucceededError) Error() string {
	p := e.p
	if p.Status != statusSucceeded {
		s := fmt.Sprintf("execution %s %s", p.Name, p.Status)
		if p.Error != "" {
			s += ": " + p.Error
		}
		if msg := errorMessage(p.Cause); msg != "" {
			s += ": " + msg
		}
		return s
	}
	var failed []string
	for _, r := range p.Results {
		if failedOutcome(r.Outcome) {
			failed = append(failed, r.WorkspaceID+" "+r.Outcome)
		}
	}
	return fmt.Sprintf("execution %s SUCCEEDED but not every workspace did: %s", p.Name, strings.Join(failed, ", "))
}

// outcomeError is nil for an execution that is running or did everything it was asked to.
func outcomeError(p Progress) error {
	if !p.Closed() {
		return nil
	}
	if p.Status != statusSucceeded {
		return &notSucceededError{p}
	}
	for _, r := range p.Results {
		if failedOutcome(r.Outcome) {
			return &notSucceededError{p}
		}
	}
	return nil
}

// follower keeps an execution's history between polls and fetches only the events that are new.
type follower struct {
	api     WatchAPI
	arn     string
	history []types.HistoryEvent
	lastID  int64
}

func (f *follower) poll(ctx context.Context) (Progress, error) {
	// Describe first: a history read after it holds at least every event up to the status it saw.
	out, err := f.api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(f.arn)}, inRegionOf(f.arn))
	if err != nil {
		var notFound *types.ExecutionDoesNotExist
		if errors.As(err, &notFound) {
			return Progress{}, &notFoundError{arn: f.arn, err: err}
		}
		return Progress{}, fmt.Errorf("describe execution %s: %w", f.arn, err)
	}
	if err := f.fetchNew(ctx); err != nil {
		return Progress{}, err
	}
	return Analyze(snapshotOf(out), f.history), nil
}

// fetchNew reads the history newest first and stops at the first event it already has: a long
// rotation has thousands of events (every wait loop adds some), and a poll needs only the tail.
func (f *follower) fetchNew(ctx context.Context) error {
	page := int32(100)
	if f.lastID == 0 {
		page = 1000
	}
	var fresh []types.HistoryEvent
	var token *string
	for {
		out, err := f.api.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{
			ExecutionArn: aws.String(f.arn), ReverseOrder: true, MaxResults: page, NextToken: token,
			IncludeExecutionData: aws.Bool(true),
		}, inRegionOf(f.arn))
		if err != nil {
			return fmt.Errorf("read history of %s: %w", f.arn, err)
		}
		caughtUp := false
		for _, ev := range out.Events {
			if ev.Id <= f.lastID {
				caughtUp = true
				break
			}
			fresh = append(fresh, ev)
		}
		if caughtUp || out.NextToken == nil {
			break
		}
		token = out.NextToken
	}
	slices.Reverse(fresh)
	f.history = append(f.history, fresh...)
	if n := len(f.history); n > 0 {
		f.lastID = f.history[n-1].Id
	}
	return nil
}

// display shows a followed execution: a block redrawn in place on a terminal, otherwise one line
// per change, which is what a CI log wants.
type display struct {
	w        io.Writer
	terminal bool
	width    int
	printed  map[string]string
	drawn    int // lines of the block on screen
}

func newDisplay(w io.Writer, terminal bool, width int) *display {
	return &display{w: w, terminal: terminal, width: width, printed: map[string]string{}}
}

// update shows p and reports whether something changed since the last update.
func (d *display) update(p Progress, now time.Time) bool {
	changed := false
	for _, l := range ProgressLines(p) {
		if d.printed[l.key] == l.text {
			continue
		}
		changed = true
		d.printed[l.key] = l.text
		if !d.terminal {
			fmt.Fprintf(d.w, "+%s %s\n", formatDuration(p.Elapsed(now)), l.text)
		}
	}
	if d.terminal {
		d.redraw(RenderStatus(p, now))
	}
	return changed
}

// finish shows how the execution ended.
func (d *display) finish(p Progress, now time.Time) {
	if d.terminal {
		d.redraw(RenderStatus(p, now))
		return
	}
	fmt.Fprint(d.w, RenderOutcome(p))
}

func (d *display) redraw(block string) {
	if d.drawn > 0 {
		// Up to the first line of the previous block, then clear to the end of the screen.
		fmt.Fprintf(d.w, "\x1b[%dA\x1b[J", d.drawn)
	}
	lines := strings.Split(strings.TrimSuffix(block, "\n"), "\n")
	for _, l := range lines {
		// A wrapped line would make the next redraw climb too few lines.
		if d.width > 0 && utf8.RuneCountInString(l) > d.width {
			l = string([]rune(l)[:d.width-1]) + "…"
		}
		fmt.Fprintln(d.w, l)
	}
	d.drawn = len(lines)
}

// maxPollFailures is how many polls in a row may fail (network, throttling past the SDK's own
// retries) before watching gives up; the execution itself is not affected either way.
const maxPollFailures = 5

// follow polls the execution until it closes, backing off from MinPoll to MaxPoll while nothing
// changes.
func (a *App) follow(ctx context.Context, api WatchAPI, arn string) (Progress, error) {
	return a.followWithChildren(ctx, api, arn, strings.TrimSpace(a.Env(envChildState)))
}

// followWithChildren is follow for a request whose children's state machine may be given apart
// (--workspace-state-machine): each poll also reads where every running child is.
func (a *App) followWithChildren(ctx context.Context, api WatchAPI, arn, childMachine string) (Progress, error) {
	f := &follower{api: api, arn: arn}
	d := newDisplay(a.Stdout, a.Terminal(a.Stdout), a.width())
	wait := a.MinPoll
	var last Progress
	failures := 0
	for {
		p, err := f.poll(ctx)
		switch {
		case err != nil && (last.Status == "" || !transient(err)):
			return last, err
		case err != nil:
			failures++
			if failures >= maxPollFailures {
				return last, err
			}
			fmt.Fprintf(a.Stderr, "cmkrotate: reading the execution failed (%d of %d), trying again: %v\n", failures, maxPollFailures, err)
		default:
			failures = 0
			if !p.Closed() {
				followOpenChildren(ctx, api, &p, childMachine)
			}
			last = p
			if p.Closed() {
				d.finish(p, a.Now())
				return p, nil
			}
			if d.update(p, a.Now()) {
				wait = a.MinPoll
			} else {
				wait = min(wait*2, a.MaxPoll)
			}
		}
		if err := a.Sleep(ctx, wait); err != nil {
			return last, fmt.Errorf("stopped watching (the execution goes on: %s): %w", ConsoleURL(arn), err)
		}
	}
}

// transient reports whether a failed poll is worth repeating: not when the request itself is wrong.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrExecutionNotFound) {
		return false
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorFault() == smithy.FaultClient {
		return strings.Contains(apiErr.ErrorCode(), "Throttl")
	}
	return true
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
