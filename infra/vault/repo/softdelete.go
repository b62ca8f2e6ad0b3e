package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Soft delete: deleting a recovery point moves its manifest into a sealed
// tombstone under deleted/<vm>/<id> and leaves its data alone, so the point
// can be undeleted until the tombstone's PurgeAfter; purging removes the
// tombstone, after which garbage collection frees what only it referenced.
//
// Undelete and purge of one point exclude each other (claim.go). Every
// move writes the new object before it removes the old one, so a crash
// leaves both, never neither: a point that has a tombstone is deleted
// whether or not its manifest is still there (listings and loads hide it;
// the next delete or purge removes the leftover manifest), and undelete
// writes the manifest back before it removes the tombstone.

// DeleteRecoveryPoint soft-deletes the recovery point ref ("<vm>/<id>" or
// an id) at now: it can be undeleted until now+keepFor. No data is removed.
// Deleting a point whose earlier delete was interrupted finishes it.
func (v *Repo) DeleteRecoveryPoint(ctx context.Context, ref string, now time.Time, keepFor time.Duration) (format.DeletedPoint, error) {
	vm, id, err := v.ResolveRef(ctx, ref)
	if err != nil {
		return format.DeletedPoint{}, err
	}
	if dp, err := v.LoadTombstone(ctx, vm, id); err == nil {
		// Deleted before: finish an interrupted delete, or say it is done.
		if _, err := v.be.Stat(ctx, format.RecoveryPointKey(vm, id)); err == nil {
			return dp, v.DeleteKey(ctx, format.RecoveryPointKey(vm, id))
		}
		return dp, format.DeletedError{Point: dp}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return format.DeletedPoint{}, err
	}
	rp, err := v.GetRecoveryPoint(ctx, format.RecoveryPointKey(vm, id))
	if errors.Is(err, storage.ErrNotFound) {
		return format.DeletedPoint{}, fmt.Errorf("recovery point %s in %s: %w", ref, v.be.Location(), format.ErrNoRecoveryPoint)
	}
	if err != nil {
		return format.DeletedPoint{}, err
	}
	if err := v.CheckDeletable(ctx, []format.RecoveryPoint{rp}, now); err != nil {
		return format.DeletedPoint{}, err
	}
	ts := format.Tombstone{RecoveryPoint: rp, DeletedAt: now.UTC(), PurgeAfter: now.UTC().Add(keepFor)}
	if err := v.PutSealed(ctx, format.TombstoneKey(vm, id), ts); err != nil {
		return format.DeletedPoint{}, fmt.Errorf("delete recovery point %s: %w", rp.Ref(), err)
	}
	if err := v.DeleteKey(ctx, format.RecoveryPointKey(vm, id)); err != nil {
		return format.DeletedPoint{}, fmt.Errorf("delete recovery point %s: %w", rp.Ref(), err)
	}
	return ts.Point(), nil
}

