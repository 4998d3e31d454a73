package operator

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// The renderers are pure: a Progress (and the time, for a running execution) in, text out.

const labelWidth = 12

func label(b *strings.Builder, name, value string) {
	if value == "" {
		b.WriteString(name + "\n")
		return
	}
	fmt.Fprintf(b, "%-*s%s\n", labelWidth, name, value)
}

// RenderStatus is the full display of an execution: the status snapshot, and the refreshed block
// when following on a terminal.
func RenderStatus(p Progress, now time.Time) string {
	return RenderStatusWithChildren(p, Children{}, now)
}

// RenderStatusWithChildren is the status snapshot of a request with its child executions: a row
// per workspace replaces the request's own line for that workspace's RotateWorkspaces iteration,
// which only says that a child runs.
func RenderStatusWithChildren(p Progress, c Children, now time.Time) string {
	var b strings.Builder
	renderHeader(&b, p, now)
	if len(c.Rows) > 0 {
		p.Iterations = slices.DeleteFunc(slices.Clone(p.Iterations), func(it Iteration) bool { return it.Map == childrenMap })
	}
	if !p.Closed() {
		renderActivity(&b, p)
	} else {
		renderEnd(&b, p)
	}
	renderChildren(&b, c)
	label(&b, "Console", ConsoleURL(p.ExecutionArn))
	return b.String()
}

