package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
)

// Tier is a policy's tier: what its schedule and instant restore may do.
type Tier string

const (
	TierStandard Tier = "standard"
	TierEnhanced Tier = "enhanced"
)

// Frequency is how often a schedule runs.
type Frequency string

const (
	Daily  Frequency = "daily"
	Weekly Frequency = "weekly"
	Hourly Frequency = "hourly" // enhanced only
)

// Consistency is the strongest consistency a policy's backups ask for; the
// backup falls back (app, file, crash) and says why. A policy record holds
// the level word of a platform.Consistency ("app" for app-consistent).
type Consistency string

const (
	ConsistencyApp   Consistency = "app"
	ConsistencyFile  Consistency = "file"
	ConsistencyCrash Consistency = "crash"
)

// Platform is the consistency c asks for, in its one spelling; a policy
// takes only the level word, never the long name.
func (c Consistency) Platform() (platform.Consistency, error) {
	for _, k := range platform.Consistencies {
		if string(c) == k.Level() {
			return k, nil
		}
	}
	return "", fmt.Errorf("%q: want app, file or crash", string(c))
}

// Policy is how a protected VM is backed up and how long its backups live.
type Policy struct {
	Name      string    `json:"name"`
	Schedule  Schedule  `json:"schedule"`
	Retention Retention `json:"retention"`
	// InstantRestoreDays the snapshot of a backup is kept, to restore from
	// without reading the vault: 1-5 standard, 1-30 enhanced.
	InstantRestoreDays int         `json:"instant_restore_days"`
	Consistency        Consistency `json:"consistency"`
	Tier               Tier        `json:"tier"`
}

// Schedule is when a policy's backups run, in TimeZone.
type Schedule struct {
	Frequency Frequency `json:"frequency"`
	// Times of day, "HH:MM": daily and weekly schedules, exactly one.
	Times []string `json:"times,omitempty"`
	// Weekdays of a weekly schedule: mon, tue, ... (or full names).
	Weekdays []string `json:"weekdays,omitempty"`
	// EveryHours of an hourly schedule: 4, 6, 8 or 12.
	EveryHours int `json:"every_hours,omitempty"`
	// WindowStart "HH:MM" of an hourly schedule's daily window.
	WindowStart string `json:"window_start,omitempty"`
	// WindowHours: an hourly schedule's window (a multiple of EveryHours, up
	// to 24); for daily and weekly schedules, the spread of the VMs' start
	// times after each time (default DefaultSpread).
	WindowHours int `json:"window_hours,omitempty"`
	// TimeZone is an IANA name: UTC, Europe/Berlin, America/New_York.
	TimeZone string `json:"time_zone"`
}

// DefaultName is the policy that always exists.
const DefaultName = "default"

// DefaultSpread is how far after a daily or weekly schedule's time the VMs
// of the policy start, when WindowHours is unset.
const DefaultSpread = 2 * time.Hour

// Default is the built-in default policy: daily at 22:00 UTC, 30 daily
// points, snapshots kept 2 days, app-consistent, standard.
func Default() Policy {
	return Policy{
		Name:               DefaultName,
		Schedule:           Schedule{Frequency: Daily, Times: []string{"22:00"}, TimeZone: "UTC"},
		Retention:          Retention{Daily: 30},
		InstantRestoreDays: 2,
		Consistency:        ConsistencyApp,
		Tier:               TierStandard,
	}
}

// Bounds of the retention counts (Azure's: 7-9999 days, 5163 weeks, 1188
// months, 99 years). At least 7 daily points are kept, so the newest
// backups are always there.
const (
	MinDaily, MaxDaily = 7, 9999
	MaxWeekly          = 5163
	MaxMonthly         = 1188
	MaxYearly          = 99
)

var policyName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidEveryHours are the intervals of an hourly schedule.
var ValidEveryHours = []int{4, 6, 8, 12}

// Validate returns every problem of the policy, each naming the field and
// why: `policy "gold": schedule.every_hours: 5 is not one of 4, 6, 8, 12`.
func (p Policy) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("policy %q: %s: %s", p.Name, field, fmt.Sprintf(format, a...)))
	}
	if !policyName.MatchString(p.Name) {
		bad("name", "%q: want 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", p.Name)
	}
	enhanced := false
	switch p.Tier {
	case TierStandard:
	case TierEnhanced:
		enhanced = true
	default:
		bad("tier", "%q: want standard or enhanced", p.Tier)
	}
	if _, err := p.Consistency.Platform(); err != nil {
		bad("consistency", "%v", err)
	}
	maxIR := 5
	if enhanced {
		maxIR = 30
	}
	if d := p.InstantRestoreDays; d < 1 || d > maxIR {
		bad("instant_restore_days", "%d is outside 1-%d for the %s tier", d, maxIR, p.Tier)
	}
	p.Schedule.validate(p.Tier, bad)
	r := p.Retention
	if r.Daily < MinDaily || r.Daily > MaxDaily {
		bad("retention.daily", "%d is outside %d-%d", r.Daily, MinDaily, MaxDaily)
	}
	for _, c := range []struct {
		field  string
		n, max int
	}{{"retention.weekly", r.Weekly, MaxWeekly}, {"retention.monthly", r.Monthly, MaxMonthly}, {"retention.yearly", r.Yearly, MaxYearly}} {
		if c.n < 0 || c.n > c.max {
			bad(c.field, "%d is outside 0-%d", c.n, c.max)
		}
	}
	return errors.Join(errs...)
}

