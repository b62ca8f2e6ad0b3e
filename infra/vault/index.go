package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// BlobType tells data blocks from tree nodes.
type BlobType uint8

const (
	BlobData BlobType = 1
	BlobTree BlobType = 2
)

// Location says where a blob is stored.
type Location struct {
	Pack   ID       `json:"pack"`
	Offset uint32   `json:"off"`
	Length uint32   `json:"len"`
	Type   BlobType `json:"type"`
}

// indexEntry is one blob of a pack, as written in index objects.
type indexEntry struct {
	ID     ID       `json:"id"`
	Offset uint32   `json:"off"`
	Length uint32   `json:"len"`
	Type   BlobType `json:"type"`
}

// packIndex is the content of one index object: the blobs of one pack.
type packIndex struct {
	Pack    ID           `json:"pack"`
	Size    int64        `json:"size"`
	Entries []indexEntry `json:"entries"`
}

// decodePackIndex decodes the plaintext of the index object at key and
// checks that it is self-consistent: it names the pack of its key, and every
// blob lies inside the pack's body.
func decodePackIndex(key string, data []byte) (packIndex, error) {
	var pi packIndex
	if err := json.Unmarshal(data, &pi); err != nil {
		return packIndex{}, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
	}
	if want := strings.TrimPrefix(key, "index/"); want != pi.Pack.String() {
		return packIndex{}, fmt.Errorf("%s: %w: names pack %s", key, ErrCorrupt, pi.Pack.Short())
	}
	if pi.Size < 4 {
		return packIndex{}, fmt.Errorf("%s: %w: pack size %d", key, ErrCorrupt, pi.Size)
	}
	for _, e := range pi.Entries {
		if e.Type != BlobData && e.Type != BlobTree || e.Length == 0 || int64(e.Offset)+int64(e.Length) > pi.Size-4 {
			return packIndex{}, fmt.Errorf("%s: %w: blob %s at %d+%d (type %d) outside pack of %d bytes", key, ErrCorrupt, e.ID.Short(), e.Offset, e.Length, e.Type, pi.Size)
		}
	}
	return pi, nil
}

// Index maps blob ids to their location. It is safe for concurrent use.
type Index struct {
	mu    sync.RWMutex
	blobs map[ID]Location
	packs map[ID]int64
	// dups counts blobs stored in more than one pack (harmless; GC removes them).
	dups int
	// alt holds the other locations of duplicated blobs, so that a blob
	// whose pack is deleted (GC, or lost) falls back to its other copy.
	alt map[ID][]Location
	// excluded are the packs GC marked as candidates (gc/candidates): their
	// blobs may still be read, but dedup must not reference them (gc.go).
	excluded map[ID]bool
	// loaded is set once a load has read every index object; guarded by the
	// vault's idxMu, like problems (those of the latest load).
	loaded   bool
	problems []IndexProblem
}

func newIndex() *Index {
	return &Index{blobs: make(map[ID]Location), packs: make(map[ID]int64), alt: make(map[ID][]Location)}
}

// Lookup returns where a blob is stored, preferring a pack that is not a
// GC candidate (the copy that will outlive the next sweep).
func (x *Index) Lookup(id ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs[id]
	if ok && x.excluded[l.Pack] {
		for _, a := range x.alt[id] {
			if !x.excluded[a.Pack] {
				return a, true
			}
		}
	}
	return l, ok
}

// dedupHas reports whether a backup may reference the stored blob instead
// of storing it: it is in a pack that is not a GC candidate.
func (x *Index) dedupHas(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs[id]
	if !ok || !x.excluded[l.Pack] {
		return ok
	}
	for _, a := range x.alt[id] {
		if !x.excluded[a.Pack] {
			return true
		}
	}
	return false
}

// setExcluded replaces the set of GC candidate packs.
func (x *Index) setExcluded(packs map[ID]bool) {
	x.mu.Lock()
	x.excluded = packs
	x.mu.Unlock()
}

// Has reports whether a blob is stored.
func (x *Index) Has(id ID) bool {
	_, ok := x.Lookup(id)
	return ok
}

func (x *Index) hasPack(id ID) bool {
	x.mu.RLock()
	_, ok := x.packs[id]
	x.mu.RUnlock()
	return ok
}

// addPack adds the blobs of a pack; a pack already known is ignored.
func (x *Index) addPack(pi packIndex) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.packs[pi.Pack]; ok {
		return
	}
	x.packs[pi.Pack] = pi.Size
	for _, e := range pi.Entries {
		l := Location{Pack: pi.Pack, Offset: e.Offset, Length: e.Length, Type: e.Type}
		if _, ok := x.blobs[e.ID]; ok {
			x.dups++
			x.alt[e.ID] = append(x.alt[e.ID], l)
			continue
		}
		x.blobs[e.ID] = l
	}
}

