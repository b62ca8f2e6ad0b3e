package policy

import (
	"sort"
	"time"
)

// Retention is how many recovery points a policy keeps, grandfather-father-son
// style: the newest point of each of the last Daily days, Weekly weeks,
// Monthly months and Yearly years (see Expire).
type Retention struct {
	Daily   int `json:"daily"`
	Weekly  int `json:"weekly"`
	Monthly int `json:"monthly"`
	Yearly  int `json:"yearly"`
}

// Point is a recovery point as retention sees it: an id and when it was taken.
type Point struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
}

// Expire splits a VM's recovery points into those its retention keeps and
// those that expire. It is pure: the same points and rules give the same
// answer whatever the clock says.
//
// Each rule walks the points newest first and keeps the newest point of
// each period until it has kept that many periods:
//   - daily: calendar days in loc (midnight to midnight, so a DST day of
//     23 or 25 hours is one day);
//   - weekly: ISO weeks in loc, Monday to Sunday, so with daily backups the
//     weekly point is Sunday's, as with Azure's default weekly day;
//   - monthly: calendar months in loc (the month's last point, Azure's
//     "last day of the month");
//   - yearly: calendar years in loc.
//
// The periods counted are those that hold a point, anchored at the newest
// point, not at the clock: a VM whose backups stopped, or failed for a
// week, keeps its last Daily dailies instead of losing them to the
// calendar. (Azure counts calendar days back from today; here nothing
// disappears only because time passed, and the space bound is the same:
// at most Daily+Weekly+Monthly+Yearly points.) A point kept by any rule is
// kept, and the newest point is never expired, even with all counts 0.
// Both lists are oldest first; points at the same instant are ordered by ID.
func Expire(points []Point, r Retention, loc *time.Location) (keep, expire []Point) {
	if len(points) == 0 {
		return nil, nil
	}
	if loc == nil {
		loc = time.UTC
	}
	ps := append([]Point(nil), points...)
	sort.SliceStable(ps, func(i, j int) bool { // newest first
		if !ps[i].Time.Equal(ps[j].Time) {
			return ps[i].Time.After(ps[j].Time)
		}
		return ps[i].ID > ps[j].ID
	})
	kept := make([]bool, len(ps))
	kept[0] = true
	for _, rule := range []struct {
		n      int
		period func(time.Time) int
	}{
		{r.Daily, func(t time.Time) int { y, m, d := t.Date(); return y*10000 + int(m)*100 + d }},
		{r.Weekly, func(t time.Time) int { y, w := t.ISOWeek(); return y*100 + w }},
		{r.Monthly, func(t time.Time) int { y, m, _ := t.Date(); return y*100 + int(m) }},
		{r.Yearly, func(t time.Time) int { return t.Year() }},
	} {
		left, last := rule.n, 0
		for i := 0; i < len(ps) && left > 0; i++ {
			p := rule.period(ps[i].Time.In(loc))
			if i > 0 && p == last {
				continue // an older point of a period already counted
			}
			kept[i], last = true, p
			left--
		}
	}
	for i := len(ps) - 1; i >= 0; i-- { // oldest first
		if kept[i] {
			keep = append(keep, ps[i])
		} else {
			expire = append(expire, ps[i])
		}
	}
	return keep, expire
}
