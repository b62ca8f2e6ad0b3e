package maint

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// RepairReport says what Repair found and did.
type RepairReport struct {
	// Packs is the number of packs in the vault.
	Packs int `json:"packs"`
	// Reindexed are the packs that had no valid index object and were given
	// one, rebuilt from their verified header.
	Reindexed []format.ID `json:"reindexed,omitempty"`
	// RemovedIndex are the index objects deleted because their pack is missing.
	RemovedIndex []string `json:"removed_index,omitempty"`
	// BadPacks failed verification. They are not deleted (a pack is the
	// only copy of what it holds) but quarantined: out of dedup, their
	// sound blobs copied into new packs (Quarantined).
	BadPacks    []PackProblem      `json:"bad_packs,omitempty"`
	Quarantined []QuarantineReport `json:"quarantined,omitempty"`
	// DamagedPoints are the recovery points that name a damaged blob of a
	// quarantined pack or a lost one, "<vm>/<id>" (looked for only when
	// this repair quarantined a pack): the next backup of their VMs stores
	// those blocks again if the disks still hold them.
	DamagedPoints []string `json:"damaged_points,omitempty"`
}

// PackProblem is a pack that failed verification, and why.
type PackProblem struct {
	Pack   format.ID `json:"pack"`
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
}

// Repair makes the index objects agree with the packs. Every pack without a
// valid index object (none, unreadable, or of another size) is read whole
// and verified: its header authenticates, its content hashes to its name,
// and every blob opens and hashes to its id; then its index object is
// written again, as a backup writes it. A pack that fails is reported and
// quarantined (quarantine.go), and the points it damages are named. Index objects naming a missing pack are deleted: they are
// derived data (every pack carries its own header, so a pack that turns up
// again is re-indexed by the next Repair), and they are what made dedup
// trust lost data. Repair is idempotent, and safe next to running backups:
// index objects are listed before packs, and a backup writes a pack before
// its index object, so a pack is never taken for missing.
func (v *maintainer) Repair(ctx context.Context) (RepairReport, error) {
	var rep RepairReport
	var indexKeys []string
	if err := v.Storage().List(ctx, format.KindIndex.Prefix(), func(key string, _ int64) error {
		if _, _, ok := format.ParseIndexKey(key); ok {
			indexKeys = append(indexKeys, key)
		}
		return nil
	}); err != nil {
		return rep, fmt.Errorf("repair: list index in %s: %w", v.Storage().Location(), err)
	}
	packs, err := index.ListPacks(ctx, v.Storage())
	if err != nil {
		return rep, fmt.Errorf("repair: %w", err)
	}
	rep.Packs = len(packs)
	if err := v.dropStaleNotes(ctx, packs); err != nil {
		return rep, fmt.Errorf("repair: %w", err)
	}

	// valid are the packs whose index object is readable and of their size.
	var mu sync.Mutex
	valid := map[format.ID]bool{}
	stale := map[format.ID][]string{} // unreadable or of another size: replaced by a re-index
	var remove []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, key := range indexKeys {
		g.Go(func() error {
			id, _, _ := format.ParseIndexKey(key)
			pi, err := index.GetPackIndex(gctx, v.Storage(), v.Keys(), key)
			if err != nil && !errors.Is(err, format.ErrCorrupt) {
				if errors.Is(err, storage.ErrNotFound) {
					return nil
				}
				return fmt.Errorf("repair: %w", err)
			}
			size, stored := packs[id]
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !stored:
				remove = append(remove, key)
			case err == nil && pi.Size == size:
				valid[id] = true
			default:
				stale[id] = append(stale[id], key)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}
	if err := v.removeIndexObjects(ctx, &rep, remove); err != nil {
		return rep, err
	}

	var todo []format.ID
	for id := range packs {
		if !valid[id] {
			todo = append(todo, id)
		}
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].String() < todo[j].String() })
	if err := v.reindex(ctx, &rep, todo, stale); err != nil {
		return rep, err
	}
	sort.Slice(rep.BadPacks, func(i, j int) bool { return rep.BadPacks[i].Key < rep.BadPacks[j].Key })
	if err := v.quarantineBad(ctx, &rep, stale); err != nil {
		return rep, err
	}
	if _, err := v.RefreshIndex(ctx); err != nil {
		return rep, fmt.Errorf("repair: %w", err)
	}
	return rep, nil
}

