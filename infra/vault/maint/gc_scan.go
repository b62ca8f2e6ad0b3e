package maint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// The reference scan of garbage collection: which packs hold blobs that a
// recovery point, a soft-deleted point or a checkpoint needs, and which can
// go (see gc.go for the two phases).

// droppable returns which of the packs in cands can go while every
// referenced blob keeps a copy in a pack that stays (one not in cands, or
// one of cands kept). A pack with no referenced blob always can; one whose
// referenced blobs are all duplicated elsewhere (re-uploaded while it was a
// candidate, or copied by a repack) can too. Packs with more referenced
// blobs are decided first, so the fuller copy is the one kept; of two
// with as many, the one with less garbage.
func (st *gcState) droppable(cands []format.ID) map[format.ID]bool {
	in := make(map[format.ID]bool, len(cands))
	for _, id := range cands {
		in[id] = true
	}
	live := make(map[format.ID]int, len(cands))
	for _, id := range cands {
		for _, b := range st.packs[id].blobs {
			if _, ok := st.refs[b]; ok {
				live[id]++
			}
		}
	}
	// Ties (a repack's new pack holds exactly the old one's live blobs) go
	// to the pack with less garbage, so the compact copy stays and the
	// mostly-garbage one goes; then by id, so the choice is stable.
	order := append([]format.ID(nil), cands...)
	// Quarantined packs are decided last, so a sound copy elsewhere is
	// the one kept (their damaged blobs are no copy: gcPacks leaves them out).
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if qa, qb := st.packs[a].quarantined, st.packs[b].quarantined; qa != qb {
			return qb
		}
		if live[a] != live[b] {
			return live[a] > live[b]
		}
		if na, nb := len(st.packs[a].blobs), len(st.packs[b].blobs); na != nb {
			return na < nb
		}
		return a.String() < b.String()
	})
	// kept[h]: pack h stays, so a blob in it has a copy. Packs outside
	// cands stay; a candidate stays once it is found needed.
	kept := func(h format.ID) bool { return !in[h] }
	keptCand := map[format.ID]bool{}
	dropped := map[format.ID]bool{}
	for _, id := range order {
		drop := true
		for _, b := range st.packs[id].blobs {
			if _, ok := st.refs[b]; !ok {
				continue
			}
			copied := false
			for _, h := range st.holders[b] {
				if h != id && (kept(h) || keptCand[h]) {
					copied = true
					break
				}
			}
			if !copied {
				drop = false
				break
			}
		}
		if drop {
			dropped[id] = true
		} else {
			keptCand[id] = true
		}
	}
	return dropped
}

