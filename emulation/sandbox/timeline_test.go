package sandbox

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// timelineBuilder writes timelines by hand: each call advances the clock by the given ms.
type timelineBuilder struct {
	t0  time.Time
	now time.Time
	tl  Timeline
}

func (b *timelineBuilder) add(ms int, typ, state, stateType string, opts ...func(*TimelineEvent)) {
	b.now = b.now.Add(time.Duration(ms) * time.Millisecond)
	ev := TimelineEvent{Time: b.now, Type: typ, State: state, StateType: stateType, Index: -1}
	for _, o := range opts {
		o(&ev)
	}
	b.tl = append(b.tl, ev)
}

func withError(e string) func(*TimelineEvent) { return func(ev *TimelineEvent) { ev.Error = e } }
func inIteration(i int) func(*TimelineEvent)  { return func(ev *TimelineEvent) { ev.Index = i } }

func TestFormatTimelineFoldsLoopsAndIterations(t *testing.T) {
	b := &timelineBuilder{now: time.Unix(1_700_000_000, 0)}
	b.add(0, "ExecutionStarted", "", "")
	b.add(0, "StateEntered", "StopCompute", "Task")
	b.add(10, "StateExited", "StopCompute", "Task")
	for range 7 {
		b.add(0, "StateEntered", "WaitForStop", "Wait")
		b.add(100, "StateExited", "WaitForStop", "Wait")
		b.add(0, "StateEntered", "CheckStopped", "Task")
		b.add(5, "StateExited", "CheckStopped", "Task")
		b.add(0, "StateEntered", "IsStopped", "Choice")
		b.add(1, "StateExited", "IsStopped", "Choice")
	}
	b.add(0, "StateEntered", "Notify", "Map")
	for i := range 3 {
		b.add(0, "StateEntered", "Send", "Task", inIteration(i))
	}
	for i := range 3 {
		b.add(2, "StateExited", "Send", "Task", inIteration(i))
	}
	b.add(1, "StateExited", "Notify", "Map")
	b.add(0, "StateEntered", "Patch", "Task")
	b.add(3, "StateFailed", "Patch", "Task", withError("ComputeStillRunning"))
	b.add(0, "StateRetried", "Patch", "Task")
	b.add(3, "StateFailed", "Patch", "Task", withError("WorkspaceFailed"))
	b.add(0, "ExecutionFailed", "", "", withError("WorkspaceFailed"))

	var out bytes.Buffer
	require.NoError(t, FormatTimeline(&out, b.tl))
	assert.Equal(t, `START    STATE               DURATION  OUTCOME
+0.000s  StopCompute         10ms      ok
+0.010s  WaitForStop ×7      700ms     ok
+0.110s  CheckStopped ×7     35ms      ok
+0.115s  IsStopped ×7        7ms       ok
+0.752s  Notify              7ms       ok
+0.752s    Send ×3           6ms       ok
+0.759s  Patch               6ms       failed WorkspaceFailed after 1 retry
+0.765s  (execution failed)  765ms     WorkspaceFailed
`, out.String())
}

func TestFormatTimelineOfNothing(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, FormatTimeline(&out, nil))
	assert.Equal(t, "(no events)\n", out.String())
}

func TestFindToolsNamesWhatIsMissing(t *testing.T) {
	_, err := FindTools(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run `make tools`")
	assert.Contains(t, err.Error(), "aws-lambda-rie")
	assert.Contains(t, err.Error(), "aws-local-stepfunctions")
}