// removeIndexObjects deletes the index objects of missing packs, after
// naming the packs in GC's deletion log.
func (v *maintainer) removeIndexObjects(ctx context.Context, rep *RepairReport, remove []string) error {
	sort.Strings(remove)
	if len(remove) > 0 {
		// Every worker's next refresh forgets these packs through the
		// deletion log, as it does GC's deletions; the log says they were
		// lost, so replication keeps the secondary's copies.
		var gone []format.ID
		for _, key := range remove {
			id, _, _ := format.ParseIndexKey(key)
			gone = append(gone, id)
		}
		if _, err := v.logDeletions(ctx, gone, time.Now().UTC(), true); err != nil {
			return fmt.Errorf("repair: %w", err)
		}
		faultpoint.Hit("repair.unindex")
	}
	for _, key := range remove {
		if err := v.Storage().Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("repair: delete %s: %w", key, err)
		}
		rep.RemovedIndex = append(rep.RemovedIndex, key)
	}
	return nil
}

// reindex verifies each pack of todo and writes its index object again,
// deleting its stale ones (unreadable or of another size) after; a pack
// that fails verification goes to rep.BadPacks.
func (v *maintainer) reindex(ctx context.Context, rep *RepairReport, todo []format.ID, stale map[format.ID][]string) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4) // whole packs in memory
	for _, id := range todo {
		g.Go(func() error {
			pi, err := v.verifyPack(gctx, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, format.ErrCorrupt):
				rep.BadPacks = append(rep.BadPacks, PackProblem{Pack: id, Key: format.PackKey(id), Reason: err.Error()})
				return nil
			case errors.Is(err, storage.ErrNotFound):
				return nil // deleted since listed (GC)
			case err != nil:
				return fmt.Errorf("repair: %w", err)
			}
			if err := v.PutPackIndex(gctx, pi); err != nil {
				return fmt.Errorf("repair: %w", err)
			}
			for _, key := range stale[id] { // the new index object is durable
				if err := v.Storage().Delete(gctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("repair: delete %s: %w", key, err)
				}
			}
			faultpoint.Hit("repair.reindex")
			rep.Reindexed = append(rep.Reindexed, id)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	sort.Slice(rep.Reindexed, func(i, j int) bool { return rep.Reindexed[i].String() < rep.Reindexed[j].String() })
	return nil
}

// quarantineBad quarantines the packs that failed verification (their
// blobs from their header or, truncated, from an index object of theirs in
// stale) and names the recovery points they damage.
func (v *maintainer) quarantineBad(ctx context.Context, rep *RepairReport, stale map[format.ID][]string) error {
	if len(rep.BadPacks) == 0 {
		return nil
	}
	bad := map[format.ID]string{}
	entries := map[format.ID][]format.IndexEntry{}
	for _, p := range rep.BadPacks {
		bad[p.Pack] = p.Reason
		for _, key := range stale[p.Pack] {
			if pi, err := index.GetPackIndex(ctx, v.Storage(), v.Keys(), key); err == nil {
				entries[p.Pack] = pi.Entries
				break
			}
		}
	}
	var err error
	if rep.Quarantined, err = v.quarantineAll(ctx, bad, entries, false); err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	chk, err := v.Check(ctx, CheckOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	rep.DamagedPoints = chk.Damaged
	return nil
}

// verifyPack reads a whole pack and returns its index if the pack is sound:
// its header authenticates, it hashes to its name, and every blob opens and
// hashes to its id. Damage is reported wrapping ErrCorrupt.
func (v *maintainer) verifyPack(ctx context.Context, id format.ID) (format.PackIndex, error) {
	key := format.PackKey(id)
	data, err := v.Storage().Get(ctx, key)
	if err != nil {
		return format.PackIndex{}, fmt.Errorf("get %s: %w", key, err)
	}
	if got := v.Keys().Hash(data); got != id {
		return format.PackIndex{}, fmt.Errorf("%s: %w: content hashes to %s", key, format.ErrCorrupt, got.Short())
	}
	body, entries, err := v.PackHeader(data)
	if err != nil {
		return format.PackIndex{}, fmt.Errorf("%s: %w", key, err)
	}
	for _, e := range entries {
		if _, err := v.Keys().OpenBlob(e.ID, body[e.Offset:e.Offset+e.Length]); err != nil {
			return format.PackIndex{}, fmt.Errorf("%s: blob %s at %d: %w", key, e.ID.Short(), e.Offset, err)
		}
	}
	return format.PackIndex{Pack: id, Size: int64(len(data)), Entries: entries}, nil
}
