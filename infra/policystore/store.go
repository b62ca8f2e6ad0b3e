package policystore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
)

// Vault is what the store needs of a vault: its records, where it is, and
// its config (immutability).
type Vault interface {
	GetRecord(ctx context.Context, kind, name string, obj any) error
	PutRecord(ctx context.Context, kind, name string, obj any) error
	ListRecords(ctx context.Context, kind string) ([]string, error)
	DeleteRecord(ctx context.Context, kind, name string) error
	Location() string
	ReloadConfig(ctx context.Context) error
	Config() vault.Config
}

var _ Vault = (*vault.Vault)(nil)

// Store reads and writes the policies and protection records of a vault.
type Store struct{ v Vault }

// New returns the store of v.
func New(v Vault) *Store { return &Store{v: v} }

// NoPolicy is the error for a policy that does not exist; it wraps
// vault.ErrNoRecord.
func (s *Store) NoPolicy(name string) error {
	return fmt.Errorf("policy %s does not exist in %s (see 'vmvault policy list'): %w", name, s.v.Location(), vault.ErrNoRecord)
}

// Policy returns the policy in force named name. A missing policy is
// NoPolicy (errors.Is vault.ErrNoRecord).
func (s *Store) Policy(ctx context.Context, name string) (policy.Policy, error) {
	var rec policy.Policy
	if err := checkName(policy.RecordPolicies, name); err != nil {
		return rec, err
	}
	err := s.v.GetRecord(ctx, policy.RecordPolicies, name, &rec)
	found := err == nil
	if err != nil && !errors.Is(err, vault.ErrNoRecord) {
		return rec, err
	}
	p, ok := policy.InForce(name, rec, found)
	if !ok {
		return p, s.NoPolicy(name)
	}
	return p, nil
}

// Policies returns the default policy, then the others by name.
func (s *Store) Policies(ctx context.Context) ([]policy.Policy, error) {
	names, err := s.v.ListRecords(ctx, policy.RecordPolicies)
	if err != nil {
		return nil, err
	}
	def, err := s.Policy(ctx, policy.DefaultName)
	if err != nil {
		return nil, err
	}
	out := []policy.Policy{def}
	for _, n := range names {
		if n == policy.DefaultName {
			continue
		}
		p, err := s.Policy(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// CreatePolicy writes a new policy; one that exists (the default policy
// always does) is refused.
func (s *Store) CreatePolicy(ctx context.Context, p policy.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if _, err := s.Policy(ctx, p.Name); err == nil {
		return fmt.Errorf("policy %s already exists in %s: change it with 'vmvault policy update %s'", p.Name, s.v.Location(), p.Name)
	} else if !errors.Is(err, vault.ErrNoRecord) {
		return err
	}
	return s.v.PutRecord(ctx, policy.RecordPolicies, p.Name, p)
}

// UpdatePolicy replaces an existing policy with p. An immutable vault
// refuses one that keeps fewer points of any kind than the policy in force
// (Azure's immutable vaults refuse to reduce retention); the error wraps
// vault.ErrImmutable.
func (s *Store) UpdatePolicy(ctx context.Context, p policy.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	old, err := s.Policy(ctx, p.Name)
	if err != nil {
		return err
	}
	if err := s.v.ReloadConfig(ctx); err != nil {
		return err
	}
	if s.v.Config().Immutable != nil {
		if shorter := policy.ShorterRetention(old.Retention, p.Retention); len(shorter) > 0 {
			return fmt.Errorf("policy %s: retention cannot be shortened in an immutable vault (%s): %w", p.Name, strings.Join(shorter, ", "), vault.ErrImmutable)
		}
	}
	return s.v.PutRecord(ctx, policy.RecordPolicies, p.Name, p)
}

// DeletePolicy deletes a policy no VM is protected by. The default policy
// cannot be deleted.
func (s *Store) DeletePolicy(ctx context.Context, name string) error {
	if err := policy.Deletable(name); err != nil {
		return err
	}
	users, err := s.ProtectedBy(ctx, name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		vms := make([]string, len(users))
		for i, pr := range users {
			vms[i] = pr.VM
		}
		return fmt.Errorf("policy %s is in use by %d vms: %s (protect them with another policy or unprotect them first)", name, len(vms), strings.Join(vms, ", "))
	}
	if err := s.v.DeleteRecord(ctx, policy.RecordPolicies, name); errors.Is(err, vault.ErrNoRecord) {
		return s.NoPolicy(name)
	} else if err != nil {
		return err
	}
	return nil
}

// Protections returns every protection record, by VM name.
func (s *Store) Protections(ctx context.Context) ([]policy.Protection, error) {
	names, err := s.v.ListRecords(ctx, policy.RecordProtection)
	if err != nil {
		return nil, err
	}
	out := make([]policy.Protection, 0, len(names))
	for _, n := range names {
		var pr policy.Protection
		if err := s.v.GetRecord(ctx, policy.RecordProtection, n, &pr); errors.Is(err, vault.ErrNoRecord) {
			continue // unprotected meanwhile
		} else if err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VM < out[j].VM })
	return out, nil
}

// ProtectedBy returns the protections of the VMs the policy name protects,
// by VM name.
func (s *Store) ProtectedBy(ctx context.Context, name string) ([]policy.Protection, error) {
	all, err := s.Protections(ctx)
	if err != nil {
		return nil, err
	}
	var out []policy.Protection
	for _, pr := range all {
		if pr.Policy == name {
			out = append(out, pr)
		}
	}
	return out, nil
}

// Protection returns vm's protection record; a missing one wraps
// vault.ErrNoRecord.
func (s *Store) Protection(ctx context.Context, vm string) (policy.Protection, error) {
	var pr policy.Protection
	if err := checkVM(vm); err != nil {
		return pr, err
	}
	err := s.v.GetRecord(ctx, policy.RecordProtection, vm, &pr)
	return pr, err
}

// Unprotect deletes vm's protection record; one already gone is fine.
func (s *Store) Unprotect(ctx context.Context, vm string) error {
	if err := checkVM(vm); err != nil {
		return err
	}
	if err := s.v.DeleteRecord(ctx, policy.RecordProtection, vm); err != nil && !errors.Is(err, vault.ErrNoRecord) {
		return err
	}
	return nil
}
