package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Records are small named settings kept in the vault itself (policies, the
// protection of a VM): sealed JSON objects under <kind>/<name>. They travel
// with the vault, so a vault moved to a new Temporal cluster still knows
// what it protects and how. Unlike everything else in the vault they are
// overwritten in place; storage Puts are atomic, so a reader sees the old
// or the new record, never a torn one.

// PutRecord writes obj as the record kind/name, replacing any earlier one.
func (v *Repo) PutRecord(ctx context.Context, kind, name string, obj any) error {
	key, err := format.RecordKey(kind, name)
	if err != nil {
		return err
	}
	return v.PutSealed(ctx, key, obj)
}

// GetRecord reads the record kind/name into obj; a missing record is an
// error wrapping ErrNoRecord.
func (v *Repo) GetRecord(ctx context.Context, kind, name string, obj any) error {
	key, err := format.RecordKey(kind, name)
	if err != nil {
		return err
	}
	err = v.GetSealed(ctx, key, obj)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%s in %s: %w", key, v.Location(), format.ErrNoRecord)
	}
	return err
}

// ListRecords returns the names of the records of kind, sorted.
func (v *Repo) ListRecords(ctx context.Context, kind string) ([]string, error) {
	prefix, err := format.RecordPrefix(kind)
	if err != nil {
		return nil, err
	}
	var names []string
	err = v.be.List(ctx, prefix, func(key string, _ int64) error {
		name := strings.TrimPrefix(key, prefix)
		// Only direct children; the fs backend's temp files start with a dot.
		if name != "" && !strings.Contains(name, "/") && !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", prefix, v.Location(), err)
	}
	sort.Strings(names)
	return names, nil
}

// DeleteRecord removes the record kind/name; a missing record is an error
// wrapping ErrNoRecord.
func (v *Repo) DeleteRecord(ctx context.Context, kind, name string) error {
	key, err := format.RecordKey(kind, name)
	if err != nil {
		return err
	}
	if _, err := v.be.Stat(ctx, key); errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%s in %s: %w", key, v.Location(), format.ErrNoRecord)
	} else if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := v.be.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
