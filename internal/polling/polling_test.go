package polling

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// noticeDelay is how long after a change at `at` (from the start of a wait loop) the loop's next
// check sees it.
func noticeDelay(s Schedule, at time.Duration) time.Duration {
	var t time.Duration
	for attempt := 0; ; attempt++ {
		t += time.Duration(s.After(attempt)) * time.Second
		if t >= at {
			return t - at
		}
	}
}

func TestAChangeWithinTheHeldWindowIsNoticedWithinOneFirstInterval(t *testing.T) {
	for name, s := range map[string]Schedule{"stop": ComputeStop, "update": WorkspaceUpdate, "start": ComputeStart} {
		window := time.Duration(s.Hold) * s.First
		for at := time.Duration(0); at <= window; at += 250 * time.Millisecond {
			assert.LessOrEqual(t, noticeDelay(s, at), s.First, "%s: a change at %s", name, at)
		}
	}
}

func TestTheIntervalBacksOffAfterTheHeldWindowAndIsCapped(t *testing.T) {
	s := ComputeStart
	assert.Equal(t, 10, s.After(0))
	assert.Equal(t, 10, s.After(s.Hold))
	assert.Equal(t, 20, s.After(s.Hold+1))
	assert.Equal(t, 40, s.After(s.Hold+3))
	assert.Equal(t, 60, s.After(100), "capped at Max")
}

func TestASlowChangeCostsFewChecks(t *testing.T) {
	// A restart that takes 10 minutes is seen with a bounded number of checks (transitions).
	var elapsed time.Duration
	checks := 0
	for elapsed < 10*time.Minute {
		elapsed += time.Duration(ComputeStart.After(checks)) * time.Second
		checks++
	}
	assert.LessOrEqual(t, checks, 25)
}
