package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzPolicy: any policy record (as the vault stores it, as flags build
// it) either fails Validate with errors that each name the policy and a
// field, or is a policy whose calendar can be derived for any VM, whose
// starts are real times of day inside its schedule, that survives a JSON
// round trip unchanged, and whose retention keeps the newest point and no
// more than its counts allow.
func FuzzPolicy(f *testing.F) {
	for _, p := range []Policy{Default(), enhancedHourly(), weekly()} {
		b, _ := json.Marshal(p)
		f.Add(b, "web01")
	}
	f.Add([]byte(`{"name":"bad","schedule":{"frequency":"hourly","every_hours":5,"time_zone":"Local"},"retention":{"daily":3},"tier":"standard"}`), "vm")
	f.Add([]byte(`{"name":"w","schedule":{"frequency":"weekly","times":["23:59"],"weekdays":["sat","Saturday"],"window_hours":12,"time_zone":"Pacific/Kiritimati"},"retention":{"daily":7,"weekly":5163},"instant_restore_days":5,"consistency":"crash","tier":"standard"}`), "")
	f.Fuzz(func(t *testing.T, data []byte, vm string) {
		var p Policy
		if json.Unmarshal(data, &p) != nil {
			return
		}
		if err := p.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, `policy "`) || !strings.Contains(line, ": ") {
					t.Fatalf("a problem that names no policy and field: %q", line)
				}
			}
			if _, err := p.CalendarFor(vm); err == nil {
				t.Fatal("a calendar for an invalid policy")
			}
			return
		}
		checkCalendar(t, p, vm)
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var p2 Policy
		if err := json.Unmarshal(again, &p2); err != nil || p2.Validate() != nil {
			t.Fatalf("a valid policy does not read back valid: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(normalized(p), normalized(p2)) {
			t.Fatalf("round trip changed the policy:\n%+v\n%+v", p, p2)
		}
		checkRetention(t, p)
	})
}

// normalized makes nil and empty slices alike, as JSON's omitempty does.
func normalized(p Policy) Policy {
	if len(p.Schedule.Times) == 0 {
		p.Schedule.Times = nil
	}
	if len(p.Schedule.Weekdays) == 0 {
		p.Schedule.Weekdays = nil
	}
	return p
}

func checkCalendar(t *testing.T, p Policy, vm string) {
	t.Helper()
	c, err := p.CalendarFor(vm)
	if err != nil {
		t.Fatalf("valid policy, no calendar: %v", err)
	}
	if off := p.Offset(vm); off < 0 || off >= p.Spread() {
		t.Fatalf("offset %v outside the spread %v", off, p.Spread())
	}
	if len(c.Hours) == 0 || c.Minute < 0 || c.Minute > 59 || c.Second < 0 || c.Second > 59 {
		t.Fatalf("calendar %+v", c)
	}
	for _, h := range c.Hours {
		if h < 0 || h > 23 {
			t.Fatalf("hour %d in %+v", h, c)
		}
	}
	if p.Tier == TierStandard && len(c.Hours) != 1 {
		t.Fatalf("a standard policy runs %d times a day: %+v", len(c.Hours), c)
	}
	if p.Schedule.Frequency == Weekly {
		if len(c.Weekdays) == 0 || len(c.Weekdays) > 7 {
			t.Fatalf("weekly calendar on %v", c.Weekdays)
		}
	} else if c.Weekdays != nil {
		t.Fatalf("a %s calendar on %v", p.Schedule.Frequency, c.Weekdays)
	}
	if s := c.String(); s == "" {
		t.Fatal("empty calendar text")
	}
}

func checkRetention(t *testing.T, p Policy) {
	t.Helper()
	loc, err := LoadZone(p.Schedule.TimeZone)
	if err != nil {
		t.Fatalf("valid policy's zone: %v", err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pts []Point
	for i := range 40 {
		pts = append(pts, Point{ID: string(rune('a' + i)), Time: start.Add(time.Duration(i) * 13 * time.Hour)})
	}
	keep, expire := Expire(pts, p.Retention, loc)
	r := p.Retention
	if len(keep)+len(expire) != len(pts) || len(keep) == 0 || keep[len(keep)-1] != pts[len(pts)-1] ||
		len(keep) > max(1, r.Daily+r.Weekly+r.Monthly+r.Yearly) {
		t.Fatalf("retention %+v kept %d, expired %d of %d", r, len(keep), len(expire), len(pts))
	}
}
