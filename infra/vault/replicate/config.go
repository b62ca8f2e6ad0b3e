package replicate

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// replicateConfig copies the primary's config when the secondary's
// differs. The config is read once: the bytes parsed and, with the vault's
// keys, authenticated by its MAC are the bytes written, so a config
// swapped on the primary after the check is never copied. A secondary
// config is replaced only by an authenticated config of the same vault:
// never one of another vault id, nor one that does not parse (whose
// vault cannot be told), nor, without the keys, at all (a conflict).
func replicateConfig(ctx context.Context, src, dst storage.Backend, keys *format.Keys, rep *Report) (bool, error) {
	data, err := src.Get(ctx, format.ConfigKey)
	if errors.Is(err, storage.ErrNotFound) {
		return false, fmt.Errorf("the primary has no vault config: %w (refusing to replicate: a primary that is gone must not look empty)", format.ErrNoVault)
	}
	if err != nil {
		return false, err
	}
	cfg, err := format.ParseConfig(src.Location(), data)
	if err != nil {
		return false, err
	}
	if keys != nil && !hmac.Equal(cfg.MAC, cfg.ComputeMAC(keys.Master)) {
		return false, fmt.Errorf("the primary's config (vault %s) is not authenticated by the vault's key: %w (not copied)", cfg.ID, format.ErrCorrupt)
	}
	old, err := dst.Get(ctx, format.ConfigKey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if err := dst.PutIfAbsent(ctx, format.ConfigKey, data); err != nil {
			return false, fmt.Errorf("secondary: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("secondary: %w", err)
	case bytes.Equal(old, data):
		return false, nil
	}
	ocfg, err := format.ParseConfig(dst.Location(), old)
	if err != nil {
		return false, fmt.Errorf("the secondary's config cannot be read (%v): refusing to replace it, it may be another vault's only key: %w", err, format.ErrVaultExists)
	}
	if ocfg.ID != cfg.ID {
		return false, fmt.Errorf("the secondary holds another vault (%s), not %s: %w", ocfg.ID, cfg.ID, format.ErrVaultExists)
	}
	if keys == nil {
		rep.ConflictCount++
		rep.Conflicts = append(rep.Conflicts, Conflict{Key: format.ConfigKey, PrimaryBytes: int64(len(data)), SecondaryBytes: int64(len(old)),
			Primary: VerdictUnverified, Secondary: VerdictUnverified})
		return false, nil
	}
	if err := dst.Put(ctx, format.ConfigKey, data); err != nil {
		return false, fmt.Errorf("secondary: %w", err)
	}
	return true, nil
}