func sortedPacks(m map[format.ID]*gcPack) []format.ID {
	ids := make([]format.ID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	return ids
}

// gcScan reads every pack's blobs, then the references: checkpoints first,
// then recovery points, soft-deleted points, and recovery points again. A
// backup deletes its checkpoint only after its root is durable, and
// soft delete and undelete each write the new object before removing the
// old, so a point moving between recoverypoints/ and deleted/ is seen in
// one of the three listings. Any tree node that cannot be read fails the
// scan: what it references would be unknown.
func (v *maintainer) gcScan(ctx context.Context) (*gcState, error) {
	st := &gcState{refs: map[format.ID]struct{}{}}
	if err := v.gcPacks(ctx, st); err != nil {
		return nil, err
	}
	w := &treeWalker{v: v, st: st, leaves: map[format.ID]bool{}}
	if err := v.Storage().List(ctx, format.KindCheckpoint.Prefix(), func(key string, _ int64) error {
		if format.IsCheckpointKey(key) {
			st.checkpoints = append(st.checkpoints, key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list checkpoints in %s: %w", v.Storage().Location(), err)
	}
	for _, key := range st.checkpoints {
		var raw json.RawMessage
		err := v.GetSealed(ctx, key, &raw)
		if errors.Is(err, storage.ErrNotFound) {
			continue // its backup finished
		}
		if err != nil {
			return nil, err
		}
		o, err := format.DecodeCheckpointObject(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		st.cp++
		for _, l := range o.LeafIDs() {
			if err := w.leaf(ctx, l); err != nil {
				return nil, fmt.Errorf("checkpoint %s: %w", key, err)
			}
		}
	}
	seen := map[string]bool{}
	rps := format.KindRecoveryPoint.Prefix()
	for _, prefix := range []string{rps, format.KindTombstone.Prefix(), rps} {
		var keys []string
		if err := v.Storage().List(ctx, prefix, func(key string, _ int64) error {
			if !seen[key] {
				seen[key] = true
				keys = append(keys, key)
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("list %s in %s: %w", prefix, v.Storage().Location(), err)
		}
		sort.Strings(keys)
		for _, key := range keys {
			rp, err := v.gcManifest(ctx, key)
			if errors.Is(err, storage.ErrNotFound) {
				continue // moved: the next listing sees it
			}
			if err != nil {
				return nil, err
			}
			if prefix == format.KindTombstone.Prefix() {
				st.softDeleted++
			} else {
				st.rps++
			}
			for _, d := range rp.Disks {
				if err := w.root(ctx, d.Root); err != nil {
					return nil, fmt.Errorf("%s: disk %s: %w", key, d.Name, err)
				}
			}
		}
	}
	st.holders = map[format.ID][]format.ID{}
	for _, id := range sortedPacks(st.packs) {
		for _, b := range st.packs[id].blobs {
			if _, ok := st.refs[b]; ok {
				st.holders[b] = append(st.holders[b], id)
			}
		}
	}
	return st, nil
}

// gcManifest reads a recovery point manifest, or a soft-deleted point's
// tombstone. Tombstones are read defensively (format/manifest.go
// owns their format): a sealed JSON object holding the manifest under
// "recovery_point" (or "RecoveryPoint", "manifest"), or the manifest itself.
// One whose disks cannot be found fails GC: its references would be unknown.
func (v *maintainer) gcManifest(ctx context.Context, key string) (format.RecoveryPoint, error) {
	if !strings.HasPrefix(key, format.KindTombstone.Prefix()) {
		rp, err := v.GetRecoveryPoint(ctx, key)
		if errors.Is(err, format.ErrCorrupt) {
			return rp, fmt.Errorf("%w (GC needs every manifest: run 'vmvault vault check')", err)
		}
		return rp, err
	}
	var fields map[string]json.RawMessage
	if err := v.GetSealed(ctx, key, &fields); err != nil {
		return format.RecoveryPoint{}, err
	}
	for _, name := range []string{"recovery_point", "RecoveryPoint", "recoveryPoint", "manifest"} {
		if raw, ok := fields[name]; ok {
			var rp format.RecoveryPoint
			if err := json.Unmarshal(raw, &rp); err == nil && len(rp.Disks) > 0 {
				return rp, nil
			}
		}
	}
	if _, ok := fields["disks"]; ok {
		var rp format.RecoveryPoint
		b, _ := json.Marshal(fields)
		if err := json.Unmarshal(b, &rp); err == nil {
			return rp, nil
		}
	}
	return format.RecoveryPoint{}, fmt.Errorf("%s in %s: %w: soft-deleted point without a readable manifest", key, v.Storage().Location(), format.ErrCorrupt)
}

// gcPacks lists index objects, then packs (a pack is written before its
// index object), and learns each pack's blobs from its index object or, if
// that is missing or invalid, from the pack's own header.
func (v *maintainer) gcPacks(ctx context.Context, st *gcState) error {
	indexSizes := map[format.ID]int64{}
	st.indexKeys = map[format.ID][]string{}
	if err := v.Storage().List(ctx, format.KindIndex.Prefix(), func(key string, size int64) error {
		if id, _, ok := format.ParseIndexKey(key); ok {
			indexSizes[id] += size
			st.indexKeys[id] = append(st.indexKeys[id], key)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list index in %s: %w", v.Storage().Location(), err)
	}
	sizes, err := index.ListPacks(ctx, v.Storage())
	if err != nil {
		return err
	}
	quarantined, err := v.readQuarantine(ctx)
	if err != nil {
		return err
	}
	st.packs = make(map[format.ID]*gcPack, len(sizes))
	st.trees = map[format.ID][]index.Location{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for id, size := range sizes {
		keys := st.indexKeys[id]
		slices.Sort(keys) // by time
		damaged, q := quarantined[id]
		p := &gcPack{size: size, indexSize: indexSizes[id], indexKeys: keys, quarantined: q}
		st.packs[id] = p
		g.Go(func() error {
			entries, err := index.PackEntries(gctx, v.Storage(), v.Keys(), id, size, p.newestIndexKey())
			if errors.Is(err, format.ErrCorrupt) || errors.Is(err, storage.ErrNotFound) {
				p.problem = err.Error()
				return nil
			}
			if err != nil {
				return err
			}
			p.blobs = make([]format.ID, 0, len(entries))
			mu.Lock()
			defer mu.Unlock()
			for _, e := range entries {
				if damaged[e.ID] {
					continue // no copy of it: what it names is lost
				}
				p.blobs = append(p.blobs, e.ID)
				if e.Type == format.BlobTree {
					st.trees[e.ID] = append(st.trees[e.ID], index.Location{Pack: id, Offset: e.Offset, Length: e.Length, Type: e.Type})
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// treeWalker adds the blobs of trees to the references, reading each
// distinct leaf once.
type treeWalker struct {
	v      *maintainer
	st     *gcState
	leaves map[format.ID]bool
	// late are the index objects read since gcPacks listed them.
	late map[string]bool
}

// lateTrees adds the trees of the packs written since gcPacks listed the
// index (by backups running beside GC): a checkpoint or a manifest written
// since may name a tree node only they hold, and what that node names in
// older packs is referenced. The late packs themselves are not in st.packs,
// so never GC's to delete. It reports whether it found any.
func (w *treeWalker) lateTrees(ctx context.Context) (bool, error) {
	if w.late == nil {
		w.late = map[string]bool{}
		for _, keys := range w.st.indexKeys {
			for _, k := range keys {
				w.late[k] = true
			}
		}
	}
	var keys []string
	if err := w.v.Storage().List(ctx, format.KindIndex.Prefix(), func(key string, _ int64) error {
		if _, _, ok := format.ParseIndexKey(key); ok && !w.late[key] {
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		return false, fmt.Errorf("list index in %s: %w", w.v.Storage().Location(), err)
	}
	for _, key := range keys {
		w.late[key] = true
		pi, err := index.GetPackIndex(ctx, w.v.Storage(), w.v.Keys(), key)
		if errors.Is(err, format.ErrCorrupt) || errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		for _, e := range pi.Entries {
			if e.Type == format.BlobTree {
				w.st.trees[e.ID] = append(w.st.trees[e.ID], index.Location{Pack: pi.Pack, Offset: e.Offset, Length: e.Length, Type: e.Type})
			}
		}
	}
	return len(keys) > 0, nil
}

func (w *treeWalker) root(ctx context.Context, id format.ID) error {
	if _, ok := w.st.refs[id]; ok {
		return nil // an unchanged disk: its tree was walked already
	}
	plain, err := w.read(ctx, id)
	if err != nil {
		return fmt.Errorf("tree root: %w", err)
	}
	r, err := format.DecodeRoot(plain)
	if err != nil {
		return fmt.Errorf("tree root %s: %w", id.Short(), err)
	}
	w.st.refs[id] = struct{}{}
	for _, l := range r.Leaves {
		if err := w.leaf(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

func (w *treeWalker) leaf(ctx context.Context, id format.ID) error {
	if w.leaves[id] {
		return nil
	}
	plain, err := w.read(ctx, id)
	if err != nil {
		return fmt.Errorf("tree leaf: %w", err)
	}
	ids, err := format.DecodeLeaf(plain)
	if err != nil {
		return fmt.Errorf("tree leaf %s: %w", id.Short(), err)
	}
	w.leaves[id] = true
	w.st.refs[id] = struct{}{}
	for _, b := range ids {
		if !b.IsZero() {
			w.st.refs[b] = struct{}{}
		}
	}
	return nil
}

// read reads a tree node from any pack that holds it.
func (w *treeWalker) read(ctx context.Context, id format.ID) ([]byte, error) {
	locs := w.st.trees[id]
	if len(locs) == 0 {
		if found, err := w.lateTrees(ctx); err != nil {
			return nil, err
		} else if found {
			locs = w.st.trees[id]
		}
	}
	if len(locs) == 0 {
		return nil, fmt.Errorf("blob %s: %w: in no pack (GC needs every tree: run 'vmvault vault check')", id.Short(), format.ErrMissing)
	}
	var errs []error
	for _, l := range locs {
		sealed, err := w.v.Storage().GetRange(ctx, format.PackKey(l.Pack), int64(l.Offset), int64(l.Length))
		if err == nil {
			var plain []byte
			if plain, err = w.v.Keys().OpenBlob(id, sealed); err == nil {
				return plain, nil
			}
		}
		errs = append(errs, fmt.Errorf("blob %s in pack %s: %w", id.Short(), l.Pack.Short(), err))
	}
	return nil, errors.Join(errs...)
}
