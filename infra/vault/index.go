package vault

import (
	"maps"
	"sync"
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

// Index maps blob ids to their location. It is safe for concurrent use.
//
// Every worker holds it in memory, one entry per stored blob, so entries
// are compact: a loc names its pack by an ordinal into packIDs (16 bytes
// instead of Location's 44), about 60 bytes per entry less
// (BenchmarkIndexAdd reports the bytes per entry).
type Index struct {
	mu    sync.RWMutex
	blobs map[ID]loc
	packs map[ID]int64
	// packIDs and ords number the packs ever added; an ordinal stays with
	// its pack, also once the pack is removed (a pack is small beside its
	// blobs).
	packIDs []ID
	ords    map[ID]uint32
	// dups counts blobs stored in more than one pack (harmless; GC removes them).
	dups int
	// alt holds the other locations of duplicated blobs, so that a blob
	// whose pack is deleted (GC, or lost) falls back to its other copy.
	alt map[ID][]loc
	// excluded are the packs GC marked as candidates (gc/candidates): their
	// blobs may still be read, but dedup must not reference them (gc.go).
	excluded map[ID]bool
	// loaded is set once a load has read every index object; guarded by the
	// vault's idxMu, like problems (those of the latest load).
	loaded   bool
	problems []IndexProblem
}

// loc is where a blob is stored, its pack as an ordinal of the Index.
type loc struct {
	pack   uint32
	off    uint32
	length uint32
	typ    BlobType
}

// newIndex returns an empty index; dir will hold its files.
func newIndex(dir string) *Index {
	_ = dir
	return &Index{blobs: make(map[ID]loc), packs: make(map[ID]int64), ords: make(map[ID]uint32), alt: make(map[ID][]loc)}
}

// location expands l; x.mu must be held.
func (x *Index) location(l loc) Location {
	return Location{Pack: x.packIDs[l.pack], Offset: l.off, Length: l.length, Type: l.typ}
}

// ordinal numbers pack, once; x.mu must be held for writing.
func (x *Index) ordinal(pack ID) uint32 {
	if o, ok := x.ords[pack]; ok {
		return o
	}
	o := uint32(len(x.packIDs))
	x.packIDs = append(x.packIDs, pack)
	x.ords[pack] = o
	return o
}

// isExcluded: l's pack is a GC candidate; x.mu must be held.
func (x *Index) isExcluded(l loc) bool { return x.excluded[x.packIDs[l.pack]] }

// Lookup returns where a blob is stored, preferring a pack that is not a
// GC candidate (the copy that will outlive the next sweep).
func (x *Index) Lookup(id ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs[id]
	if !ok {
		return Location{}, false
	}
	if x.isExcluded(l) {
		for _, a := range x.alt[id] {
			if !x.isExcluded(a) {
				return x.location(a), true
			}
		}
	}
	return x.location(l), true
}

// dedupHas reports whether a backup may reference the stored blob instead
// of storing it: it is in a pack that is not a GC candidate.
func (x *Index) dedupHas(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs[id]
	if !ok || !x.isExcluded(l) {
		return ok
	}
	for _, a := range x.alt[id] {
		if !x.isExcluded(a) {
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

// packSizes returns the known packs and their sizes.
func (x *Index) packSizes() map[ID]int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return maps.Clone(x.packs)
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
	o := x.ordinal(pi.Pack)
	for _, e := range pi.Entries {
		l := loc{pack: o, off: e.Offset, length: e.Length, typ: e.Type}
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
	goneOrd := make(map[uint32]bool, len(gone))
	for id := range gone {
		delete(x.packs, id)
		if o, ok := x.ords[id]; ok {
			goneOrd[o] = true
		}
	}
	for id, alts := range x.alt {
		kept := alts[:0]
		for _, a := range alts {
			if !goneOrd[a.pack] {
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
		if !goneOrd[l.pack] {
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