// removePacks forgets packs that are gone, so that dedup stops trusting
// them and the next backup stores their blocks again. A blob that is also
// in another pack (a duplicate, e.g. re-uploaded while its first pack was a
// GC candidate) moves to that copy.
func (x *Index) removePacks(gone map[ID]bool) {
	if len(gone) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for id := range gone {
		delete(x.packs, id)
	}
	for id, alts := range x.alt {
		kept := alts[:0]
		for _, a := range alts {
			if !gone[a.Pack] {
				kept = append(kept, a)
			}
		}
		if len(kept) == 0 {
			delete(x.alt, id)
		} else {
			x.alt[id] = kept
		}
	}
	for id, l := range x.blobs {
		if !gone[l.Pack] {
			continue
		}
		if alts := x.alt[id]; len(alts) > 0 {
			x.blobs[id] = alts[0]
			if len(alts) == 1 {
				delete(x.alt, id)
			} else {
				x.alt[id] = alts[1:]
			}
			continue
		}
		delete(x.blobs, id)
	}
}

// IndexStats summarises an index.
type IndexStats struct {
	Blobs      int   `json:"blobs"`
	Packs      int   `json:"packs"`
	PackBytes  int64 `json:"pack_bytes"`
	Duplicates int   `json:"duplicates"`
}

func (x *Index) Stats() IndexStats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s := IndexStats{Blobs: len(x.blobs), Packs: len(x.packs), Duplicates: x.dups}
	for _, n := range x.packs {
		s.PackBytes += n
	}
	return s
}

// IndexProblemKind says what is wrong with an index object or its pack.
type IndexProblemKind string

const (
	// ProblemUnreadableIndex: the index object fails to authenticate or
	// decode; its pack is treated as unindexed (Repair re-indexes it).
	ProblemUnreadableIndex IndexProblemKind = "unreadable_index"
	// ProblemMissingPack: the index object names a pack that is not stored.
	ProblemMissingPack IndexProblemKind = "missing_pack"
	// ProblemPackSize: the pack's size differs from its index object's
	// (truncated or overwritten).
	ProblemPackSize IndexProblemKind = "pack_size"
)

// IndexProblem is an index object the index left out, and why. The blobs it
// lists count as not stored: the next backup stores them again.
type IndexProblem struct {
	Kind   IndexProblemKind `json:"kind"`
	Key    string           `json:"key"` // the index object
	Pack   ID               `json:"pack"`
	Reason string           `json:"reason"`
}

func (p IndexProblem) String() string { return fmt.Sprintf("%s: %s", p.Key, p.Reason) }

func indexKey(pack ID) string { return "index/" + pack.String() }

func packKey(pack ID) string {
	h := pack.String()
	return "packs/" + h[:2] + "/" + h
}

// Index returns the vault's index, loading it on first use. Call
// RefreshIndex to see packs written by other processes since.
func (v *Vault) Index(ctx context.Context) (*Index, error) {
	v.idxMu.Lock()
	loaded := v.idx != nil && v.idx.loaded
	v.idxMu.Unlock()
	if loaded {
		return v.idx, nil
	}
	return v.RefreshIndex(ctx)
}

// IndexProblems returns the index objects the latest index load left out
// (unreadable, or naming a pack that is missing or has the wrong size), so
// callers can warn. Run Repair to re-index packs from their headers.
func (v *Vault) IndexProblems() []IndexProblem {
	v.idxMu.Lock()
	defer v.idxMu.Unlock()
	if v.idx == nil {
		return nil
	}
	return append([]IndexProblem(nil), v.idx.problems...)
}

// RefreshIndex reads the index objects not read yet. It is safe to call
// while the index is in use. Each index object is added whole or not at
// all: one that is unreadable, or whose pack is missing or has another size,
// is left out and reported by IndexProblems, and a known pack that has
// disappeared is forgotten; only storage errors fail the call.
func (v *Vault) RefreshIndex(ctx context.Context) (*Index, error) {
	v.idxMu.Lock()
	defer v.idxMu.Unlock()
	if v.idx == nil {
		v.idx = newIndex()
	}
	idx := v.idx
	if err := v.reloadConfig(ctx); err != nil { // immutability set since Open
		return nil, err
	}
	// GC candidates are read before packs are listed: a sweep deletes packs
	// before it drops them from gc/candidates, so a deleted pack is either
	// still excluded here or missing from the listing below (gc.go).
	excluded, err := v.gcExcluded(ctx)
	if err != nil {
		return nil, err
	}
	res, err := v.loadIndex(ctx, idx)
	if err != nil {
		return nil, err
	}
	idx.setExcluded(excluded)
	idx.removePacks(res.gone)
	idx.problems = res.problems
	idx.loaded = true
	return idx, nil
}

