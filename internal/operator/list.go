package operator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// list prints the state machine's recent executions, newest first.
func (a *App) list(ctx context.Context, args []string) error {
	fs := newFlagSet("list")
	maxN := fs.Int("max", 20, "")
	status := fs.String("status", "", "")
	sm := fs.String("state-machine", "", "")
	positional, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageErrorf("unexpected argument %q", positional[0])
	}
	if *maxN < 1 || *maxN > 1000 {
		return usageErrorf("--max must be between 1 and 1000, got %d", *maxN)
	}
	filter := types.ExecutionStatus(strings.ToUpper(strings.TrimSpace(*status)))
	if filter != "" && !slices.Contains(filter.Values(), filter) {
		return usageErrorf("--status %q is not one of %s", *status, strings.Join(statusNames(), ", "))
	}
	machine, err := a.requireStateMachine(*sm)
	if err != nil {
		return err
	}
	api, err := a.client(ctx)
	if err != nil {
		return err
	}
	rows, err := listExecutions(ctx, api, machine, filter, *maxN)
	if err != nil {
		return err
	}
	fmt.Fprint(a.Stdout, RenderList(rows, a.Now()))
	return nil
}

func statusNames() []string {
	var names []string
	for _, s := range types.ExecutionStatus("").Values() {
		names = append(names, string(s))
	}
	return names
}

// ListRow is one execution in the list.
type ListRow struct {
	Progress
	// Outcome summarises how it ended (or where it is).
	Outcome string
}

func listExecutions(ctx context.Context, api ListingAPI, machine string, filter types.ExecutionStatus, maxN int) ([]ListRow, error) {
	var items []types.ExecutionListItem
	var token *string
	for len(items) < maxN {
		out, err := api.ListExecutions(ctx, &sfn.ListExecutionsInput{
			StateMachineArn: aws.String(machine), StatusFilter: filter,
			MaxResults: int32(min(maxN-len(items), 1000)), NextToken: token,
		}, inRegionOf(machine))
		if err != nil {
			var noMachine *types.StateMachineDoesNotExist
			if errors.As(err, &noMachine) {
				return nil, fmt.Errorf("state machine %s does not exist: check --state-machine or %s, and AWS_PROFILE: %w", machine, envStateMachine, err)
			}
			return nil, fmt.Errorf("list executions of %s: %w", machine, err)
		}
		items = append(items, out.Executions...)
		if out.NextToken == nil {
			break
		}
		token = out.NextToken
	}
	if len(items) > maxN {
		items = items[:maxN]
	}
	// Step Functions lists newest first; sorting again keeps that true across pages.
	slices.SortStableFunc(items, func(x, y types.ExecutionListItem) int {
		return aws.ToTime(y.StartDate).Compare(aws.ToTime(x.StartDate))
	})

	rows := make([]ListRow, 0, len(items))
	for _, item := range items {
		arn := deref(item.ExecutionArn)
		out, err := api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: item.ExecutionArn}, inRegionOf(arn))
		if err != nil {
			return nil, fmt.Errorf("describe execution %s: %w", arn, err)
		}
		p := Analyze(snapshotOf(out), nil)
		if p.Closed() && p.Status != statusSucceeded {
			// A failed execution has no output; its results are in the last states of its history.
			results, err := resultsFromTail(ctx, api, arn)
			if err != nil {
				return nil, err
			}
			p.Results = results
		}
		if !p.Closed() {
			if p.Top, p.WaitingUntil, err = waitFromTail(ctx, api, arn); err != nil {
				return nil, err
			}
		}
		rows = append(rows, ListRow{Progress: p, Outcome: outcomeSummary(p)})
	}
	return rows, nil
}

// waitFromTail tells whether a running execution waits for an approval or a maintenance window, and
// until when: its last state entered is then AwaitApproval or WaitForWindow, a few events from the end.
func waitFromTail(ctx context.Context, api HistoryAPI, arn string) (state, until string, err error) {
	out, err := api.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{
		ExecutionArn: aws.String(arn), ReverseOrder: true, MaxResults: 10, IncludeExecutionData: aws.Bool(true),
	}, inRegionOf(arn))
	if err != nil {
		return "", "", fmt.Errorf("read history of %s: %w", arn, err)
	}
	for _, ev := range out.Events {
		if d := ev.StateEnteredEventDetails; d != nil {
			name := deref(d.Name)
			return name, waitingUntil(name, deref(d.Input), ev.Timestamp), nil
		}
	}
	return "", "", nil
}

// resultsFromTail finds the per-workspace results in the last events of a history: Summarize and
// the Map's exit are a dozen events from the end.
func resultsFromTail(ctx context.Context, api HistoryAPI, arn string) ([]Result, error) {
	out, err := api.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{
		ExecutionArn: aws.String(arn), ReverseOrder: true, MaxResults: 40, IncludeExecutionData: aws.Bool(true),
	}, inRegionOf(arn))
	if err != nil {
		return nil, fmt.Errorf("read history of %s: %w", arn, err)
	}
	for _, ev := range out.Events {
		if ev.StateExitedEventDetails == nil {
			continue
		}
		if results, _, ok := resultsOf(deref(ev.StateExitedEventDetails.Output)); ok {
			return results, nil
		}
	}
	return nil, nil
}

// outcomeSummary is "2 ROTATED, 1 UNCHANGED", the failure, or where a running execution is.
func outcomeSummary(p Progress) string {
	var parts []string
	for _, outcome := range []string{rotation.OutcomeRotated, rotation.OutcomeRotatedComputeDown, rotation.OutcomeUnchanged, rotation.OutcomePlanned, rotation.OutcomeFailed} {
		n := 0
		for _, r := range p.Results {
			if r.Outcome == outcome {
				n++
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, outcome))
		}
	}
	s := strings.Join(parts, ", ")
	switch {
	case !p.Closed() && p.WaitingUntil != "":
		s = phaseOf(p.Top) + " until " + p.WaitingUntil
	case !p.Closed():
		s = "running"
	case p.Status != statusSucceeded && p.Error != "" && s != "":
		s += " (" + p.Error + ")"
	case p.Status != statusSucceeded && p.Error != "":
		s = p.Error
		if msg := errorMessage(p.Cause); msg != "" {
			s += ": " + msg
		}
	case s == "":
		s = "-"
	}
	if p.DryRun {
		s = "dry run: " + s
	}
	return truncate(s, 160)
}

// RenderList is the table of executions.
func RenderList(rows []ListRow, now time.Time) string {
	if len(rows) == 0 {
		return "No executions.\n"
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tSTARTED\tDURATION\tWORKSPACES\tOUTCOME")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Status, formatTime(r.StartDate),
			formatDuration(r.Elapsed(now)), workspaceList(r.WorkspaceIDs), r.Outcome)
	}
	_ = tw.Flush()
	return trimLineEnds(b.String())
}

func workspaceList(ids []string) string {
	const shown = 3
	switch {
	case len(ids) == 0:
		return "-"
	case len(ids) > shown:
		return strings.Join(ids[:shown], ",") + fmt.Sprintf(" +%d", len(ids)-shown)
	}
	return strings.Join(ids, ",")
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
