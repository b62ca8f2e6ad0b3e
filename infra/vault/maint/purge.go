package maint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// PurgeDeleted removes, for good, the soft-deleted points whose period has
// ended at now: those past their PurgeAfter, or deleted keepFor or longer
// ago (keepFor <= 0: PurgeAfter alone decides). It returns their refs. Only
// tombstones (and leftover manifests of interrupted deletes) are removed;
// the data is left for garbage collection. Unreadable tombstones are kept
// and reported.
func (v *maintainer) PurgeDeleted(ctx context.Context, now time.Time, keepFor time.Duration) ([]string, error) {
	list, err := v.DueForPurge(ctx, now, keepFor)
	var purged []string
	for _, dp := range list {
		ok, perr := v.purge(ctx, dp, now, keepFor)
		if perr != nil {
			return purged, perr
		}
		if ok {
			purged = append(purged, dp.Ref())
		}
	}
	return purged, err
}

// purge removes one due point under its claim, so that an undelete under
// way wins and one started meanwhile fails saying the point is being purged
// (repo/claim.go). The tombstone is read again under the claim: the point
// may have been undeleted (or deleted again, later) since the listing.
func (v *maintainer) purge(ctx context.Context, dp format.DeletedPoint, now time.Time, keepFor time.Duration) (bool, error) {
	if ierr := v.CheckDeletable(ctx, []format.RecoveryPoint{dp.RecoveryPoint}, now); errors.Is(ierr, format.ErrImmutable) {
		return false, nil // deleted before the vault became immutable: kept until it expires
	} else if ierr != nil {
		return false, ierr
	}
	release, undeleting, err := v.ClaimPoint(ctx, dp.VM, dp.ID, format.ClaimPurge, now)
	if err != nil {
		return false, fmt.Errorf("purge %s: %w", dp.Ref(), err)
	}
	if undeleting != nil {
		return false, nil // an undelete is under way: it wins
	}
	defer release()
	switch cur, err := v.LoadTombstone(ctx, dp.VM, dp.ID); {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil // undeleted, or purged, meanwhile
	case err != nil:
		return false, fmt.Errorf("purge %s: %w", dp.Ref(), err)
	case !due(cur, now, keepFor):
		return false, nil
	}
	// The manifest of an interrupted delete goes first: removing the
	// tombstone first would bring the point back.
	if err := v.DeleteKey(ctx, format.RecoveryPointKey(dp.VM, dp.ID)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return false, fmt.Errorf("purge %s: %w", dp.Ref(), err)
	}
	if err := v.DeleteKey(ctx, format.TombstoneKey(dp.VM, dp.ID)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return false, fmt.Errorf("purge %s: %w", dp.Ref(), err)
	}
	faultpoint.Hit("retention.purge")
	return true, nil
}

// due says whether dp's soft-delete period has ended at now.
func due(dp format.DeletedPoint, now time.Time, keepFor time.Duration) bool {
	return !now.Before(dp.PurgeAfter) || (keepFor > 0 && !now.Before(dp.DeletedAt.Add(keepFor)))
}

// DueForPurge lists the soft-deleted points PurgeDeleted would remove.
func (v *maintainer) DueForPurge(ctx context.Context, now time.Time, keepFor time.Duration) ([]format.DeletedPoint, error) {
	all, err := v.ListDeleted(ctx, "")
	if all == nil && err != nil {
		return nil, err
	}
	var list []format.DeletedPoint
	for _, dp := range all {
		if due(dp, now, keepFor) {
			list = append(list, dp)
		}
	}
	return list, err
}
