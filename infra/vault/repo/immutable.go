package repo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Immutable vaults: SetImmutable records an Immutability in the config,
// covered by the config's MAC, and nothing unsets it. From then on every
// recovery point (older ones included) is protected for Days after it was
// made: soft delete (rp delete, unprotect --delete-data, retention) and
// purge refuse it with ErrImmutable, naming the point and its expiry. With
// ObjectLock the vault also writes packs, index objects and manifests with
// an S3 Object Lock retention of Days from their upload, so even a direct
// delete with the bucket's credentials fails until then, and GC keeps
// locked packs as candidates until their lock ends.
//
// Workers read the setting when they refresh the index (every backup and
// restore) and before every delete, so a running worker obeys it without a
// restart.

// SetImmutable makes the vault immutable for good. Setting the same again
// is a no-op; changing or unsetting it is refused. Object lock needs a
// backend that can lock objects (an S3 bucket with Object Lock enabled).
func (v *Repo) SetImmutable(ctx context.Context, im format.Immutability) (format.Immutability, error) {
	fail := func(err error) (format.Immutability, error) {
		return format.Immutability{}, fmt.Errorf("make vault at %s immutable: %w", v.be.Location(), err)
	}
	im.Since = im.Since.UTC().Truncate(time.Second)
	if err := im.Check(); err != nil {
		return fail(err)
	}
	if im.ObjectLock != "" {
		r, ok := v.be.(storage.Retainer)
		if !ok {
			return fail(fmt.Errorf("object lock needs an s3:// vault in a bucket with object lock enabled"))
		}
		if err := r.CheckRetention(ctx); err != nil {
			return fail(err)
		}
	}
	cfg, err := v.storedConfig(ctx)
	if err != nil {
		return fail(err)
	}
	if old := cfg.Immutable; old != nil {
		if old.Days == im.Days && old.ObjectLock == im.ObjectLock {
			return *old, nil
		}
		return fail(fmt.Errorf("%w: %s; immutability cannot be changed or unset", format.ErrImmutable, old))
	}
	cfg.Immutable = &im
	cfg.MAC = cfg.ComputeMAC(v.keys.Master)
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := v.be.Put(ctx, format.ConfigKey, data); err != nil {
		return fail(fmt.Errorf("write config: %w", err))
	}
	if back, err := v.be.Get(ctx, format.ConfigKey); err != nil || !bytes.Equal(back, data) {
		return fail(fmt.Errorf("read back config: %w", errors.Join(err, format.ErrCorrupt)))
	}
	v.cfgMu.Lock()
	v.cfg.Immutable, v.cfg.MAC = cfg.Immutable, cfg.MAC
	v.cfgMu.Unlock()
	return im, nil
}

// storedConfig reads the config in storage and checks that it is this
// vault's, authenticated by its master key.
func (v *Repo) storedConfig(ctx context.Context) (format.Config, error) {
	data, err := v.be.Get(ctx, format.ConfigKey)
	if err != nil {
		return format.Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := format.ParseConfig(v.be.Location(), data)
	if err != nil {
		return format.Config{}, err
	}
	if cfg.ID != v.Config().ID || !hmac.Equal(cfg.MAC, cfg.ComputeMAC(v.keys.Master)) {
		return format.Config{}, fmt.Errorf("%w: the stored config is not this vault's (%s), or was altered", format.ErrCorrupt, v.Config().ID)
	}
	return cfg, nil
}

// ReloadConfig picks up what SetImmutable and ChangeKey (of another
// process) changed in storage.
func (v *Repo) ReloadConfig(ctx context.Context) error { return v.reloadConfig(ctx) }

func (v *Repo) reloadConfig(ctx context.Context) error {
	cfg, err := v.storedConfig(ctx)
	if err != nil {
		return err
	}
	v.cfgMu.Lock()
	v.cfg.Immutable, v.cfg.KDF, v.cfg.WrappedKey, v.cfg.MAC = cfg.Immutable, cfg.KDF, cfg.WrappedKey, cfg.MAC
	v.cfgMu.Unlock()
	return nil
}

// CheckDeletable fails with ErrImmutable, naming the first point and its
// expiry, if the vault is immutable and any of rps has not expired at now.
// It reads the setting from storage, not from what was opened.
func (v *Repo) CheckDeletable(ctx context.Context, rps []format.RecoveryPoint, now time.Time) error {
	if err := v.reloadConfig(ctx); err != nil {
		return err
	}
	im := v.Config().Immutable
	if im == nil {
		return nil
	}
	var first error
	blocked := 0
	for _, rp := range rps {
		if until := im.ExpiresAt(rp); now.Before(until) {
			if first == nil {
				first = fmt.Errorf("recovery point %s is protected until %s (immutable vault: points are kept %s): %w",
					rp.Ref(), until.Format(time.RFC3339), format.PluralDays(im.Days), format.ErrImmutable)
			}
			blocked++
		}
	}
	if blocked > 1 {
		return fmt.Errorf("%w (and %d more points)", first, blocked-1)
	}
	return first
}

// PutObject writes a vault object, locked when the vault says so.
func (v *Repo) PutObject(ctx context.Context, key string, data []byte) error {
	if im := v.Config().Immutable; im != nil && im.ObjectLock != "" && format.Lockable(key) {
		if r, ok := v.be.(storage.Retainer); ok {
			return r.PutRetained(ctx, key, data, storage.Retention{Mode: im.ObjectLock, Until: time.Now().Add(im.Period())})
		}
	}
	return v.be.Put(ctx, key, data)
}

// LockedUntil is the end of key's object lock, if it is still locked at now
// (only looked up when the vault uses object lock).
func (v *Repo) LockedUntil(ctx context.Context, key string, now time.Time) (time.Time, bool, error) {
	im := v.Config().Immutable
	r, ok := v.be.(storage.Retainer)
	if im == nil || im.ObjectLock == "" || !ok {
		return time.Time{}, false, nil
	}
	until, err := r.RetainedUntil(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return until, now.Before(until), nil
}
