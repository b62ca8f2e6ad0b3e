package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// replicateDeletes deletes from dst what the primary has lacked for at
// least after (see Run), and records when the rest was first seen
// missing. src is what the primary held (all objects, plus the manifests
// and tombstones listed before them).
func replicateDeletes(ctx context.Context, all, meta, have map[string]int64, dst storage.Backend, now time.Time, after time.Duration, rep *Report) error {
	missing := map[string]time.Time{}
	if data, err := dst.Get(ctx, format.ReplicationMissing); err == nil {
		if err := json.Unmarshal(data, &missing); err != nil {
			missing = map[string]time.Time{} // only delays deletes
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("secondary: %w", err)
	}
	onPrimary := func(k string) bool {
		_, a := all[k]
		_, m := meta[k]
		return a || m
	}
	var gone []string
	for key := range have {
		if key == format.ConfigKey || !replicated(key) || onPrimary(key) {
			continue
		}
		gone = append(gone, key)
	}
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
		h := format.ParseKey(key)
		undeleted := h.Kind == format.KindTombstone && onPrimary(format.Handle{Kind: format.KindRecoveryPoint, Name: h.Name}.Key())
		if undeleted || (after > 0 && now.Sub(first) >= after) {
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
