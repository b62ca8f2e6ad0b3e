package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
)

// The vault's use of its index (the index package keeps it and loads it).

// SetIndexOptions sets where the index keeps its runs and how often it
// reconciles; it takes effect for an index not loaded yet.
func (v *Repo) SetIndexOptions(o index.Options) { v.idx.SetOptions(o) }

// Index returns the vault's index, loading it on first use. Call
// RefreshIndex to see packs written by other processes since.
func (v *Repo) Index(ctx context.Context) (*index.Index, error) {
	if idx := v.idx.Loaded(); idx != nil {
		return idx, nil
	}
	return v.RefreshIndex(ctx)
}

// RefreshIndex adds the index objects written since the last refresh and
// forgets the packs GC deleted since; every DefaultReconcile (or
// IndexOptions.Reconcile) it loads fully instead (see Store.Refresh). It
// rereads the config first: immutability may have been set since Open.
func (v *Repo) RefreshIndex(ctx context.Context) (*index.Index, error) {
	return v.refreshIndex(ctx, false)
}

// ReconcileIndex is RefreshIndex with a full load: every index object and
// pack is listed, so packs lost outside GC are forgotten and index objects
// a refresh could not see are added.
func (v *Repo) ReconcileIndex(ctx context.Context) (*index.Index, error) {
	return v.refreshIndex(ctx, true)
}

func (v *Repo) refreshIndex(ctx context.Context, full bool) (*index.Index, error) {
	if err := v.reloadConfig(ctx); err != nil {
		return nil, err
	}
	return v.idx.Refresh(ctx, full)
}

// Locate is idx.Lookup that, on a miss, reloads the index fully once
// (at most every missReload) and looks again: the blob may be in an index
// object a refresh could not see.
func (v *Repo) Locate(ctx context.Context, idx *index.Index, id format.ID) (index.Location, bool, error) {
	if loc, ok := idx.Lookup(id); ok {
		return loc, true, nil
	}
	if !v.idx.Stale() {
		return index.Location{}, false, nil
	}
	idx, err := v.ReconcileIndex(ctx)
	if err != nil {
		return index.Location{}, false, err
	}
	loc, ok := idx.Lookup(id)
	return loc, ok, nil
}

// PutPackIndex writes pi's index object, named by the time now.
func (v *Repo) PutPackIndex(ctx context.Context, pi format.PackIndex) error {
	key := format.IndexKeyAt(pi.Pack, time.Now())
	if err := v.PutObject(ctx, key, v.keys.Seal(nil, format.EncodePackIndex(pi), []byte(key))); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}
