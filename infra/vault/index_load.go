package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Loading the index: index objects read once each, packs listed to forget
// the ones that vanished (index.go holds the in-memory index itself).

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
		v.idx = newIndex(v.indexDir)
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
	known := idx.packSizes()
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
