package main

import (
	"fmt"
	"strings"

	"github.com/vmvault/vmvault/infra/policy"
)

// Describing policies for people; the policies themselves are read
// through infra/policystore.

func describePolicy(p policy.Policy) string {
	return fmt.Sprintf("%s; keeps %s; instant restore %d days; %s-consistent; %s tier",
		describeSchedule(p.Schedule), describeRetention(p.Retention), p.InstantRestoreDays, p.Consistency, p.Tier)
}

func describeSchedule(s policy.Schedule) string {
	switch s.Frequency {
	case policy.Hourly:
		return fmt.Sprintf("every %dh from %s for %dh %s", s.EveryHours, s.WindowStart, s.WindowHours, s.TimeZone)
	case policy.Weekly:
		return fmt.Sprintf("weekly %s at %s %s", strings.Join(s.Weekdays, ","), strings.Join(s.Times, ","), s.TimeZone)
	default:
		return fmt.Sprintf("%s at %s %s", s.Frequency, strings.Join(s.Times, ","), s.TimeZone)
	}
}

func describeRetention(r policy.Retention) string {
	parts := []string{fmt.Sprintf("%d daily", r.Daily)}
	for _, c := range []struct {
		n    int
		what string
	}{{r.Weekly, "weekly"}, {r.Monthly, "monthly"}, {r.Yearly, "yearly"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return strings.Join(parts, ", ")
}