func (s Schedule) validate(tier Tier, bad func(field, format string, a ...any)) {
	if s.TimeZone == "" {
		bad("schedule.time_zone", "empty: want an IANA name such as UTC or Europe/Berlin")
	} else if _, err := LoadZone(s.TimeZone); err != nil {
		bad("schedule.time_zone", "%v", err)
	}
	switch s.Frequency {
	case Daily, Weekly:
		switch {
		case len(s.Times) != 1:
			bad("schedule.times", "%d times: a %s schedule runs once a day at one time (several backups a day need an enhanced hourly schedule)", len(s.Times), s.Frequency)
		default:
			if _, err := parseClock(s.Times[0]); err != nil {
				bad("schedule.times", "%v", err)
			}
		}
		if s.Frequency == Weekly {
			if len(s.Weekdays) == 0 {
				bad("schedule.weekdays", "empty: a weekly schedule needs at least one day")
			}
			seen := map[time.Weekday]bool{}
			for _, d := range s.Weekdays {
				wd, err := ParseWeekday(d)
				if err != nil {
					bad("schedule.weekdays", "%v", err)
				} else if seen[wd] {
					bad("schedule.weekdays", "%q given twice", d)
				}
				seen[wd] = true
			}
		} else if len(s.Weekdays) > 0 {
			bad("schedule.weekdays", "only for weekly schedules")
		}
		if s.EveryHours != 0 {
			bad("schedule.every_hours", "only for hourly schedules")
		}
		if s.WindowStart != "" {
			bad("schedule.window_start", "only for hourly schedules (a %s schedule starts at schedule.times)", s.Frequency)
		}
		if s.WindowHours < 0 || s.WindowHours > 12 {
			bad("schedule.window_hours", "%d is outside 1-12 (the spread of the VMs' start times after the time; 0: %s)", s.WindowHours, fmtHours(DefaultSpread))
		}
	case Hourly:
		if tier != TierEnhanced {
			bad("schedule.frequency", "hourly needs the enhanced tier (the standard tier allows one scheduled backup a day)")
		}
		if len(s.Times) > 0 {
			bad("schedule.times", "not for hourly schedules (they run every schedule.every_hours from schedule.window_start)")
		}
		if len(s.Weekdays) > 0 {
			bad("schedule.weekdays", "only for weekly schedules")
		}
		if !slices.Contains(ValidEveryHours, s.EveryHours) {
			bad("schedule.every_hours", "%d is not one of 4, 6, 8, 12", s.EveryHours)
		}
		if _, err := parseClock(s.WindowStart); err != nil {
			bad("schedule.window_start", "%v", err)
		}
		switch {
		case s.WindowHours < 1 || s.WindowHours > 24:
			bad("schedule.window_hours", "%d is outside 1-24", s.WindowHours)
		case slices.Contains(ValidEveryHours, s.EveryHours) && (s.WindowHours < s.EveryHours || s.WindowHours%s.EveryHours != 0):
			bad("schedule.window_hours", "%d is not a multiple of schedule.every_hours (%d)", s.WindowHours, s.EveryHours)
		}
	default:
		bad("schedule.frequency", "%q: want daily, weekly or hourly", s.Frequency)
	}
}

// LoadZone loads an IANA time zone by name. It refuses "Local" (the zone
// of whichever machine reads the name: a worker, the Temporal server, the
// CLI, each maybe another) and "" (which Go reads as UTC, silently).
func LoadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("%q is not an IANA time zone name such as UTC or Europe/Berlin", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not a known time zone", name)
	}
	return loc, nil
}

func fmtHours(d time.Duration) string { return strconv.Itoa(int(d/time.Hour)) + "h" }

// parseClock parses "HH:MM" into the time since midnight.
func parseClock(s string) (time.Duration, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("%q is not a time of day HH:MM (00:00 to 23:59)", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWeekday reads "mon" or "monday" (any case).
func ParseWeekday(s string) (time.Weekday, error) {
	l := strings.ToLower(s)
	if d, ok := weekdays[l]; ok {
		return d, nil
	}
	if len(l) > 3 {
		if d, ok := weekdays[l[:3]]; ok && strings.EqualFold(d.String(), s) {
			return d, nil
		}
	}
	return 0, fmt.Errorf("%q is not a day of the week (mon, tue, wed, thu, fri, sat, sun)", s)
}
