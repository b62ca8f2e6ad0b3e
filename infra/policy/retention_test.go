package policy

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// series makes a point every step from start, n of them, skipping those
// for which skip says so; ids are the times in UTC.
func series(start time.Time, step time.Duration, n int, skip func(time.Time) bool) []Point {
	var ps []Point
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * step)
		if skip != nil && skip(at) {
			continue
		}
		ps = append(ps, Point{ID: at.UTC().Format("20060102T150405Z"), Time: at})
	}
	return ps
}

func ids(ps []Point) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func TestExpireExact(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	p := func(d, h int) Point { return Point{ID: fmt.Sprintf("%02d-%02d", d, h), Time: day(d, h)} }
	for _, tc := range []struct {
		name   string
		points []Point
		r      Retention
		loc    *time.Location
		keep   []string
	}{
		{name: "none", points: nil, r: Retention{Daily: 3}, keep: []string{}},
		{name: "all zero keeps the newest", points: []Point{p(1, 1), p(2, 1), p(3, 1)}, keep: []string{"03-01"}},
		{name: "one daily: newest of today only", points: []Point{p(5, 10), p(5, 11), p(5, 12)}, r: Retention{Daily: 1}, keep: []string{"05-12"}},
		{name: "daily keeps the newest of each day", points: []Point{p(1, 1), p(1, 23), p(2, 5), p(3, 1), p(3, 2)}, r: Retention{Daily: 2}, keep: []string{"02-05", "03-02"}},
		{name: "gaps count days that hold a point", points: []Point{p(1, 1), p(2, 1), p(9, 1), p(20, 1)}, r: Retention{Daily: 3}, keep: []string{"02-01", "09-01", "20-01"}},
		// 2026-03-02 is a Monday: ISO weeks 10 (2..8), 11 (9..15), 12 (16..22).
		{name: "weekly: the week's newest (Sunday)", points: series7(day(2, 1), 21), r: Retention{Weekly: 2}, keep: []string{"15", "22"}},
		{name: "daily and weekly overlap", points: series7(day(2, 1), 21), r: Retention{Daily: 3, Weekly: 3}, keep: []string{"08", "15", "20", "21", "22"}},
		{name: "unsorted input", points: []Point{p(3, 1), p(1, 1), p(2, 1)}, r: Retention{Daily: 2}, keep: []string{"02-01", "03-01"}},
		// 23:30 UTC on the 1st is 00:30 on the 2nd in Berlin (UTC+1 in March before the switch).
		{name: "days in the policy's zone", points: []Point{p(1, 22), {ID: "late", Time: day(1, 23).Add(30 * time.Minute)}, p(2, 10)}, r: Retention{Daily: 2}, loc: berlin, keep: []string{"01-22", "02-10"}},
		{name: "same days in UTC", points: []Point{p(1, 22), {ID: "late", Time: day(1, 23).Add(30 * time.Minute)}, p(2, 10)}, r: Retention{Daily: 2}, keep: []string{"late", "02-10"}},
		{name: "monthly and yearly", points: []Point{
			{ID: "2024-06", Time: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)},
			{ID: "2024-12", Time: time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC)},
			{ID: "2025-01", Time: time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC)},
			{ID: "2025-01b", Time: time.Date(2025, 1, 20, 0, 0, 0, 0, time.UTC)},
			{ID: "2025-02", Time: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)},
		}, r: Retention{Monthly: 2, Yearly: 2}, keep: []string{"2024-12", "2025-01b", "2025-02"}},
		{name: "equal times ordered by id", points: []Point{{ID: "b", Time: day(1, 1)}, {ID: "a", Time: day(1, 1)}}, r: Retention{Daily: 1}, keep: []string{"b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, expire := Expire(tc.points, tc.r, tc.loc)
			if got := ids(keep); !reflect.DeepEqual(got, tc.keep) {
				t.Fatalf("kept %v, want %v", got, tc.keep)
			}
			if len(keep)+len(expire) != len(tc.points) {
				t.Fatalf("kept %d + expired %d != %d points", len(keep), len(expire), len(tc.points))
			}
		})
	}
}

// series7 is one point a day at the same hour, ids the day of the month.
func series7(start time.Time, n int) []Point {
	var ps []Point
	for i := 0; i < n; i++ {
		at := start.AddDate(0, 0, i)
		ps = append(ps, Point{ID: fmt.Sprintf("%02d", at.Day()), Time: at})
	}
	return ps
}

