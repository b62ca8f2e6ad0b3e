package vault

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
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

// Index maps blob ids to their location. It is safe for concurrent use.
type Index struct {
	mu    sync.RWMutex
	blobs map[ID]Location
	packs map[ID]int64
	// dups counts blobs stored in more than one pack (harmless; GC removes them).
	dups int
}

func newIndex() *Index {
	return &Index{blobs: make(map[ID]Location), packs: make(map[ID]int64)}
}

// Lookup returns where a blob is stored.
func (x *Index) Lookup(id ID) (Location, bool) {
	x.mu.RLock()
	l, ok := x.blobs[id]
	x.mu.RUnlock()
	return l, ok
}

// Has reports whether a blob is stored.
func (x *Index) Has(id ID) bool {
	_, ok := x.Lookup(id)
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
		if _, ok := x.blobs[e.ID]; ok {
			x.dups++
			continue
		}
		x.blobs[e.ID] = Location{Pack: pi.Pack, Offset: e.Offset, Length: e.Length, Type: e.Type}
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

func indexKey(pack ID) string { return "index/" + pack.String() }

func packKey(pack ID) string {
	h := pack.String()
	return "packs/" + h[:2] + "/" + h
}

// Index returns the vault's index, loading it on first use. Call
// RefreshIndex to see packs written by other processes since.
func (v *Vault) Index(ctx context.Context) (*Index, error) {
	v.idxMu.Lock()
	loaded := v.idx != nil
	v.idxMu.Unlock()
	if loaded {
		return v.idx, nil
	}
	return v.RefreshIndex(ctx)
}

// RefreshIndex reads the index objects not read yet. It is safe to call
// while the index is in use.
func (v *Vault) RefreshIndex(ctx context.Context) (*Index, error) {
	v.idxMu.Lock()
	defer v.idxMu.Unlock()
	if v.idx == nil {
		v.idx = newIndex()
	}
	idx := v.idx
	var keys []string
	if err := v.be.List(ctx, "index/", func(key string, _ int64) error {
		id, err := ParseID(strings.TrimPrefix(key, "index/"))
		if err != nil {
			return nil // not ours
		}
		idx.mu.RLock()
		_, known := idx.packs[id]
		idx.mu.RUnlock()
		if !known {
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list index in %s: %w", v.be.Location(), err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, key := range keys {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return context.Cause(gctx) // stop promptly after the first error
			}
			var pi packIndex
			if err := v.getSealed(gctx, key, &pi); err != nil {
				return err
			}
			if want := strings.TrimPrefix(key, "index/"); want != pi.Pack.String() {
				return fmt.Errorf("%s in %s: %w: names pack %s", key, v.be.Location(), ErrCorrupt, pi.Pack.Short())
			}
			idx.addPack(pi)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return idx, nil
}
