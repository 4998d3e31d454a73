package sandbox

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// visit is one pass through a state: from StateEntered to StateExited, or to the failure that
// ended the execution.
type visit struct {
	state     string
	stateType string
	index     int
	start     time.Time
	end       time.Time
	retries   int
	lastError string
	caught    bool
	failed    bool
	closed    bool
}

func (v *visit) outcome() string {
	switch {
	case v.failed:
		return "failed " + v.lastError + retriesSuffix(v.retries)
	case v.caught:
		return "caught " + v.lastError + retriesSuffix(v.retries)
	case v.retries > 0:
		return fmt.Sprintf("retried ×%d (%s), ok", v.retries, v.lastError)
	case !v.closed:
		return "running"
	}
	return "ok"
}

func retriesSuffix(n int) string {
	if n == 0 {
		return ""
	}
	if n == 1 {
		return " after 1 retry"
	}
	return fmt.Sprintf(" after %d retries", n)
}

// key identifies visits that read the same in a table: the same state with the same outcome.
// The iteration index is left out so the iterations of a Map fold together.
func (v *visit) key() string {
	return fmt.Sprintf("%s|%t|%s", v.state, v.index >= 0, v.outcome())
}

// visits turns a timeline into state visits ordered by when they started.
func visits(tl Timeline) []*visit {
	var out []*visit
	open := map[string]*visit{} // state + iteration -> the visit in progress
	keyOf := func(ev TimelineEvent) string { return fmt.Sprintf("%s#%d", ev.State, ev.Index) }
	for _, ev := range tl {
		switch ev.Type {
		case "StateEntered":
			v := &visit{state: ev.State, stateType: ev.StateType, index: ev.Index, start: ev.Time, end: ev.Time}
			open[keyOf(ev)] = v
			out = append(out, v)
		case "StateFailed":
			if v := open[keyOf(ev)]; v != nil {
				v.lastError, v.end = ev.Error, ev.Time
			}
		case "StateRetried":
			if v := open[keyOf(ev)]; v != nil {
				v.retries++
			}
		case "StateCaught":
			if v := open[keyOf(ev)]; v != nil {
				v.caught = true
			}
		case "StateExited":
			if v := open[keyOf(ev)]; v != nil {
				v.end, v.closed = ev.Time, true
				delete(open, keyOf(ev))
			}
		case "ExecutionFailed", "ExecutionTimeout", "ExecutionAborted", "MapIterationFailed":
			// A visit still open whose last word was a failure is what failed.
			for k, v := range open {
				if ev.Type == "MapIterationFailed" && v.index != ev.Index {
					continue
				}
				if v.lastError != "" {
					v.failed = true
				}
				v.end = ev.Time
				v.closed = v.failed
				if v.closed {
					delete(open, k)
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *visit) int { return a.start.Compare(b.start) })
	return out
}

// row is a line of the table: one visit, or a run of visits folded together.
type row struct {
	first   *visit
	count   int
	total   time.Duration // summed: time spent in the state over a loop's passes
	lastEnd time.Time
}

// duration is the time spent in a loop's state, or the wall time of a Map's iterations, which
// overlap.
func (r row) duration() time.Duration {
	if r.first.index >= 0 {
		return r.lastEnd.Sub(r.first.start)
	}
	return r.total
}

// fold collapses repetitions: the iterations of a Map (the same inner state, consecutively) and
// polling loops (a block of states repeated back to back, e.g. Wait → Check → Choice).
func fold(vs []*visit) [][]row {
	const maxBlock = 8
	var out [][]row // each element is a block of rows repeated together
	for i := 0; i < len(vs); {
		bestK, bestReps := 1, 1
		for k := 1; k <= maxBlock && i+k <= len(vs); k++ {
			reps := 1
			for i+(reps+1)*k <= len(vs) && sameBlock(vs[i:i+k], vs[i+reps*k:i+(reps+1)*k]) {
				reps++
			}
			if reps > 1 && reps*k > bestReps*bestK {
				bestK, bestReps = k, reps
			}
		}
		block := make([]row, bestK)
		for j := range bestK {
			block[j].first = vs[i+j]
			for r := range bestReps {
				v := vs[i+r*bestK+j]
				block[j].count++
				block[j].total += v.end.Sub(v.start)
				if v.end.After(block[j].lastEnd) {
					block[j].lastEnd = v.end
				}
			}
		}
		out = append(out, block)
		i += bestK * bestReps
	}
	return out
}

func sameBlock(a, b []*visit) bool {
	for i := range a {
		if a[i].key() != b[i].key() {
			return false
		}
	}
	return true
}

// FormatTimeline writes a table of an execution's timeline: one line per state visit with its
// start offset, duration and outcome (ok, retried, caught <Error>, failed <Error>). Map iterations
// are indented and folded ("EchoItem ×3"), and loops are folded too ("CheckStopped ×7", with the
// total time spent in the state).
func FormatTimeline(w io.Writer, tl Timeline) error {
	if len(tl) == 0 {
		_, err := fmt.Fprintln(w, "(no events)")
		return err
	}
	t0 := tl[0].Time
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tSTATE\tDURATION\tOUTCOME")
	for _, block := range fold(visits(tl)) {
		for _, r := range block {
			name := r.first.state
			if r.first.index >= 0 {
				name = "  " + name
			}
			if r.count > 1 {
				name += fmt.Sprintf(" ×%d", r.count)
			}
			fmt.Fprintf(tw, "+%s\t%s\t%s\t%s\n", seconds(r.first.start.Sub(t0)), name, r.duration().Round(time.Millisecond), r.first.outcome())
		}
	}
	last := tl[len(tl)-1]
	switch last.Type {
	case "ExecutionSucceeded":
		fmt.Fprintf(tw, "+%s\t(execution succeeded)\t%s\t\n", seconds(last.Time.Sub(t0)), last.Time.Sub(t0).Round(time.Millisecond))
	case "ExecutionFailed":
		fmt.Fprintf(tw, "+%s\t(execution failed)\t%s\t%s\n", seconds(last.Time.Sub(t0)), last.Time.Sub(t0).Round(time.Millisecond), last.Error)
	case "ExecutionAborted", "ExecutionTimeout":
		fmt.Fprintf(tw, "+%s\t(%s)\t%s\t\n", seconds(last.Time.Sub(t0)), strings.ToLower(strings.TrimPrefix(last.Type, "Execution")), last.Time.Sub(t0).Round(time.Millisecond))
	}
	return tw.Flush()
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
