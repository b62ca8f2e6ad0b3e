package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Spread is how far apart the start times of the policy's VMs are spread:
// the interval of an hourly schedule (so every run of a VM still starts
// inside the window), else WindowHours, else DefaultSpread.
func (p Policy) Spread() time.Duration {
	s := p.Schedule
	switch {
	case s.Frequency == Hourly && s.EveryHours > 0:
		return time.Duration(s.EveryHours) * time.Hour
	case s.Frequency != Hourly && s.WindowHours > 0:
		return time.Duration(s.WindowHours) * time.Hour
	default:
		return DefaultSpread
	}
}

// Offset is how long after each scheduled time the backups of vm start:
// a hash of the VM's name modulo the spread, in whole seconds. It depends
// only on the name and the spread, so it is the same on every reconcile and
// a fleet is spread evenly instead of starting in the same minute.
func (p Policy) Offset(vm string) time.Duration {
	sum := sha256.Sum256([]byte(vm))
	secs := uint64(p.Spread() / time.Second)
	return time.Duration(binary.BigEndian.Uint64(sum[:8])%secs) * time.Second
}

// Calendar is when a VM's backups start, in the policy's time zone: at
// Minute:Second past each of Hours, every day, or on Weekdays only.
type Calendar struct {
	Weekdays []time.Weekday `json:"weekdays,omitempty"` // nil: every day
	Hours    []int          `json:"hours"`
	Minute   int            `json:"minute"`
	Second   int            `json:"second"`
}

// CalendarFor returns when vm's backups start under the policy: its
// times shifted by the VM's Offset. A start pushed past midnight moves to
// the next day (a weekly schedule's days move with it).
func (p Policy) CalendarFor(vm string) (Calendar, error) {
	if err := p.Validate(); err != nil {
		return Calendar{}, err
	}
	s, off := p.Schedule, p.Offset(vm)
	var starts []time.Duration
	if s.Frequency == Hourly {
		start, _ := parseClock(s.WindowStart)
		for k := 0; k < s.WindowHours/s.EveryHours; k++ {
			starts = append(starts, start+time.Duration(k*s.EveryHours)*time.Hour)
		}
	} else {
		t, _ := parseClock(s.Times[0])
		starts = []time.Duration{t}
	}
	const day = 24 * time.Hour
	var c Calendar
	nextDay := false
	for _, t := range starts {
		t += off
		if t >= day && s.Frequency == Weekly {
			nextDay = true
		}
		t %= day
		c.Hours = append(c.Hours, int(t/time.Hour))
		c.Minute, c.Second = int(t%time.Hour/time.Minute), int(t%time.Minute/time.Second)
	}
	slices.Sort(c.Hours)
	if s.Frequency == Weekly {
		for _, d := range s.Weekdays {
			wd, _ := ParseWeekday(d)
			if nextDay {
				wd = (wd + 1) % 7
			}
			c.Weekdays = append(c.Weekdays, wd)
		}
		slices.Sort(c.Weekdays)
	}
	return c, nil
}

// String is the calendar as an operator reads it: "daily 22:41:07",
// "mon,thu 23:05:00", "daily 02,06,10:13:52".
func (c Calendar) String() string {
	days := "daily"
	if c.Weekdays != nil {
		days = ""
		for i, d := range c.Weekdays {
			if i > 0 {
				days += ","
			}
			days += shortDay(d)
		}
	}
	hours := ""
	for i, h := range c.Hours {
		if i > 0 {
			hours += ","
		}
		hours += fmt.Sprintf("%02d", h)
	}
	return fmt.Sprintf("%s %s:%02d:%02d", days, hours, c.Minute, c.Second)
}

func shortDay(d time.Weekday) string { return strings.ToLower(d.String()[:3]) }