// indexLoad is what loadIndex found besides the packs it added.
type indexLoad struct {
	problems []IndexProblem
	// packs are the stored packs and their sizes.
	packs map[ID]int64
	// rejected are the decodable index objects left out (their pack is
	// missing or has another size), for Check to name the pack of a blob.
	rejected []packIndex
	// unreadable are the packs whose index object could not be read.
	unreadable map[ID]bool
	// gone are packs idx knew before the load that are no longer stored.
	gone map[ID]bool
}

// loadIndex adds to idx the index objects it does not know yet whose pack
// is stored with the size they name. Packs are listed after the index
// objects: a pack is written before its index object, so every pack whose
// index object was listed is in the pack listing unless it was lost.
func (v *Vault) loadIndex(ctx context.Context, idx *Index) (indexLoad, error) {
	res := indexLoad{packs: map[ID]int64{}, unreadable: map[ID]bool{}, gone: map[ID]bool{}}
	var keys []string
	if err := v.be.List(ctx, "index/", func(key string, _ int64) error {
		id, err := ParseID(strings.TrimPrefix(key, "index/"))
		if err != nil {
			return nil // not ours
		}
		if !idx.hasPack(id) {
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("list index in %s: %w", v.be.Location(), err)
	}
	known := make(map[ID]int64)
	idx.mu.RLock()
	for id, n := range idx.packs {
		known[id] = n
	}
	idx.mu.RUnlock()
	packs, err := v.listPacks(ctx)
	if err != nil {
		return res, err
	}
	res.packs = packs
	for id, n := range known {
		if size, ok := packs[id]; !ok || size != n {
			res.gone[id] = true
			kind, why := ProblemMissingPack, "pack is not in the vault"
			if ok {
				kind, why = ProblemPackSize, fmt.Sprintf("pack has %d bytes, index says %d", size, n)
			}
			res.problems = append(res.problems, IndexProblem{Kind: kind, Key: indexKey(id), Pack: id, Reason: why})
		}
	}
	pis := make([]*packIndex, len(keys))
	errs := make([]error, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, key := range keys {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return context.Cause(gctx) // stop promptly after the first error
			}
			pi, err := v.getPackIndex(gctx, key)
			switch {
			case errors.Is(err, storage.ErrNotFound):
				// Removed since listed (Repair or GC): nothing to load.
			case errors.Is(err, ErrCorrupt):
				errs[i] = err
			case err != nil:
				return err
			default:
				pis[i] = &pi
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	for i, key := range keys {
		id, _ := ParseID(strings.TrimPrefix(key, "index/"))
		if errs[i] != nil {
			res.unreadable[id] = true
			res.problems = append(res.problems, IndexProblem{Kind: ProblemUnreadableIndex, Key: key, Pack: id, Reason: errs[i].Error()})
			continue
		}
		pi := pis[i]
		if pi == nil {
			continue
		}
		size, ok := packs[pi.Pack]
		switch {
		case !ok:
			res.problems = append(res.problems, IndexProblem{Kind: ProblemMissingPack, Key: key, Pack: pi.Pack, Reason: "pack is not in the vault"})
			res.rejected = append(res.rejected, *pi)
		case size != pi.Size:
			res.problems = append(res.problems, IndexProblem{Kind: ProblemPackSize, Key: key, Pack: pi.Pack,
				Reason: fmt.Sprintf("pack has %d bytes, index says %d", size, pi.Size)})
			res.rejected = append(res.rejected, *pi)
		default:
			idx.addPack(*pi)
		}
	}
	return res, nil
}

// getPackIndex reads and decodes one index object.
func (v *Vault) getPackIndex(ctx context.Context, key string) (packIndex, error) {
	var raw json.RawMessage
	if err := v.getSealed(ctx, key, &raw); err != nil {
		return packIndex{}, err
	}
	pi, err := decodePackIndex(key, raw)
	if err != nil {
		return packIndex{}, fmt.Errorf("%s: %w", v.be.Location(), err)
	}
	return pi, nil
}

// listPacks returns every stored pack and its size.
func (v *Vault) listPacks(ctx context.Context) (map[ID]int64, error) {
	packs := map[ID]int64{}
	err := v.be.List(ctx, "packs/", func(key string, size int64) error {
		id, err := ParseID(key[strings.LastIndexByte(key, '/')+1:])
		if err == nil && key == packKey(id) {
			packs[id] = size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs in %s: %w", v.be.Location(), err)
	}
	return packs, nil
}