// renderChildren is one line per workspace of a request, sorted by workspace id, and a count line
// above: at most rotation.MaxWorkspacesPerRequest rows, whatever the histories hold.
func renderChildren(b *strings.Builder, c Children) {
	switch {
	case c.None != "":
		label(b, "Children", c.None)
		return
	case len(c.Rows) == 0:
		return
	}
	counts := map[string]int{}
	var order []string
	for _, r := range c.Rows {
		if counts[r.Status] == 0 {
			order = append(order, r.Status)
		}
		counts[r.Status]++
	}
	slices.SortFunc(order, func(x, y string) int { return childStatusRank(x) - childStatusRank(y) })
	parts := make([]string, 0, len(order))
	for _, s := range order {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	summary := fmt.Sprintf("%d workspaces: %s", len(c.Rows), strings.Join(parts, ", "))
	if a, ok := parseStatesARN(c.StateMachine); ok {
		summary += " (state machine " + a.machine + ")"
	}
	label(b, "Children", summary)
	var tb bytes.Buffer
	tw := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  WORKSPACE\tNAME\tCHILD EXECUTION\tSTATUS\tSTATE\tOUTCOME\n")
	for _, r := range c.Rows {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", r.WorkspaceID, orDash(r.WorkspaceName), r.Name, r.Status, orDash(childStateText(r)), orDash(childOutcomeText(r)))
	}
	_ = tw.Flush()
	b.WriteString(trimLineEnds(tb.String()))
}

// childStatusRank orders the count line: what needs an operator first.
func childStatusRank(status string) int {
	for i, s := range []string{"FAILED", "TIMED_OUT", "ABORTED", childUnreadable, statusRunning, statusSucceeded, childNotStarted} {
		if s == status {
			return i
		}
	}
	return -1
}

func childStateText(r Child) string {
	s := r.State
	if s == "" {
		return ""
	}
	if ph := phaseOf(s); ph != "" && r.Status == statusRunning {
		s += " (" + ph + ")"
	}
	if r.Retrying != "" {
		s += "; retrying after " + r.Retrying
	}
	return s
}

func childOutcomeText(r Child) string {
	switch {
	case r.ReadError != nil && r.Status == childUnreadable:
		return "could not be read: " + errorCode(r.ReadError)
	case r.Outcome != "":
		s := r.Outcome
		if r.Patched != nil && *r.Patched {
			s += ", patched"
		} else if r.Patched != nil {
			s += ", not patched"
		}
		if r.OutcomeError != "" {
			s += ": " + r.OutcomeError
		}
		return s
	case r.Error != "":
		return r.Error
	}
	return ""
}

// RenderOutcome is what follows the progress lines once the execution has closed.
func RenderOutcome(p Progress) string {
	var b strings.Builder
	label(&b, "Execution", executionTitle(p))
	label(&b, "Status", statusText(p.Snapshot, time.Time{}))
	renderEnd(&b, p)
	label(&b, "Console", ConsoleURL(p.ExecutionArn))
	return b.String()
}

func executionTitle(p Progress) string {
	if p.DryRun {
		return p.Name + " (dry run)"
	}
	return p.Name
}

func renderHeader(b *strings.Builder, p Progress, now time.Time) {
	label(b, "Execution", executionTitle(p))
	label(b, "Status", statusText(p.Snapshot, now))
	if len(p.WorkspaceIDs) > 0 {
		label(b, "Workspaces", strings.Join(p.WorkspaceIDs, ", "))
	}
	if p.KeyARN != "" {
		label(b, "Key", p.KeyARN)
	}
}

func statusText(s Snapshot, now time.Time) string {
	started := ""
	if !s.StartDate.IsZero() {
		started = " (started " + formatTime(s.StartDate) + ")"
	}
	switch {
	case !s.Closed():
		return fmt.Sprintf("%s for %s%s", s.Status, formatDuration(s.Elapsed(now)), started)
	case s.Status == statusSucceeded:
		return fmt.Sprintf("%s in %s%s", s.Status, formatDuration(s.Elapsed(now)), started)
	}
	return fmt.Sprintf("%s after %s%s", s.Status, formatDuration(s.Elapsed(now)), started)
}

// renderActivity says where a running execution is, workspace by workspace inside the Map.
func renderActivity(b *strings.Builder, p Progress) {
	label(b, "State", orDash(topText(p)))
	for _, it := range p.Iterations {
		fmt.Fprintf(b, "  %s\n", iterationText(it))
		if c := computeSummary(it.Run, p.DryRun); c != "" && !it.Closed {
			fmt.Fprintf(b, "      %s\n", c)
		}
	}
}

// renderEnd says how a closed execution ended: the failure, then each workspace's outcome.
func renderEnd(b *strings.Builder, p Progress) {
	if p.Status != statusSucceeded {
		if p.Error != "" {
			label(b, "Error", p.Error)
		}
		if msg := errorMessage(p.Cause); msg != "" {
			label(b, "Cause", msg)
		}
	}
	if len(p.Results) == 0 {
		return
	}
	label(b, "Results", "")
	var tb bytes.Buffer
	tw := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', 0)
	for _, r := range p.Results {
		detail := ""
		switch {
		case r.Error != nil:
			detail = failureText(r.Error)
		case len(r.StillDown) > 0:
			detail = "still down: " + refList(r.StillDown, len(r.StillDown))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.WorkspaceID, orDash(r.WorkspaceName), r.Outcome, detail)
	}
	_ = tw.Flush()
	b.WriteString(trimLineEnds(tb.String()))
	// A workspace that failed after its compute was stopped is the one an operator must look at.
	for _, r := range p.Results {
		if !failedOutcome(r.Outcome) {
			continue
		}
		for _, it := range p.Iterations {
			if it.WorkspaceID == r.WorkspaceID && it.Run != nil && it.Run.Stop != nil {
				fmt.Fprintf(b, "  %s compute: %s\n", r.WorkspaceID, computeSummary(it.Run, false))
			}
		}
	}
}

// topText is the execution's state outside the Map iterations, with its phase; a Map state's phase
// is in its iterations.
func topText(p Progress) string {
	s := p.Top
	if s == "" {
		return ""
	}
	if ph := phaseOf(s); ph != "" && !p.TopIsMap {
		if p.WaitingUntil != "" {
			ph += " until " + p.WaitingUntil
		}
		s += " (" + ph + ")"
	}
	if p.TopFailure != nil {
		s += "; retrying after " + failureText(p.TopFailure)
	}
	return s
}

// failedOutcome is an iteration outcome that needs an operator.
func failedOutcome(outcome string) bool {
	return outcome == rotation.OutcomeFailed || outcome == rotation.OutcomeRotatedComputeDown
}

// iterationText is one workspace of the Map: which, and where it is.
func iterationText(it Iteration) string {
	who := fmt.Sprintf("[%d]", it.Index)
	if it.WorkspaceID != "" {
		who += " " + it.WorkspaceID
	}
	if it.WorkspaceName != "" {
		who += " " + it.WorkspaceName
	}
	switch {
	case it.Closed && it.Failed:
		return who + ": iteration failed"
	case it.Closed && it.Outcome != "" && it.OutcomeError != nil:
		return who + ": " + it.Outcome + " (" + it.OutcomeError.Error + ")"
	case it.Closed && it.Outcome != "":
		return who + ": " + it.Outcome
	case it.Closed:
		return who + ": done"
	}
	where := it.Current()
	if where == "" {
		return who + ": starting"
	}
	if it.ChildState != "" {
		return who + ": " + childText(it)
	}
	switch ph := phaseOf(where); {
	case ph == phaseQuietWindow && it.Run != nil && it.Run.QuietWindowSeconds > 0:
		// Databricks asks for no cluster start after a storage key is added: the wait is deliberate.
		where += fmt.Sprintf(" (%s of %s after adding the storage key)", ph, formatDuration(time.Duration(it.Run.QuietWindowSeconds)*time.Second))
	case ph != "":
		where += " (" + ph + ")"
	}
	if it.Retrying != nil {
		where += "; retrying after " + failureText(it.Retrying)
	}
	if it.ChildReadError != nil {
		where += "; child not read: " + errorCode(it.ChildReadError)
	}
	return who + ": " + where
}

// progressLine is one line of the plain display, keyed by what it describes so that only the lines
// that changed are printed again.
type progressLine struct {
	key, text string
}

// ProgressLines is the plain (not a terminal) display: one line for the execution and one per
// workspace iteration.
func ProgressLines(p Progress) []progressLine {
	top := p.Status
	if t := topText(p); t != "" {
		top += " " + t
	}
	lines := []progressLine{{key: "execution", text: top}}
	for _, it := range p.Iterations {
		text := iterationText(it)
		if c := computeSummary(it.Run, p.DryRun); c != "" && !it.Closed {
			text += "; " + c
		}
		lines = append(lines, progressLine{key: fmt.Sprintf("%s[%d]", it.Map, it.Index), text: text})
	}
	return lines
}

// childText says where an iteration's child execution is, as watch reads it.
func childText(it Iteration) string {
	where := "child at " + it.ChildState
	if ph := phaseOf(it.ChildState); ph != "" {
		where += " (" + ph + ")"
	}
	if it.ChildRetrying != "" {
		where += "; retrying after " + it.ChildRetrying
	}
	return where
}

// computeSummary says what the iteration has done to the workspace's compute, from its latest run.
func computeSummary(r *RunView, dryRun bool) string {
	if r == nil || r.Inventory == nil {
		return ""
	}
	counts := inventoryCounts(r.Inventory)
	if counts == "" {
		return "no running compute"
	}
	switch {
	case dryRun:
		return "would stop " + counts
	case r.RestartStatus != nil && r.RestartStatus.Done:
		s := "restart finished"
		if r.Restart != nil {
			s = "restarted " + orNone(countsText(r.Restart.Started))
			if n := max(r.Restart.NotRestartableCount, len(r.Restart.NotRestartable)); n > 0 {
				s += fmt.Sprintf("; %d not restartable", n)
			}
		}
		if n := max(r.RestartStatus.StillDownCount, len(r.RestartStatus.StillDown)); n > 0 {
			s += fmt.Sprintf("; still down %d: %s", n, refList(r.RestartStatus.StillDown, n))
		}
		return s
	case r.Restart != nil:
		s := "restarting " + orNone(countsText(r.Restart.Started))
		if len(r.Restart.Failed) > 0 {
			s += "; failed to start: " + refList(r.Restart.Failed, len(r.Restart.Failed))
		}
		if r.RestartStatus != nil {
			if n := max(r.RestartStatus.PendingCount, len(r.RestartStatus.Pending)); n > 0 {
				s += fmt.Sprintf("; waiting on %d: %s", n, refList(r.RestartStatus.Pending, n))
			}
		}
		return s
	case r.StopStatus != nil && r.StopStatus.Done:
		s := "stopped " + counts
		if len(r.StopStatus.LateStopped) > 0 {
			s += "; also stopped, started after the inventory: " + refList(r.StopStatus.LateStopped, len(r.StopStatus.LateStopped))
		}
		if len(r.StopStatus.StoppedAgain) > 0 {
			s += "; stopped again, started by someone mid-rotation: " + refList(r.StopStatus.StoppedAgain, len(r.StopStatus.StoppedAgain))
		}
		return s
	case r.Stop != nil:
		s := "stopping " + counts
		if r.StopStatus != nil {
			if n := max(r.StopStatus.PendingCount, len(r.StopStatus.Pending)); n > 0 {
				s += fmt.Sprintf("; waiting on %d: %s", n, refList(r.StopStatus.Pending, n))
			}
		}
		return s
	}
	return "to stop: " + counts
}

// inventoryCounts is "2 clusters, 1 pool": the kinds with something running, or "" for none. A
// large inventory lives in S3 and only its counts travel in the state.
func inventoryCounts(inv *rotation.Inventory) string {
	c := inv.Counts
	if c.Total() == 0 {
		c = rotation.CountOf(*inv)
	}
	return countsText(c)
}

func countsText(c rotation.Counts) string {
	var parts []string
	for _, k := range []struct {
		n          int
		one, other string
	}{
		{c.Clusters, "cluster", "clusters"},
		{c.Pools, "pool", "pools"},
		{c.Warehouses, "warehouse", "warehouses"},
		{c.Pipelines, "pipeline", "pipelines"},
	} {
		switch {
		case k.n == 1:
			parts = append(parts, "1 "+k.one)
		case k.n > 1:
			parts = append(parts, fmt.Sprintf("%d %s", k.n, k.other))
		}
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// refList names at most three of the resources and counts the rest of total (the state names only
// the first ones of a long list; its counts are complete).
func refList(refs []rotation.ResourceRef, total int) string {
	const shown = 3
	var parts []string
	for i, r := range refs {
		if i == shown {
			break
		}
		s := r.Kind + " " + firstNonEmpty(r.Name, r.ID)
		if detail := firstNonEmpty(r.State, r.Reason); detail != "" {
			s += " (" + detail + ")"
		}
		parts = append(parts, s)
	}
	if rest := total - len(parts); rest > 0 {
		parts = append(parts, fmt.Sprintf("+%d more", rest))
	}
	return strings.Join(parts, ", ")
}

func failureText(e *rotation.StepError) string {
	msg := errorMessage(e.Cause)
	switch {
	case e.Error == "":
		return msg
	case msg == "":
		return e.Error
	}
	return e.Error + ": " + msg
}

// RenderPlan is what a dry run found: per workspace, what a rotation would stop and bring back.
func RenderPlan(p Progress) string {
	var b strings.Builder
	if p.KeyARN != "" {
		label(&b, "Key", p.KeyARN)
	}
	keyConfig := "a new key configuration would be registered"
	if p.ExistingKeyConfigID != "" {
		keyConfig = "would reuse " + p.ExistingKeyConfigID
	}
	label(&b, "Key config", keyConfig)
	if len(p.Results) == 0 {
		b.WriteString("\nThe dry run produced no per-workspace plan.\n")
	}
	for _, r := range p.Results {
		b.WriteString("\n")
		who := r.WorkspaceID
		if r.WorkspaceName != "" {
			who += " " + r.WorkspaceName
		}
		switch {
		case r.Outcome != rotation.OutcomePlanned || r.Plan == nil:
			detail := "no plan"
			if r.Error != nil {
				detail = failureText(r.Error)
			}
			fmt.Fprintf(&b, "%s: %s: %s\n", who, orDash(r.Outcome), detail)
			continue
		case r.Plan.Inventory == nil:
			fmt.Fprintf(&b, "%s: would stop nothing\n", who)
		case inventoryCounts(r.Plan.Inventory) == "":
			fmt.Fprintf(&b, "%s: would stop nothing: no classic compute is running\n", who)
		default:
			fmt.Fprintf(&b, "%s: would stop %s\n", who, inventoryCounts(r.Plan.Inventory))
			b.WriteString(inventoryTable(r.Plan.Inventory))
			if r.Plan.Inventory.Ref != "" && rotation.CountOf(*r.Plan.Inventory).Total() == 0 {
				fmt.Fprintf(&b, "  (too large for the execution state: the full list is in %s)\n", r.Plan.Inventory.Ref)
			}
		}
		if r.Plan.QuietWindowSeconds > 0 {
			fmt.Fprintf(&b, "  then a quiet window of %s (storage key added) before anything restarts\n",
				formatDuration(time.Duration(r.Plan.QuietWindowSeconds)*time.Second))
		}
		if r.Plan.Message != "" {
			fmt.Fprintf(&b, "  %s\n", r.Plan.Message)
		}
	}
	return b.String()
}

func inventoryTable(inv *rotation.Inventory) string {
	var tb bytes.Buffer
	tw := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', 0)
	for _, c := range inv.Clusters {
		after := "restarted afterwards"
		if !c.Restartable() {
			after = fmt.Sprintf("not restarted (%s cluster: its owner starts it)", c.Source)
		}
		fmt.Fprintf(tw, "  cluster\t%s\t%s\t%s\n", orDash(c.Name), c.ID, after)
	}
	for _, p := range inv.Pools {
		fmt.Fprintf(tw, "  pool\t%s\t%s\t%s\n", orDash(p.Name), p.ID, "drained; its settings restored afterwards")
	}
	for _, w := range inv.Warehouses {
		fmt.Fprintf(tw, "  warehouse\t%s\t%s\t%s\n", orDash(w.Name), w.ID, "restarted afterwards")
	}
	for _, p := range inv.Pipelines {
		after := "not restarted (triggered: restarting would run an update)"
		if p.Continuous {
			after = "restarted afterwards (continuous)"
		}
		fmt.Fprintf(tw, "  pipeline\t%s\t%s\t%s\n", orDash(p.Name), p.ID, after)
	}
	_ = tw.Flush()
	return trimLineEnds(tb.String())
}

// formatDuration is 12s, 4m05s or 1h02m03s.
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		d = 0
	}
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// trimLineEnds drops the padding tabwriter leaves after the last column.
func trimLineEnds(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}