func TestExpireYears(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	ny := mustLoc(t, "America/New_York")
	// Daily backups at 23:30 Berlin time for three years, across six DST
	// switches: AddDate keeps the wall clock, so each lands on its own day.
	daily3y := func(loc *time.Location) []Point {
		var ps []Point
		for d := time.Date(2023, 1, 1, 23, 30, 0, 0, loc); d.Year() < 2026; d = d.AddDate(0, 0, 1) {
			ps = append(ps, Point{ID: d.UTC().Format(time.RFC3339), Time: d})
		}
		return ps
	}
	hourly := series(time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC), time.Hour, 24*60, nil) // 60 days, across the end of DST
	gappy := series(time.Date(2024, 1, 1, 2, 0, 0, 0, time.UTC), 24*time.Hour, 400, func(at time.Time) bool {
		return at.Month() == time.June || at.Weekday() == time.Saturday // a month down, no weekend backups
	})
	for _, tc := range []struct {
		name   string
		points []Point
		r      Retention
		loc    *time.Location
		keep   int
	}{
		// 30 dailies (Dec 2-31, 2025); 12 weeklies: Dec 31 (ISO 2026-W01)
		// and the Sundays Dec 28 back to Oct 19, of which 7 are not dailies;
		// 12 monthlies: Dec 31, Nov 30 (both kept already), Oct 31 back to
		// Jan 31 (10 more); yearlies: 2025 (kept), 2024 and 2023 (2 more).
		{name: "3y daily, azure default-ish", points: daily3y(berlin), r: Retention{Daily: 30, Weekly: 12, Monthly: 12, Yearly: 10}, loc: berlin, keep: 30 + 7 + 10 + 2},
		{name: "3y daily, dailies only", points: daily3y(berlin), r: Retention{Daily: 7}, loc: berlin, keep: 7},
		{name: "3y daily, yearly only", points: daily3y(berlin), r: Retention{Yearly: 5}, loc: berlin, keep: 3},
		{name: "3y daily, monthly 36", points: daily3y(berlin), r: Retention{Monthly: 36}, loc: berlin, keep: 36},
		{name: "3y daily, weekly 52", points: daily3y(berlin), r: Retention{Weekly: 52}, loc: berlin, keep: 52},
		{name: "hourly 60 days, 30 dailies", points: hourly, r: Retention{Daily: 30}, loc: ny, keep: 30},
		{name: "hourly 60 days, 7 dailies 8 weeklies", points: hourly, r: Retention{Daily: 7, Weekly: 8}, loc: berlin, keep: 7 + 7},
		{name: "gaps: dailies count days with a point", points: gappy, r: Retention{Daily: 10}, loc: time.UTC, keep: 10},
		{name: "gaps: June has no monthly", points: gappy, r: Retention{Monthly: 14}, loc: time.UTC, keep: 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, expire := Expire(tc.points, tc.r, tc.loc)
			if len(keep) != tc.keep {
				t.Fatalf("kept %d, want %d: %v", len(keep), tc.keep, ids(keep))
			}
			if len(keep)+len(expire) != len(tc.points) {
				t.Fatalf("kept %d + expired %d != %d", len(keep), len(expire), len(tc.points))
			}
			newest := tc.points[len(tc.points)-1]
			if keep[len(keep)-1] != newest {
				t.Fatalf("newest %s not kept", newest.ID)
			}
			seen := map[string]bool{}
			for _, p := range keep {
				seen[p.ID] = true
			}
			for _, p := range expire {
				if seen[p.ID] {
					t.Fatalf("%s both kept and expired", p.ID)
				}
			}
		})
	}
}

// TestExpireDailiesOnePerDay: across the DST nights of Europe/Berlin (a
// 23-hour and a 25-hour day), the kept dailies are exactly the newest point
// of each of the last local days, found the slow way.
func TestExpireDailiesOnePerDay(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	for _, start := range []time.Time{
		time.Date(2026, 3, 26, 0, 0, 0, 0, time.UTC),  // spring forward on 03-29
		time.Date(2026, 10, 22, 0, 0, 0, 0, time.UTC), // fall back on 10-25
	} {
		ps := series(start, 30*time.Minute, 48*6, nil)
		newestOfDay := map[string]Point{}
		var days []string
		for _, p := range ps { // oldest first: the last one of a day wins
			d := p.Time.In(berlin).Format("2006-01-02")
			if _, ok := newestOfDay[d]; !ok {
				days = append(days, d)
			}
			newestOfDay[d] = p
		}
		var want []string
		for _, d := range days[len(days)-5:] {
			want = append(want, newestOfDay[d].ID)
		}
		keep, _ := Expire(ps, Retention{Daily: 5}, berlin)
		if got := ids(keep); !reflect.DeepEqual(got, want) {
			t.Fatalf("from %s: kept %v, want %v", start, got, want)
		}
	}
}
