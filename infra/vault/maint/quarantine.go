package maint

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Quarantine: a pack that fails verification (a blob that does not open or
// hash to its id) is noted under quarantine/<pack>, which takes it out of
// every worker's dedup at its next index refresh (index.ListQuarantined);
// its sound blobs are then copied, verified, into a new pack, as a repack
// copies them. The damaged blobs have no sound copy left: the next backup
// of a disk that still holds them stores them again, which heals every
// point that names them (ids are content hashes). GC treats a quarantined
// pack's damaged blobs as no copy at all (gc_scan.go).

// QuarantineReport is one pack put in quarantine.
type QuarantineReport struct {
	Pack   format.ID `json:"pack"`
	Reason string    `json:"reason"`
	// Damaged are the blobs that failed verification.
	Damaged []format.ID `json:"damaged,omitempty"`
	// Salvaged sound blobs were copied into NewPacks (those with a sound
	// copy elsewhere already were not).
	Salvaged int `json:"salvaged"`
	NewPacks int `json:"new_packs"`
}

// errSound: the pack read whole again verifies blob by blob, so what
// failed before was the read, not the pack.
var errSound = errors.New("every blob verifies")

// quarantine notes pack as quarantined and salvages its sound blobs.
// entries lists its blobs when its header cannot (a truncated pack's index
// object); nil reads them from its header. With onlyDamaged, a pack whose
// blobs all verify when read whole again is left alone (errSound): Check
// read a range that came back damaged in transit. It is idempotent: the
// first note stays, and blobs already salvaged are not copied again.
func (v *maintainer) quarantine(ctx context.Context, pack format.ID, entries []format.IndexEntry, reason string, onlyDamaged bool) (QuarantineReport, error) {
	rep := QuarantineReport{Pack: pack, Reason: reason}
	key := format.PackKey(pack)
	data, err := v.Storage().Get(ctx, key)
	if err != nil {
		return rep, fmt.Errorf("quarantine %s: %w", key, err)
	}
	if _, e, err := v.PackHeader(data); err == nil {
		entries = e
	}
	var sound []format.IndexEntry
	for _, e := range entries {
		end := int64(e.Offset) + int64(e.Length)
		if end > int64(len(data)) {
			rep.Damaged = append(rep.Damaged, e.ID)
			continue
		}
		if _, err := v.Keys().OpenBlob(e.ID, data[e.Offset:end]); err != nil {
			rep.Damaged = append(rep.Damaged, e.ID)
			continue
		}
		sound = append(sound, e)
	}
	if onlyDamaged && len(entries) > 0 && len(rep.Damaged) == 0 {
		return rep, errSound
	}
	qkey := format.QuarantineKey(pack)
	note, err := format.SealJSON(v.Keys(), qkey, format.Quarantine{Pack: pack, At: time.Now().UTC(), Reason: reason, Damaged: rep.Damaged})
	if err != nil {
		return rep, err
	}
	if err := v.Storage().PutIfAbsent(ctx, qkey, note); err != nil && !errors.Is(err, storage.ErrExists) {
		return rep, fmt.Errorf("quarantine: put %s: %w", qkey, err)
	}
	// Out of this process's dedup at once, and of the salvage's below.
	idx, err := v.RefreshIndex(ctx)
	if err != nil {
		return rep, fmt.Errorf("quarantine %s: %w", key, err)
	}
	pk := repo.NewPacker(ctx, v.Repo)
	defer pk.Abort()
	for _, e := range sound {
		if pk.Has(idx, e.ID) {
			continue // a sound copy outside quarantine
		}
		sealed := append([]byte(nil), data[e.Offset:int64(e.Offset)+int64(e.Length)]...)
		if _, err := pk.AddBlob(e.ID, e.Type, sealed); err != nil {
			return rep, fmt.Errorf("quarantine %s: salvage: %w", key, err)
		}
		rep.Salvaged++
	}
	if err := pk.Finish(); err != nil {
		return rep, fmt.Errorf("quarantine %s: salvage: %w", key, err)
	}
	rep.NewPacks = pk.Uploaded()
	return rep, nil
}

// quarantineAll quarantines each of bad (pack -> why), in order of id
// (onlyDamaged: see quarantine).
func (v *maintainer) quarantineAll(ctx context.Context, bad map[format.ID]string, entries map[format.ID][]format.IndexEntry, onlyDamaged bool) ([]QuarantineReport, error) {
	ids := make([]format.ID, 0, len(bad))
	for id := range bad {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	var out []QuarantineReport
	for _, id := range ids {
		q, err := v.quarantine(ctx, id, entries[id], bad[id], onlyDamaged)
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, errSound) {
			continue // deleted since (GC), or sound after all
		}
		if err != nil {
			return out, err
		}
		out = append(out, q)
	}
	return out, nil
}

// readQuarantine returns every quarantined pack and its damaged blobs. A
// note that does not open still quarantines its pack, with no blob known
// damaged.
func (v *maintainer) readQuarantine(ctx context.Context) (map[format.ID]map[format.ID]bool, error) {
	out := map[format.ID]map[format.ID]bool{}
	var keys []string
	if err := v.Storage().List(ctx, format.KindQuarantine.Prefix(), func(key string, _ int64) error {
		if _, ok := format.ParseQuarantineKey(key); ok {
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", format.KindQuarantine.Prefix(), v.Storage().Location(), err)
	}
	for _, key := range keys {
		id, _ := format.ParseQuarantineKey(key)
		damaged := map[format.ID]bool{}
		var q format.Quarantine
		err := format.GetSealed(ctx, v.Storage(), v.Keys(), key, &q)
		switch {
		case err == nil:
			for _, b := range q.Damaged {
				damaged[b] = true
			}
		case errors.Is(err, storage.ErrNotFound):
			continue
		case !errors.Is(err, format.ErrCorrupt):
			return nil, err
		}
		out[id] = damaged
	}
	return out, nil
}

// dropStaleNotes deletes the quarantine notes of packs no longer stored
// (packs is every stored pack): there is nothing left to keep out of dedup.
func (v *maintainer) dropStaleNotes(ctx context.Context, packs map[format.ID]int64) error {
	var stale []string
	if err := v.Storage().List(ctx, format.KindQuarantine.Prefix(), func(key string, _ int64) error {
		if id, ok := format.ParseQuarantineKey(key); ok {
			if _, stored := packs[id]; !stored {
				stale = append(stale, key)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list %s in %s: %w", format.KindQuarantine.Prefix(), v.Storage().Location(), err)
	}
	for _, key := range stale {
		if err := v.Storage().Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("delete %s: %w", key, err)
		}
	}
	return nil
}
