package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/policystore"
	"github.com/vmvault/vmvault/infra/vault"
)

// RetentionTarget is a VM whose recovery points retention expires, with the
// rules of its policy.
type RetentionTarget struct {
	VM        string           `json:"vm"`
	Policy    string           `json:"policy,omitempty"`
	Retention policy.Retention `json:"retention"`
	// TimeZone (IANA) in which days, weeks, months and years are counted:
	// the policy schedule's.
	TimeZone string `json:"time_zone,omitempty"`
	// Problem says why the VM's retention cannot run (its policy is
	// missing): reported as a failure of that VM alone.
	Problem string `json:"problem,omitempty"`
}

// RetentionTargetsInput asks for the VMs retention works on: the given
// targets (a one-off run with explicit rules), or else every protected VM
// with its policy's rules.
type RetentionTargetsInput struct {
	Targets []RetentionTarget `json:"targets,omitempty"`
}

// RetentionTargets are the VMs to expire and the vault the job is pinned to.
type RetentionTargets struct {
	Vault   VaultPin          `json:"vault"`
	Targets []RetentionTarget `json:"targets"`
}

// ListRetentionTargets reads the protected VMs and their policies from the
// vault's records. A VM that is not protected (never, or unprotected with
// its data retained) is not a target: its points are kept until deleted
// by hand.
func (a *VaultActivities) ListRetentionTargets(ctx context.Context, in RetentionTargetsInput) (RetentionTargets, error) {
	defer alive(ctx)()
	res := RetentionTargets{Vault: pinOf(a.Vault), Targets: in.Targets}
	if len(in.Targets) > 0 {
		for _, t := range in.Targets {
			if _, err := loadLocation(t.TimeZone); err != nil {
				return res, badRequest(fmt.Sprintf("retention of vm %s: %v", t.VM, err))
			}
		}
		return res, nil
	}
	vms, err := a.Vault.ListRecords(ctx, policy.RecordProtection)
	if err != nil {
		return res, classify(err)
	}
	policies := map[string]policy.Policy{}
	for _, vm := range vms {
		var prot policy.Protection
		if err := a.Vault.GetRecord(ctx, policy.RecordProtection, vm, &prot); errors.Is(err, vault.ErrNoRecord) {
			continue // unprotected meanwhile
		} else if err != nil {
			return res, classify(err)
		}
		p, ok := policies[prot.Policy]
		if !ok {
			var err error
			p, err = policystore.New(a.Vault).Policy(ctx, prot.Policy)
			switch {
			case errors.Is(err, vault.ErrNoRecord):
				res.Targets = append(res.Targets, RetentionTarget{VM: vm, Policy: prot.Policy,
					Problem: fmt.Sprintf("vm %s is protected by policy %q, which does not exist: nothing expired", vm, prot.Policy)})
				continue
			case err != nil:
				return res, classify(err)
			}
			policies[prot.Policy] = p
		}
		res.Targets = append(res.Targets, RetentionTarget{VM: vm, Policy: prot.Policy, Retention: p.Retention, TimeZone: p.Schedule.TimeZone})
	}
	return res, nil
}

// ExpireInput applies one VM's retention at Now.
type ExpireInput struct {
	Vault  VaultPin        `json:"vault"`
	Target RetentionTarget `json:"target"`
	Now    time.Time       `json:"now"`
	// KeepDeletedFor is the soft-delete period of the points expired now.
	KeepDeletedFor time.Duration `json:"keep_deleted_for"`
	DryRun         bool          `json:"dry_run,omitempty"`
}

// ExpireResult is what retention did to one VM.
type ExpireResult struct {
	VM     string `json:"vm"`
	Policy string `json:"policy,omitempty"`
	Kept   int    `json:"kept"`
	// Expired are the points soft-deleted (with DryRun: that would be).
	Expired []string `json:"expired,omitempty"`
	// PurgeAfter is when the expired points' soft-delete period ends.
	PurgeAfter time.Time `json:"purge_after,omitzero"`
	// Unreadable counts manifests that could not be read: never expired.
	Unreadable int    `json:"unreadable,omitempty"`
	Error      string `json:"error,omitempty"`
	// Immutable: points the policy expired but the immutable vault keeps
	// until their expiry (one line each).
	Immutable []string `json:"immutable,omitempty"`
}

