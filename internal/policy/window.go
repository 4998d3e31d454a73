package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly maintenance window in a time zone: on each listed weekday it opens at Start
// (local time) and lasts until End, the next day when End is not after Start.
type Window struct {
	Days       []time.Weekday
	Start, End int // minutes after local midnight
	Location   *time.Location
	text       string
}

var (
	windowRE = regexp.MustCompile(`^([A-Za-z]{3}(?:,[A-Za-z]{3})*) ([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9]) (\S+)$`)
	dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
		"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}
)

// ParseWindow reads "Sun 02:00-05:00 Europe/Berlin" (several days: "Sat,Sun 01:00-04:00 UTC").
func ParseWindow(s string) (*Window, error) {
	m := windowRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return nil, fmt.Errorf("window %q is not like \"Sun 02:00-05:00 Europe/Berlin\"", s)
	}
	w := &Window{text: strings.TrimSpace(s)}
	for _, d := range strings.Split(m[1], ",") {
		day, ok := dayNames[strings.ToLower(d)]
		if !ok {
			return nil, fmt.Errorf("window %q: %q is not a weekday (Mon..Sun)", s, d)
		}
		w.Days = append(w.Days, day)
	}
	hm := func(h, m string) (int, error) {
		hh, _ := strconv.Atoi(h)
		mm, _ := strconv.Atoi(m)
		if hh > 24 || (hh == 24 && mm != 0) {
			return 0, fmt.Errorf("window %q: %s:%s is not a time of day", s, h, m)
		}
		return hh*60 + mm, nil
	}
	var err error
	if w.Start, err = hm(m[2], m[3]); err != nil {
		return nil, err
	}
	if w.End, err = hm(m[4], m[5]); err != nil {
		return nil, err
	}
	if w.Start == 24*60 {
		return nil, fmt.Errorf("window %q: a window cannot open at 24:00", s)
	}
	// time.LoadLocation("") and ("Local") would silently mean UTC or the machine's zone.
	if m[6] == "Local" {
		return nil, fmt.Errorf("window %q: name a time zone (e.g. Europe/Berlin or UTC), not Local", s)
	}
	if w.Location, err = time.LoadLocation(m[6]); err != nil {
		return nil, fmt.Errorf("window %q: unknown time zone %q", s, m[6])
	}
	return w, nil
}

func (w *Window) String() string { return w.text }

// Length is how long the window stays open (on a day without a DST change).
func (w *Window) Length() time.Duration {
	l := w.End - w.Start
	if l <= 0 {
		l += 24 * 60
	}
	return time.Duration(l) * time.Minute
}

// Next returns the earliest start at or after now at which budget fits before the window closes,
// and that window's close. Openings are computed in the window's zone for each date, so a DST change
// moves them with the wall clock.
func (w *Window) Next(now time.Time, budget time.Duration) (start, closes time.Time, err error) {
	local := now.In(w.Location)
	// From yesterday (a window that opened yesterday may still be open) to eight days ahead.
	for i := -1; i <= 8; i++ {
		day := time.Date(local.Year(), local.Month(), local.Day()+i, 0, 0, 0, 0, w.Location)
		if !containsDay(w.Days, day.Weekday()) {
			continue
		}
		opens := time.Date(day.Year(), day.Month(), day.Day(), w.Start/60, w.Start%60, 0, 0, w.Location)
		endDay := day
		if w.End <= w.Start {
			endDay = day.AddDate(0, 0, 1)
		}
		closes := time.Date(endDay.Year(), endDay.Month(), endDay.Day(), w.End/60, w.End%60, 0, 0, w.Location)
		start := opens
		if now.After(start) {
			start = now
		}
		if !start.Add(budget).After(closes) {
			return start.UTC(), closes.UTC(), nil
		}
	}
	return time.Time{}, time.Time{}, fmt.Errorf("window %q never holds %s", w.text, budget)
}

func containsDay(days []time.Weekday, d time.Weekday) bool {
	for _, x := range days {
		if x == d {
			return true
		}
	}
	return false
}
