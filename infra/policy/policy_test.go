package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func enhancedHourly() Policy {
	p := Default()
	p.Name, p.Tier = "hourly", TierEnhanced
	p.Schedule = Schedule{Frequency: Hourly, EveryHours: 4, WindowStart: "08:00", WindowHours: 12, TimeZone: "Europe/Berlin"}
	return p
}

func weekly() Policy {
	p := Default()
	p.Name = "weekly"
	p.Schedule = Schedule{Frequency: Weekly, Times: []string{"23:30"}, Weekdays: []string{"sat", "Wednesday"}, TimeZone: "America/New_York"}
	p.Retention = Retention{Daily: 7, Weekly: 12, Monthly: 12, Yearly: 10}
	return p
}

func TestValidPolicies(t *testing.T) {
	for _, p := range []Policy{Default(), enhancedHourly(), weekly()} {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
	if Default().Name != DefaultName {
		t.Fatal("the default policy is not named default")
	}
}

// Every invalid field is refused with a message naming it and why.
func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name string
		base func() Policy
		edit func(*Policy)
		want string
	}{
		{"name empty", Default, func(p *Policy) { p.Name = "" }, `policy "": name: "": want`},
		{"name slash", Default, func(p *Policy) { p.Name = "a/b" }, `name: "a/b": want`},
		{"name upper", Default, func(p *Policy) { p.Name = "Gold" }, `name: "Gold"`},
		{"tier", Default, func(p *Policy) { p.Tier = "premium" }, `policy "default": tier: "premium": want standard or enhanced`},
		{"consistency", Default, func(p *Policy) { p.Consistency = "app-consistent" }, `consistency: "app-consistent": want app, file or crash`},
		{"instant restore 0", Default, func(p *Policy) { p.InstantRestoreDays = 0 }, `instant_restore_days: 0 is outside 1-5 for the standard tier`},
		{"instant restore 6 standard", Default, func(p *Policy) { p.InstantRestoreDays = 6 }, `instant_restore_days: 6 is outside 1-5`},
		{"instant restore 31 enhanced", enhancedHourly, func(p *Policy) { p.InstantRestoreDays = 31 }, `instant_restore_days: 31 is outside 1-30 for the enhanced tier`},
		{"time zone", Default, func(p *Policy) { p.Schedule.TimeZone = "Mars/Olympus" }, `schedule.time_zone: "Mars/Olympus" is not a known time zone`},
		{"time zone empty", Default, func(p *Policy) { p.Schedule.TimeZone = "" }, `schedule.time_zone: empty`},
		{"time zone local", Default, func(p *Policy) { p.Schedule.TimeZone = "Local" }, `schedule.time_zone: "Local" is not an IANA time zone name`},
		{"frequency", Default, func(p *Policy) { p.Schedule.Frequency = "monthly" }, `schedule.frequency: "monthly": want daily, weekly or hourly`},
		{"two times standard", Default, func(p *Policy) { p.Schedule.Times = []string{"01:00", "13:00"} }, `schedule.times: 2 times: a daily schedule runs once a day`},
		{"no time", Default, func(p *Policy) { p.Schedule.Times = nil }, `schedule.times: 0 times`},
		{"bad time", Default, func(p *Policy) { p.Schedule.Times = []string{"24:00"} }, `schedule.times: "24:00" is not a time of day HH:MM`},
		{"bad time format", Default, func(p *Policy) { p.Schedule.Times = []string{"9:5"} }, `schedule.times: "9:5" is not a time of day`},
		{"weekdays on daily", Default, func(p *Policy) { p.Schedule.Weekdays = []string{"mon"} }, `schedule.weekdays: only for weekly schedules`},
		{"weekly no days", weekly, func(p *Policy) { p.Schedule.Weekdays = nil }, `schedule.weekdays: empty`},
		{"weekly bad day", weekly, func(p *Policy) { p.Schedule.Weekdays = []string{"funday"} }, `schedule.weekdays: "funday" is not a day of the week`},
		{"weekly day twice", weekly, func(p *Policy) { p.Schedule.Weekdays = []string{"mon", "Monday"} }, `schedule.weekdays: "Monday" given twice`},
		{"every hours on daily", Default, func(p *Policy) { p.Schedule.EveryHours = 4 }, `schedule.every_hours: only for hourly schedules`},
		{"window start on daily", Default, func(p *Policy) { p.Schedule.WindowStart = "08:00" }, `schedule.window_start: only for hourly schedules`},
		{"spread too long", Default, func(p *Policy) { p.Schedule.WindowHours = 13 }, `schedule.window_hours: 13 is outside 1-12`},
		{"hourly standard", enhancedHourly, func(p *Policy) { p.Tier = TierStandard; p.InstantRestoreDays = 2 }, `schedule.frequency: hourly needs the enhanced tier`},
		{"every hours 5", enhancedHourly, func(p *Policy) { p.Schedule.EveryHours = 5 }, `policy "hourly": schedule.every_hours: 5 is not one of 4, 6, 8, 12`},
		{"hourly with times", enhancedHourly, func(p *Policy) { p.Schedule.Times = []string{"01:00"} }, `schedule.times: not for hourly schedules`},
		{"hourly no window start", enhancedHourly, func(p *Policy) { p.Schedule.WindowStart = "" }, `schedule.window_start: "" is not a time of day`},
		{"hourly window 0", enhancedHourly, func(p *Policy) { p.Schedule.WindowHours = 0 }, `schedule.window_hours: 0 is outside 1-24`},
		{"hourly window 25", enhancedHourly, func(p *Policy) { p.Schedule.WindowHours = 25 }, `schedule.window_hours: 25 is outside 1-24`},
		{"hourly window not multiple", enhancedHourly, func(p *Policy) { p.Schedule.WindowHours = 10 }, `schedule.window_hours: 10 is not a multiple of schedule.every_hours (4)`},
		{"daily retention low", Default, func(p *Policy) { p.Retention.Daily = 6 }, `retention.daily: 6 is outside 7-9999`},
		{"daily retention 0", Default, func(p *Policy) { p.Retention.Daily = 0 }, `retention.daily: 0 is outside 7-9999`},
		{"daily retention high", Default, func(p *Policy) { p.Retention.Daily = 10000 }, `retention.daily: 10000 is outside`},
		{"weekly retention", Default, func(p *Policy) { p.Retention.Weekly = 5164 }, `retention.weekly: 5164 is outside 0-5163`},
		{"monthly retention", Default, func(p *Policy) { p.Retention.Monthly = -1 }, `retention.monthly: -1 is outside 0-1188`},
		{"yearly retention", Default, func(p *Policy) { p.Retention.Yearly = 100 }, `retention.yearly: 100 is outside 0-99`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.base()
			if err := p.Validate(); err != nil {
				t.Fatalf("base policy invalid: %v", err)
			}
			c.edit(&p)
			err := p.Validate()
			if err == nil {
				t.Fatalf("accepted %+v", p)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
			// One problem, one line: nothing else about the policy is wrong.
			if n := strings.Count(err.Error(), "\n"); n != 0 {
				t.Fatalf("more than one problem reported: %q", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	p := Default()
	p.Tier, p.Retention.Daily = "x", 1
	err := p.Validate()
	if err == nil || !strings.Contains(err.Error(), "tier:") || !strings.Contains(err.Error(), "retention.daily:") {
		t.Fatalf("want both problems: %v", err)
	}
}

func TestParseWeekday(t *testing.T) {
	for in, want := range map[string]time.Weekday{"mon": time.Monday, "Monday": time.Monday, "SUN": time.Sunday, "saturday": time.Saturday} {
		if got, err := ParseWeekday(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "mo", "monxday", "mondays", "7"} {
		if _, err := ParseWeekday(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// 1000 VMs of one policy are spread over its window: every offset lies in
// the window, no minute holds more than 3% of the VMs, and the whole
// window is used (every 10 minutes of it have VMs, the first and last
// minutes too).
func TestStaggerSpread(t *testing.T) {
	for _, p := range []Policy{Default(), enhancedHourly()} {
		for _, naming := range []string{"vm%04d", "web-%d.prod.example.com"} {
			t.Run(p.Name+"/"+naming, func(t *testing.T) {
				spread := p.Spread()
				minutes := int(spread / time.Minute)
				perMinute := make([]int, minutes)
				for i := range 1000 {
					vm := fmt.Sprintf(naming, i)
					off := p.Offset(vm)
					if off < 0 || off >= spread {
						t.Fatalf("%s: offset %v outside [0, %v)", vm, off, spread)
					}
					if off != p.Offset(vm) {
						t.Fatalf("%s: offset not deterministic", vm)
					}
					perMinute[off/time.Minute]++
				}
				maxMinute := 0
				for _, n := range perMinute {
					maxMinute = max(maxMinute, n)
				}
				if maxMinute > 30 {
					t.Fatalf("a minute holds %d of 1000 VMs (over 3%%)", maxMinute)
				}
				if perMinute[0] == 0 || perMinute[minutes-1] == 0 {
					t.Fatalf("window edges unused: first minute %d, last minute %d", perMinute[0], perMinute[minutes-1])
				}
				for start := 0; start < minutes; start += 10 {
					n := 0
					for _, c := range perMinute[start:min(start+10, minutes)] {
						n += c
					}
					if n == 0 {
						t.Fatalf("no VM starts in minutes %d-%d of the window", start, start+10)
					}
				}
				t.Logf("%s over %v: at most %d VMs in a minute (mean %.1f)", naming, spread, maxMinute, 1000/float64(minutes))
			})
		}
	}
}

func TestSpread(t *testing.T) {
	p := Default()
	if p.Spread() != 2*time.Hour {
		t.Fatalf("default spread %v", p.Spread())
	}
	p.Schedule.WindowHours = 5
	if p.Spread() != 5*time.Hour {
		t.Fatalf("daily with window_hours 5: %v", p.Spread())
	}
	if s := enhancedHourly().Spread(); s != 4*time.Hour {
		t.Fatalf("hourly every 4 h: spread %v, want the interval", s)
	}
}

func TestCalendarFor(t *testing.T) {
	at := func(p Policy, vm string) Calendar {
		t.Helper()
		c, err := p.CalendarFor(vm)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Daily 22:00 + offset within 2 h: 22:xx or 23:xx every day.
	for i := range 50 {
		vm := fmt.Sprintf("vm%d", i)
		p := Default()
		c := at(p, vm)
		got := time.Duration(c.Hours[0])*time.Hour + time.Duration(c.Minute)*time.Minute + time.Duration(c.Second)*time.Second
		if want := 22*time.Hour + p.Offset(vm); got != want || c.Weekdays != nil || len(c.Hours) != 1 {
			t.Fatalf("%s: %v = %v, want %v every day", vm, c, got, want)
		}
	}
	// Hourly 08:00 every 4 h for 12 h: 3 runs, all inside the window.
	p := enhancedHourly()
	for i := range 50 {
		c := at(p, fmt.Sprintf("vm%d", i))
		if len(c.Hours) != 3 || c.Hours[0] < 8 || c.Hours[0] > 11 || c.Hours[1] != c.Hours[0]+4 || c.Hours[2] != c.Hours[0]+8 {
			t.Fatalf("hourly: %v", c)
		}
	}
	// A weekly start pushed past midnight moves to the next days.
	w := weekly() // 23:30 wed, sat
	crossed, stayed := false, false
	for i := 0; i < 200 && !(crossed && stayed); i++ {
		vm := fmt.Sprintf("vm%d", i)
		c := at(w, vm)
		if w.Offset(vm) >= 30*time.Minute {
			crossed = true
			if fmt.Sprint(c.Weekdays) != fmt.Sprint([]time.Weekday{time.Sunday, time.Thursday}) || c.Hours[0] > 1 {
				t.Fatalf("%s offset %v: %v, want sun,thu after midnight", vm, w.Offset(vm), c)
			}
		} else {
			stayed = true
			if fmt.Sprint(c.Weekdays) != fmt.Sprint([]time.Weekday{time.Wednesday, time.Saturday}) || c.Hours[0] != 23 {
				t.Fatalf("%s offset %v: %v, want wed,sat 23:xx", vm, w.Offset(vm), c)
			}
		}
	}
	if !crossed || !stayed {
		t.Fatal("no VM on one side of midnight")
	}
	if s := (Calendar{Weekdays: []time.Weekday{time.Thursday, time.Sunday}, Hours: []int{0}, Minute: 5, Second: 7}).String(); s != "thu,sun 00:05:07" {
		t.Fatalf("String: %q", s)
	}
	bad := Default()
	bad.Schedule.Times = nil
	if _, err := bad.CalendarFor("vm"); err == nil {
		t.Fatal("calendar of an invalid policy")
	}
}
