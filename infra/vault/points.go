package vault

import (
	"context"
	"time"
)

// Recovery points and records: the repository's, under the names callers
// use (package repo: recoverypoint.go, softdelete.go, records.go).

// SaveRecoveryPoint writes a recovery point, after every disk backup it
// names has finished.
func (v *Vault) SaveRecoveryPoint(ctx context.Context, rp RecoveryPoint) error {
	return v.r.SaveRecoveryPoint(ctx, rp)
}

// LoadRecoveryPoint reads the recovery point ref ("<vm>/<id>" or an id).
func (v *Vault) LoadRecoveryPoint(ctx context.Context, ref string) (RecoveryPoint, error) {
	return v.r.LoadRecoveryPoint(ctx, ref)
}

// ListRecoveryPoints returns the VM's recovery points (every VM's for ""),
// oldest first, without the soft-deleted ones.
func (v *Vault) ListRecoveryPoints(ctx context.Context, vm string) ([]RecoveryPoint, error) {
	return v.r.ListRecoveryPoints(ctx, vm)
}

// DeleteRecoveryPoint soft-deletes ref at now, undeletable until
// now+keepFor.
func (v *Vault) DeleteRecoveryPoint(ctx context.Context, ref string, now time.Time, keepFor time.Duration) (DeletedPoint, error) {
	return v.r.DeleteRecoveryPoint(ctx, ref, now, keepFor)
}

// UndeleteRecoveryPoint brings a soft-deleted point back.
func (v *Vault) UndeleteRecoveryPoint(ctx context.Context, ref string, now time.Time) (RecoveryPoint, error) {
	return v.r.UndeleteRecoveryPoint(ctx, ref, now)
}

// ListDeleted returns the VM's soft-deleted points (every VM's for "").
func (v *Vault) ListDeleted(ctx context.Context, vm string) ([]DeletedPoint, error) {
	return v.r.ListDeleted(ctx, vm)
}

// PutRecord writes obj as the record kind/name, replacing any earlier one.
func (v *Vault) PutRecord(ctx context.Context, kind, name string, obj any) error {
	return v.r.PutRecord(ctx, kind, name, obj)
}

// GetRecord reads the record kind/name into obj (ErrNoRecord if missing).
func (v *Vault) GetRecord(ctx context.Context, kind, name string, obj any) error {
	return v.r.GetRecord(ctx, kind, name, obj)
}

// ListRecords returns the names of the records of kind, sorted.
func (v *Vault) ListRecords(ctx context.Context, kind string) ([]string, error) {
	return v.r.ListRecords(ctx, kind)
}

// DeleteRecord removes the record kind/name (ErrNoRecord if missing).
func (v *Vault) DeleteRecord(ctx context.Context, kind, name string) error {
	return v.r.DeleteRecord(ctx, kind, name)
}
