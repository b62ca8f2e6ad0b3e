package policystore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
)

// ErrLimit is the protected-VM limit refusing a new protection.
var ErrLimit = errors.New("protected vm limit reached")

// ErrBadName is a name no record can have (the vault's rule,
// vault.CheckRecordName).
var ErrBadName = vault.ErrBadRecordName

// checkName refuses, before any I/O, the names the vault refuses as record
// names, so the refusal can be told apart from a storage failure and is
// not retried.
func checkName(kind, name string) error { return vault.CheckRecordName(kind, name) }

func checkVM(vm string) error { return checkName(policy.RecordProtection, vm) }

type limitError struct{ msg string }

func (e limitError) Error() string        { return e.msg }
func (e limitError) Is(target error) bool { return target == ErrLimit }

// ProtectRequest asks to protect VM with Policy.
type ProtectRequest struct {
	VM     string
	Policy string
	// Host owns the VM. A VM already protected keeps its host unless
	// HostGiven.
	Host      string
	HostGiven bool
	// Since is when the VM becomes protected. It also names the request: a
	// record with this very Since is this request's own write, retried.
	Since time.Time
	// Max is the vault's limit of protected VMs (VMVAULT_MAX_PROTECTED_VMS).
	Max int
}

// Protect writes req.VM's protection record: the VM's policy and host, and
// since when it is protected (kept when it already was). A VM not yet
// protected must fit under req.Max. Two protects at once can both pass
// the first count: each counts again with its record written and steps
// back (deletes it) when that is one too many. A protect that lists after
// another's write sees it, so the limit holds; at worst both step back,
// and one is run again. A refusal wraps ErrLimit.
func (s *Store) Protect(ctx context.Context, req ProtectRequest) (policy.Protection, error) {
	pr := policy.Protection{VM: req.VM, Host: req.Host, Policy: req.Policy, Since: req.Since.UTC()}
	if err := checkVM(req.VM); err != nil {
		return pr, err
	}
	var old policy.Protection
	isNew := false
	switch err := s.v.GetRecord(ctx, policy.RecordProtection, req.VM, &old); {
	case err == nil && old.Since.Equal(pr.Since):
		isNew = true // our own record, written by an earlier attempt: count it below
	case err == nil:
		pr.Host, pr.Since = old.Host, old.Since
		if req.HostGiven {
			pr.Host = req.Host
		}
	case errors.Is(err, vault.ErrNoRecord):
		isNew = true
		if err := s.underLimit(ctx, req.VM, 0, req.Max); err != nil {
			return pr, err
		}
	default:
		return pr, err
	}
	if err := s.v.PutRecord(ctx, policy.RecordProtection, req.VM, pr); err != nil {
		return pr, err
	}
	if isNew {
		if err := s.underLimit(ctx, req.VM, 1, req.Max); err != nil {
			if derr := s.v.DeleteRecord(ctx, policy.RecordProtection, req.VM); derr != nil {
				return pr, fmt.Errorf("%w; and removing its record failed: %v", err, derr)
			}
			return pr, err
		}
	}
	return pr, nil
}

// underLimit fails when the vault protects more than max allows, counting
// vm's record (ours: 0 not written yet, 1 written).
func (s *Store) underLimit(ctx context.Context, vm string, ours, max int) error {
	names, err := s.v.ListRecords(ctx, policy.RecordProtection)
	if err != nil {
		return err
	}
	others := len(names) - ours
	if others < max {
		return nil
	}
	if ours == 1 && others == max {
		return limitError{fmt.Sprintf("vault %s reached the limit of %d protected vms (VMVAULT_MAX_PROTECTED_VMS) while another protect ran at the same moment: vm %s is not protected; run protect again",
			s.v.Location(), max, vm)}
	}
	return limitError{fmt.Sprintf("vault %s already protects %d vms, the limit (VMVAULT_MAX_PROTECTED_VMS=%d): vm %s is not protected; unprotect another first or use another vault",
		s.v.Location(), others, max, vm)}
}
