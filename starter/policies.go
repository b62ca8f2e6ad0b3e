package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
)

// Reading policies and protection records from the vault, and describing
// them for people.

// getPolicy reads a policy from the vault; the default policy exists
// without a record. A missing policy wraps vault.ErrNoRecord.
func getPolicy(ctx context.Context, v *vault.Vault, name string) (policy.Policy, error) {
	var p policy.Policy
	err := v.GetRecord(ctx, policy.RecordPolicies, name, &p)
	if errors.Is(err, vault.ErrNoRecord) && name == policy.DefaultName {
		return policy.Default(), nil
	}
	return p, err
}

func noPolicy(v *vault.Vault, name string) error {
	return fmt.Errorf("policy %s does not exist in %s (see 'vmvault policy list'): %w", name, v.Location(), vault.ErrNoRecord)
}

// listPolicies returns the default policy, then the others by name.
func listPolicies(ctx context.Context, v *vault.Vault) ([]policy.Policy, error) {
	names, err := v.ListRecords(ctx, policy.RecordPolicies)
	if err != nil {
		return nil, err
	}
	def, err := getPolicy(ctx, v, policy.DefaultName)
	if err != nil {
		return nil, err
	}
	out := []policy.Policy{def}
	for _, n := range names {
		if n == policy.DefaultName {
			continue
		}
		p, err := getPolicy(ctx, v, n)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func listProtections(ctx context.Context, v *vault.Vault) ([]policy.Protection, error) {
	names, err := v.ListRecords(ctx, policy.RecordProtection)
	if err != nil {
		return nil, err
	}
	out := make([]policy.Protection, 0, len(names))
	for _, n := range names {
		var pr policy.Protection
		if err := v.GetRecord(ctx, policy.RecordProtection, n, &pr); err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, nil
}

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