// UndeleteRecoveryPoint brings a soft-deleted recovery point back, if its
// soft-delete period has not ended at now.
func (v *Repo) UndeleteRecoveryPoint(ctx context.Context, ref string, now time.Time) (format.RecoveryPoint, error) {
	vm, id, err := v.ResolveRef(ctx, ref)
	if err != nil {
		return format.RecoveryPoint{}, err
	}
	// Under the point's claim, so that a purge cannot remove the manifest
	// written back below (claim.go).
	release, purging, err := v.ClaimPoint(ctx, vm, id, format.ClaimUndelete, now)
	if err != nil {
		return format.RecoveryPoint{}, fmt.Errorf("undelete recovery point %s/%s: %w", vm, id, err)
	}
	if purging != nil {
		return format.RecoveryPoint{}, fmt.Errorf("recovery point %s/%s is being purged (since %s); it can no longer be undeleted: %w",
			vm, id, purging.At.UTC().Format(time.RFC3339), format.ErrSoftDeleted)
	}
	defer release()
	dp, err := v.LoadTombstone(ctx, vm, id)
	if errors.Is(err, storage.ErrNotFound) {
		if _, err := v.be.Stat(ctx, format.RecoveryPointKey(vm, id)); err == nil {
			return format.RecoveryPoint{}, fmt.Errorf("recovery point %s is not deleted", ref)
		}
		return format.RecoveryPoint{}, fmt.Errorf("deleted recovery point %s in %s: %w (purged, or never deleted)", ref, v.be.Location(), format.ErrNoRecoveryPoint)
	}
	if err != nil {
		return format.RecoveryPoint{}, err
	}
	if !now.Before(dp.PurgeAfter) {
		return format.RecoveryPoint{}, fmt.Errorf("recovery point %s: its soft-delete period ended at %s; it can no longer be undeleted: %w",
			dp.Ref(), dp.PurgeAfter.UTC().Format(time.RFC3339), format.ErrSoftDeleted)
	}
	if err := v.PutSealed(ctx, format.RecoveryPointKey(vm, id), dp.RecoveryPoint); err != nil {
		return format.RecoveryPoint{}, fmt.Errorf("undelete recovery point %s: %w", dp.Ref(), err)
	}
	if err := v.DeleteKey(ctx, format.TombstoneKey(vm, id)); err != nil {
		return format.RecoveryPoint{}, fmt.Errorf("undelete recovery point %s: %w", dp.Ref(), err)
	}
	return dp.RecoveryPoint, nil
}

// ListDeleted returns the soft-deleted recovery points of vm (all VMs if
// ""), oldest first. Tombstones that do not open or decode are left out and
// reported in the error (wrapping ErrCorrupt).
func (v *Repo) ListDeleted(ctx context.Context, vm string) ([]format.DeletedPoint, error) {
	prefix := format.KindTombstone.Prefix()
	if vm != "" {
		if err := format.CheckName("vm", vm); err != nil {
			return nil, err
		}
		prefix += vm + "/"
	}
	keys, err := v.ListKeys(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var list []format.DeletedPoint
	var errs []error
	for _, key := range keys {
		dp, err := v.readTombstone(ctx, key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue // undeleted or purged meanwhile
		case errors.Is(err, format.ErrCorrupt):
			errs = append(errs, err)
			continue
		case err != nil:
			return nil, err
		}
		list = append(list, dp)
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].StartedAt.Equal(list[j].StartedAt) {
			return list[i].StartedAt.Before(list[j].StartedAt)
		}
		return list[i].Ref() < list[j].Ref()
	})
	return list, errors.Join(errs...)
}

// DeletedSet returns the "<vm>/<id>" of every tombstone under prefix.
func (v *Repo) DeletedSet(ctx context.Context, prefix string) (map[string]bool, error) {
	keys, err := v.ListKeys(ctx, prefix)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(keys))
	for _, k := range keys {
		set[strings.TrimPrefix(k, format.KindTombstone.Prefix())] = true
	}
	return set, nil
}

// LoadTombstone reads the tombstone of vm's point id.
func (v *Repo) LoadTombstone(ctx context.Context, vm, id string) (format.DeletedPoint, error) {
	return v.readTombstone(ctx, format.TombstoneKey(vm, id))
}

// readTombstone reads and checks the tombstone at key; a missing one wraps
// storage.ErrNotFound.
func (v *Repo) readTombstone(ctx context.Context, key string) (format.DeletedPoint, error) {
	var ts format.Tombstone
	if err := v.GetSealed(ctx, key, &ts); err != nil {
		return format.DeletedPoint{}, err
	}
	rp := ts.RecoveryPoint
	if format.TombstoneKey(rp.VM, rp.ID) != key || format.CheckName("vm", rp.VM) != nil || format.CheckName("recovery point", rp.ID) != nil {
		return format.DeletedPoint{}, fmt.Errorf("%s in %s: %w: tombstone names %q/%q", key, v.be.Location(), format.ErrCorrupt, rp.VM, rp.ID)
	}
	return ts.Point(), nil
}
