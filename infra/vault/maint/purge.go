package maint

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	due, err := v.DueForPurge(ctx, now, keepFor)
	var purged []string
	for _, dp := range due {
		if ierr := v.CheckDeletable(ctx, []format.RecoveryPoint{dp.RecoveryPoint}, now); errors.Is(ierr, format.ErrImmutable) {
			continue // deleted before the vault became immutable: kept until it expires
		} else if ierr != nil {
			return purged, ierr
		}
		// The manifest of an interrupted delete goes first: removing the
		// tombstone first would bring the point back.
		if err := v.DeleteKey(ctx, format.RecoveryPointKey(dp.VM, dp.ID)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return purged, fmt.Errorf("purge %s: %w", dp.Ref(), err)
		}
		if err := v.DeleteKey(ctx, format.TombstoneKey(dp.VM, dp.ID)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return purged, fmt.Errorf("purge %s: %w", dp.Ref(), err)
		}
		purged = append(purged, dp.Ref())
	}
	return purged, err
}

// DueForPurge lists the soft-deleted points PurgeDeleted would remove.
func (v *maintainer) DueForPurge(ctx context.Context, now time.Time, keepFor time.Duration) ([]format.DeletedPoint, error) {
	all, err := v.ListDeleted(ctx, "")
	if all == nil && err != nil {
		return nil, err
	}
	var due []format.DeletedPoint
	for _, dp := range all {
		if !now.Before(dp.PurgeAfter) || (keepFor > 0 && !now.Before(dp.DeletedAt.Add(keepFor))) {
			due = append(due, dp)
		}
	}
	return due, err
}