// ExpireRecoveryPoints soft-deletes the recovery points of one VM that its
// retention no longer keeps (policy.Expire: never the newest). Retrying it
// is safe: deleted points are no longer listed.
func (a *VaultActivities) ExpireRecoveryPoints(ctx context.Context, in ExpireInput) (ExpireResult, error) {
	defer alive(ctx)()
	res := ExpireResult{VM: in.Target.VM, Policy: in.Target.Policy}
	if err := checkPin(a.Vault, in.Vault); err != nil {
		return res, err
	}
	if in.KeepDeletedFor <= 0 {
		return res, badRequest("retention: the soft-delete period must be positive")
	}
	loc, err := loadLocation(in.Target.TimeZone)
	if err != nil {
		return res, badRequest(fmt.Sprintf("retention of vm %s: %v", in.Target.VM, err))
	}
	rps, err := a.Vault.ListRecoveryPoints(ctx, in.Target.VM)
	var bad int
	if err != nil {
		if !errors.Is(err, vault.ErrCorrupt) {
			return res, classify(err)
		}
		// Unreadable points are neither counted nor expired; 'vault check' reports them.
		bad = len(errorsOf(err))
		activity.GetLogger(ctx).Warn("retention skips unreadable recovery points", "vm", in.Target.VM, "error", err)
	}
	res.Unreadable = bad
	points := make([]policy.Point, len(rps))
	for i, rp := range rps {
		points[i] = policy.Point{ID: rp.Ref(), Time: rp.StartedAt}
	}
	keep, expire := policy.Expire(points, in.Target.Retention, loc)
	res.Kept = len(keep)
	if len(expire) > 0 {
		res.PurgeAfter = in.Now.UTC().Add(in.KeepDeletedFor)
	}
	for _, p := range expire {
		if !in.DryRun {
			_, err := a.Vault.DeleteRecoveryPoint(ctx, p.ID, in.Now, in.KeepDeletedFor)
			if errors.Is(err, vault.ErrImmutable) {
				// Expired by policy, not yet by the immutable vault: kept, and said.
				res.Immutable = append(res.Immutable, err.Error())
				res.Kept++
				continue
			}
			if err != nil && !errors.Is(err, vault.ErrSoftDeleted) {
				return res, classify(err)
			}
		}
		if !in.DryRun {
			faultpoint.Hit("retention.expire")
		}
		res.Expired = append(res.Expired, p.ID)
		activity.RecordHeartbeat(ctx, len(res.Expired))
	}
	return res, nil
}

// PurgeInput purges the soft-deleted points whose period has ended at Now.
type PurgeInput struct {
	Vault          VaultPin      `json:"vault"`
	Now            time.Time     `json:"now"`
	KeepDeletedFor time.Duration `json:"keep_deleted_for"`
	DryRun         bool          `json:"dry_run,omitempty"`
}

// PurgeResult names the points purged (with DryRun: due).
type PurgeResult struct {
	Purged []string `json:"purged,omitempty"`
	// Unreadable tombstones are kept, and reported here.
	Unreadable string `json:"unreadable,omitempty"`
}

// PurgeDeleted removes the tombstones of soft-deleted points past their
// period; their data is left to garbage collection.
func (a *VaultActivities) PurgeDeleted(ctx context.Context, in PurgeInput) (PurgeResult, error) {
	defer alive(ctx)()
	var res PurgeResult
	if err := checkPin(a.Vault, in.Vault); err != nil {
		return res, err
	}
	var err error
	if in.DryRun {
		var due []vault.DeletedPoint
		due, err = a.Vault.Maint().DueForPurge(ctx, in.Now, in.KeepDeletedFor)
		for _, dp := range due {
			res.Purged = append(res.Purged, dp.Ref())
		}
	} else {
		res.Purged, err = a.Vault.Maint().PurgeDeleted(ctx, in.Now, in.KeepDeletedFor)
	}
	if errors.Is(err, vault.ErrCorrupt) {
		res.Unreadable, err = err.Error(), nil // the others were purged; a check reports the rest
	}
	return res, classify(err)
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %v", name, err)
	}
	return loc, nil
}

// errorsOf unpacks an errors.Join.
func errorsOf(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
