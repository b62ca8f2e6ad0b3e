package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/policystore"
	"github.com/vmvault/vmvault/infra/vault"
)

// Error types of the protect and policy workflows.
const (
	// ErrTypePolicyNotFound: the policy named does not exist.
	ErrTypePolicyNotFound = "PolicyNotFound"
	// ErrTypeInvalidPolicy: a policy field is out of bounds.
	ErrTypeInvalidPolicy = "InvalidPolicy"
	// ErrTypeNotProtected: unprotect of a VM with no record and no schedule.
	ErrTypeNotProtected = "NotProtected"
)

// ProtectionActivities write the policy and protection records of the
// vault (through infra/policystore, which applies their rules) and the
// Temporal Schedules derived from them (central queue).
type ProtectionActivities struct {
	Vault *vault.Vault
	// Schedules creates, updates and deletes Temporal Schedules (the
	// worker's client.ScheduleClient()).
	Schedules client.ScheduleClient
}

func (a *ProtectionActivities) store() *policystore.Store { return policystore.New(a.Vault) }

// classifyPolicy adds the policy store's refusals to classify's table.
func classifyPolicy(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, policystore.ErrLimit):
		return nonRetryable(err.Error(), ErrTypeLimitExceeded)
	case errors.Is(err, policystore.ErrBadName):
		return badRequest(err.Error())
	case errors.Is(err, vault.ErrNoRecord):
		return nonRetryable(err.Error(), ErrTypePolicyNotFound)
	}
	return classify(err)
}

// WriteProtectionInput asks to protect VM with Policy; see
// policystore.ProtectRequest.
type WriteProtectionInput struct {
	VM        string    `json:"vm"`
	Policy    string    `json:"policy"`
	Host      string    `json:"host"`
	HostGiven bool      `json:"host_given,omitempty"`
	Since     time.Time `json:"since"`
	Max       int       `json:"max_protected_vms"`
}

// WriteProtectionResult is the record written and the policy it names.
type WriteProtectionResult struct {
	Protection policy.Protection `json:"protection"`
	Policy     policy.Policy     `json:"policy"`
}

// WriteProtection reads the policy in force and writes the VM's protection
// record under the vault's limit. Refusals (no such policy, an invalid
// policy, the limit) are non-retryable.
func (a *ProtectionActivities) WriteProtection(ctx context.Context, in WriteProtectionInput) (WriteProtectionResult, error) {
	var res WriteProtectionResult
	p, err := a.store().Policy(ctx, in.Policy)
	if err != nil {
		return res, classifyPolicy(err)
	}
	if err := p.Validate(); err != nil {
		return res, nonRetryable(err.Error(), ErrTypeInvalidPolicy)
	}
	res.Policy = p
	res.Protection, err = a.store().Protect(ctx, policystore.ProtectRequest{VM: in.VM, Policy: p.Name, Host: in.Host,
		HostGiven: in.HostGiven, Since: in.Since, Max: in.Max})
	return res, classifyPolicy(err)
}

// PrepareUnprotectInput names the VM to unprotect.
type PrepareUnprotectInput struct {
	VM         string    `json:"vm"`
	DeleteData bool      `json:"delete_data,omitempty"`
	Now        time.Time `json:"now"`
}

// PrepareUnprotectResult says whether the VM has a protection record.
type PrepareUnprotectResult struct {
	Protected bool   `json:"protected"`
	Location  string `json:"location"`
}

// PrepareUnprotect reads the VM's record and, to delete its data, asks
// the vault whether its points may be deleted now: an immutable vault
// refuses before anything changes.
func (a *ProtectionActivities) PrepareUnprotect(ctx context.Context, in PrepareUnprotectInput) (PrepareUnprotectResult, error) {
	res := PrepareUnprotectResult{Location: a.Vault.Location()}
	_, err := a.store().Protection(ctx, in.VM)
	switch {
	case err == nil:
		res.Protected = true
	case !errors.Is(err, vault.ErrNoRecord):
		return res, classifyPolicy(err)
	}
	if in.DeleteData {
		rps, _ := a.Vault.ListRecoveryPoints(ctx, in.VM)
		if err := a.Vault.CheckDeletable(ctx, rps, in.Now); err != nil {
			return res, classify(fmt.Errorf("unprotect %s --delete-data refused, nothing was changed: %w", in.VM, err))
		}
	}
	return res, nil
}

// DeleteProtection deletes the VM's protection record (gone already is fine).
func (a *ProtectionActivities) DeleteProtection(ctx context.Context, vm string) error {
	return classifyPolicy(a.store().Unprotect(ctx, vm))
}

// ReleaseRecoveryPointsInput: what happens to an unprotected VM's points.
type ReleaseRecoveryPointsInput struct {
	VM string `json:"vm"`
	// Delete soft-deletes them for KeepDeletedFor; else they are kept.
	Delete         bool          `json:"delete,omitempty"`
	Now            time.Time     `json:"now"`
	KeepDeletedFor time.Duration `json:"keep_deleted_for,omitempty"`
}

// ReleaseRecoveryPointsResult counts the VM's points and, when deleted,
// when their soft-delete period ends.
type ReleaseRecoveryPointsResult struct {
	Count      int       `json:"count"`
	PurgeAfter time.Time `json:"purge_after,omitzero"`
	// Warnings name manifests that could not be read (not counted).
	Warnings []string `json:"warnings,omitempty"`
}

// ReleaseRecoveryPoints counts an unprotected VM's recovery points and
// soft-deletes them if asked ('vmvault rp undelete' brings each back until
// the soft-delete period ends). A retry finds the ones deleted already gone.
func (a *ProtectionActivities) ReleaseRecoveryPoints(ctx context.Context, in ReleaseRecoveryPointsInput) (ReleaseRecoveryPointsResult, error) {
	var res ReleaseRecoveryPointsResult
	rps, err := a.Vault.ListRecoveryPoints(ctx, in.VM)
	if err != nil && !(errors.Is(err, vault.ErrCorrupt) && rps != nil) {
		return res, classify(err)
	}
	if err != nil {
		res.Warnings = strings.Split(err.Error(), "\n")
		activity.GetLogger(ctx).Warn("skipping unreadable recovery points", "vm", in.VM, "error", err)
	}
	res.Count = len(rps)
	if !in.Delete {
		return res, nil
	}
	for _, rp := range rps {
		dp, err := a.Vault.DeleteRecoveryPoint(ctx, rp.Ref(), in.Now, in.KeepDeletedFor)
		if err != nil {
			return res, classify(fmt.Errorf("vm %s is unprotected, but deleting its recovery points stopped at %s (run unprotect --delete-data again): %w", in.VM, rp.Ref(), err))
		}
		res.PurgeAfter = dp.PurgeAfter
	}
	return res, nil
}

// SavePolicy replaces an existing policy (policystore.UpdatePolicy: an
// immutable vault refuses shorter retention, non-retryably).
func (a *ProtectionActivities) SavePolicy(ctx context.Context, p policy.Policy) error {
	if err := p.Validate(); err != nil {
		return nonRetryable(err.Error(), ErrTypeInvalidPolicy)
	}
	return classifyPolicy(a.store().UpdatePolicy(ctx, p))
}

// ListProtectedBy lists the protections of the VMs the policy protects,
// by VM name.
func (a *ProtectionActivities) ListProtectedBy(ctx context.Context, name string) ([]policy.Protection, error) {
	prs, err := a.store().ProtectedBy(ctx, name)
	return prs, classify(err)
}
