// Package polling decides how long the state machine waits before the next check of a wait loop.
//
// Resources usually change state within seconds to a few minutes, and every second between the
// change and our noticing it is downtime for the workspace's users. So checks start short and back
// off, which keeps the number of state transitions (and their cost) small on long waits without
// adding more than one short interval of delay on quick ones.
package polling

import "time"

// Schedule is an adaptive polling schedule: First for the first Hold waits, then doubling every
// two checks up to Max. While the interval is First, the rotator notices a change at most First
// after it happens; most stops, updates and restarts finish within the held window. An extra check
// costs three state transitions (about $0.000075), far less than a few seconds of a workspace's
// downtime.
type Schedule struct {
	First time.Duration
	Max   time.Duration
	Hold  int
}

// Schedules for each wait loop of the rotation.
var (
	ComputeStop     = Schedule{First: 5 * time.Second, Max: 30 * time.Second, Hold: 12}
	WorkspaceUpdate = Schedule{First: 5 * time.Second, Max: 60 * time.Second, Hold: 12}
	ComputeStart    = Schedule{First: 10 * time.Second, Max: 60 * time.Second, Hold: 12}
)

// After returns the wait in whole seconds before check number attempt+1 (attempt counts from 0 for
// the wait that precedes the first check).
func (s Schedule) After(attempt int) int {
	d := s.First
	for i := s.Hold + 1; i <= attempt && d < s.Max; i += 2 {
		d *= 2
	}
	if d > s.Max {
		d = s.Max
	}
	return int(d / time.Second)
}

// Clock is the current time; tests replace it.
type Clock func() time.Time

// Now returns the current UTC time, truncated to milliseconds so it survives a JSON round trip.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now().UTC().Truncate(time.Millisecond)
	}
	return c().UTC().Truncate(time.Millisecond)
}
