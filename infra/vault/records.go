package vault

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// ErrNoRecord is returned (wrapped) when a record does not exist.
var ErrNoRecord = errors.New("record not found")

// Records are small named settings kept in the vault itself (policies, the
// protection of a VM): sealed JSON objects under <kind>/<name>. They travel
// with the vault, so a vault moved to a new Temporal cluster still knows
// what it protects and how. Unlike everything else in the vault they are
// overwritten in place; storage Puts are atomic, so a reader sees the old
// or the new record, never a torn one.

// recordKind is a lower-case word that is not one of the vault's own
// prefixes.
var recordKind = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// reservedKinds are the vault's own top-level keys: a record must never
// land among packs, indexes or manifests.
var reservedKinds = map[string]bool{
	"config": true, "packs": true, "index": true, "recoverypoints": true, "checkpoints": true,
	"trash": true, "deleted": true, "gc": true, "locks": true,
}

func recordKey(kind, name string) (string, error) {
	if !recordKind.MatchString(kind) || reservedKinds[kind] {
		return "", fmt.Errorf("invalid record kind %q", kind)
	}
	// No slashes (one level below the kind), no dot names (the fs backend's
	// temp files), nothing a terminal or a listing would mangle.
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\\x00\n\r\t ") || len(name) > 255 {
		return "", fmt.Errorf("invalid %s record name %q", kind, name)
	}
	return kind + "/" + name, nil
}

// PutRecord writes obj as the record kind/name, replacing any earlier one.
func (v *Vault) PutRecord(ctx context.Context, kind, name string, obj any) error {
	key, err := recordKey(kind, name)
	if err != nil {
		return err
	}
	return v.putSealed(ctx, key, obj)
}

// GetRecord reads the record kind/name into obj; a missing record is an
// error wrapping ErrNoRecord.
func (v *Vault) GetRecord(ctx context.Context, kind, name string, obj any) error {
	key, err := recordKey(kind, name)
	if err != nil {
		return err
	}
	err = v.getSealed(ctx, key, obj)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%s in %s: %w", key, v.Location(), ErrNoRecord)
	}
	return err
}

// ListRecords returns the names of the records of kind, sorted.
func (v *Vault) ListRecords(ctx context.Context, kind string) ([]string, error) {
	if _, err := recordKey(kind, "x"); err != nil {
		return nil, err
	}
	prefix := kind + "/"
	var names []string
	err := v.be.List(ctx, prefix, func(key string, _ int64) error {
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
func (v *Vault) DeleteRecord(ctx context.Context, kind, name string) error {
	key, err := recordKey(kind, name)
	if err != nil {
		return err
	}
	if _, err := v.be.Stat(ctx, key); errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%s in %s: %w", key, v.Location(), ErrNoRecord)
	} else if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := v.be.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
