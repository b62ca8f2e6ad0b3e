package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Replicated deletes follow deletions on the primary, never damage there.
// What the primary deletes on purpose leaves a trace: GC names every pack
// it sweeps in its deletion log (gc/deleted/, sealed, so only a holder of
// the vault's keys writes it) before deleting the pack and its index
// object, and soft delete writes a point's tombstone before it removes the
// manifest. An object that merely vanished from the primary (a lost pack,
// an index object repair dropped with its missing pack, a manifest deleted
// behind the vault's back) is reported as lost there and kept on the
// secondary, where it may be the only good copy.
//
// So nothing the secondary references is deleted: GC deleted a pack only
// once no manifest or tombstone of the primary referenced it; the
// secondary's manifests and tombstones are the primary's, and each is
// deleted from the secondary no later than the data it references (they
// go missing on the primary first, and are deleted first). A manifest the
// primary lost is kept on the secondary, and while one is, no pack or
// index object is deleted there at all (GC on the primary no longer sees
// that point's references).

// deleteInput is what both sides held when the pass listed them.
type deleteInput struct {
	// all, meta: the primary's objects, and its manifests and tombstones
	// listed before them; have: the secondary's objects.
	all, meta, have map[string]int64
	// gcDeleted are the packs GC's deletion logs name; nil if they could
	// not be read (no vault keys, or a log does not open).
	gcDeleted map[format.ID]bool
	// gcErr says why gcDeleted is nil.
	gcErr error
}

// deletedByGC reads every deletion log of the primary (one per sweep that
// deleted packs; they are never removed).
func deletedByGC(ctx context.Context, src storage.Backend, keys *format.Keys) (map[format.ID]bool, error) {
	if keys == nil {
		return nil, errors.New("replication runs without the vault's keys, so GC's deletion log cannot be read")
	}
	return index.ReadSweptPacks(ctx, src, keys)
}

func (in deleteInput) onPrimary(key string) bool {
	_, a := in.all[key]
	_, m := in.meta[key]
	return a || m
}

// deletion is how a key the primary lacks is treated.
type deletion uint8

const (
	deleteDelayed deletion = iota // deleted once missing for DeleteAfter
	deleteNow                     // a tombstone of an undeleted point
	keepLost                      // damage on the primary: kept
	holdData                      // data whose deletion cannot be checked now
)

func (in deleteInput) classify(key string) deletion {
	h := format.ParseKey(key)
	gcd := func(id format.ID) deletion {
		switch {
		case in.gcDeleted == nil:
			return holdData
		case in.gcDeleted[id]:
			return deleteDelayed
		}
		return keepLost
	}
	switch h.Kind {
	case format.KindPack:
		id, err := format.ParseID(pathBase(key))
		if err != nil {
			return keepLost
		}
		return gcd(id)
	case format.KindIndex:
		id, _, ok := format.ParseIndexKey(key)
		if !ok {
			return keepLost
		}
		return gcd(id)
	case format.KindRecoveryPoint:
		t := format.Handle{Kind: format.KindTombstone, Name: h.Name}.Key()
		if _, ok := in.have[t]; ok || in.onPrimary(t) {
			return deleteDelayed
		}
		return keepLost
	case format.KindTombstone:
		if in.onPrimary(format.Handle{Kind: format.KindRecoveryPoint, Name: h.Name}.Key()) {
			return deleteNow // undeleted: that deletes no data
		}
	}
	return deleteDelayed
}

// replicateDeletes deletes from dst what the primary deleted at least
// after ago (see Run), and records when the rest was first seen missing.
func replicateDeletes(ctx context.Context, in deleteInput, dst storage.Backend, now time.Time, after time.Duration, rep *Report) error {
	missing := map[string]time.Time{}
	if data, err := dst.Get(ctx, format.ReplicationMissing); err == nil {
		if err := json.Unmarshal(data, &missing); err != nil {
			missing = map[string]time.Time{} // only delays deletes
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("secondary: %w", err)
	}
	var gone []string
	how := map[string]deletion{}
	lostPoint := false
	for key := range in.have {
		if key == format.ConfigKey || !replicated(key) || in.onPrimary(key) {
			continue
		}
		d := in.classify(key)
		if d == keepLost {
			rep.LostOnPrimary++
			if len(rep.LostOnPrimaryKeys) < maxListed {
				rep.LostOnPrimaryKeys = append(rep.LostOnPrimaryKeys, key)
			}
			lostPoint = lostPoint || format.KindOf(key) == format.KindRecoveryPoint
			continue
		}
		how[key] = d
		gone = append(gone, key)
	}
	sort.Strings(rep.LostOnPrimaryKeys)
	// Manifests and tombstones before index objects before packs: the
	// secondary never holds a point whose data it deleted.
	sort.Slice(gone, func(i, j int) bool {
		if si, sj := replicaStage(gone[i]), replicaStage(gone[j]); si != sj {
			return si > sj
		}
		return gone[i] < gone[j]
	})
	next := map[string]time.Time{}
	for _, key := range gone {
		first, seen := missing[key]
		if !seen {
			first = now.UTC()
		}
		d := how[key]
		if data := replicaStage(key) <= format.StageIndex; data && d != holdData && lostPoint {
			d = holdData
			rep.DeletesHeld = "the secondary keeps recovery points the primary lost (lost_on_primary): no data is deleted while it does"
		} else if d == holdData {
			rep.DeletesHeld = in.gcErr.Error()
		}
		if d == deleteNow || (d == deleteDelayed && after > 0 && now.Sub(first) >= after) {
			if err := dst.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("secondary: %w", err)
			}
			rep.Deleted++
			continue
		}
		next[key] = first
		rep.PendingDeletes++
	}
	if len(next) == 0 && len(missing) == 0 {
		return nil
	}
	data, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if err := dst.Put(ctx, format.ReplicationMissing, data); err != nil {
		return fmt.Errorf("secondary: %w", err)
	}
	return nil
}
