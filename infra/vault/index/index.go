package index

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// Location says where a blob is stored.
type Location struct {
	Pack   format.ID       `json:"pack"`
	Offset uint32          `json:"off"`
	Length uint32          `json:"len"`
	Type   format.BlobType `json:"type"`
}

// Index maps blob ids to their location. It is safe for concurrent use.
//
// Every worker holds one, and a vault may store hundreds of millions of
// blobs, so the entries live on local disk (a cache of the vault's index
// objects, rebuilt by every process) and memory holds what is per pack,
// not per blob:
//   - the pack table: each pack added gets an ordinal, its place in
//     packs; entries name their pack by ordinal;
//   - a memtable of the latest entries, written as a sorted run file once
//     it holds memLimit of them (run.go);
//   - per run, a fence of 8 bytes per 64 entries, so a lookup reads one
//     3 KiB block of each run (BenchmarkIndexAdd reports the bytes per
//     entry, BenchmarkIndexIngest and make bench-index the peak RSS for many);
//   - runs are merged in the background so there are few of them, each at
//     least twice the size of all newer ones together (merge.go).
//
// Ordinals grow with every pack added, and the runs, the frozen memtables
// and the memtable hold disjoint, increasing ranges of them, in that order;
// a merge takes adjacent runs. So the copies of a blob are met oldest first
// by walking them in that order, as the map index this replaced kept them.
//
// The merges run on goroutines that exit when there is nothing to merge,
// so an Index nobody uses is collected with its files. A *Vault keeps its
// Index for the life of the process; Close releases one sooner.
type Index struct {
	dir string
	// memLimit is the number of entries at which the memtable is written as
	// a run (tests make it small).
	memLimit int

	mu sync.RWMutex
	// cond, on mu, wakes waiters when a merge ends.
	cond  *sync.Cond
	packs []packInfo // by ordinal
	// ords gives a pack's latest ordinal: a pack removed and added again
	// gets a new one, so that its old entries stay removed.
	ords map[format.ID]uint32
	// excluded are the packs GC marked as candidates (gc/candidates) and the
	// quarantined ones (quarantine/): their blobs may still be read, but
	// dedup must not reference them (see GC and Damage in the vault).
	excluded map[format.ID]bool
	mem      *memtable
	// frozen are full memtables being written as runs (more than one only
	// when writing failed).
	frozen  []*memtable
	runs    []*run // oldest first
	merging int    // merges under way
	closed  atomic.Bool
	// flushMu makes one writer of runs at a time; other adders that fill
	// the memtable wait, which bounds memory.
	flushMu sync.Mutex
}

// packInfo is one pack of the index, 48 bytes: with packs of a few dozen
// blobs, the pack table costs more than the fences.
type packInfo struct {
	id      format.ID
	size    int64
	blobs   uint32
	removed bool
}

// loc is where a blob is stored, its pack as an ordinal of the Index.
type loc struct {
	pack   uint32
	off    uint32
	length uint32
	typ    format.BlobType
}

// defaultMemLimit entries make a memtable of about 12 MiB and a run of 6 MiB.
const defaultMemLimit = 128 << 10

// newIndex returns an empty index whose run files go to dir; "" is the user
// cache dir (not /tmp first: it may be in memory, which the files are here
// to spare).
func New(dir string) *Index {
	if dir == "" {
		dir = os.TempDir()
		if c, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(c, "vmvault", "index")
		}
	}
	x := &Index{dir: dir, memLimit: defaultMemLimit, ords: make(map[format.ID]uint32), mem: newMemtable(0)}
	x.cond = sync.NewCond(&x.mu)
	return x
}

// location expands l; x.mu must be held.
func (x *Index) location(l loc) Location {
	return Location{Pack: x.packs[l.pack].id, Offset: l.off, Length: l.length, Type: l.typ}
}

// copies calls fn with the copies of id that are in packs not removed,
// oldest first, until fn returns true; x.mu must be held.
func (x *Index) copies(id format.ID, fn func(loc) bool) {
	live := func(l loc) bool { return !x.packs[l.pack].removed && fn(l) }
	for _, r := range x.runs {
		if r.each(id, live) {
			return
		}
	}
	for _, m := range x.frozen {
		if m.each(id, live) {
			return
		}
	}
	x.mem.each(id, live)
}

// find returns the oldest copy of id in a pack that is not a GC candidate
// (usable), else its oldest copy (found); x.mu must be held.
func (x *Index) find(id format.ID) (usable loc, ok bool, oldest loc, found bool) {
	x.copies(id, func(l loc) bool {
		if !found {
			oldest, found = l, true
		}
		if !x.excluded[x.packs[l.pack].id] {
			usable, ok = l, true
		}
		return ok
	})
	return usable, ok, oldest, found
}

// Lookup returns where a blob is stored, preferring a pack that is not a
// GC candidate (the copy that will outlive the next sweep).
func (x *Index) Lookup(id format.ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	usable, ok, oldest, found := x.find(id)
	switch {
	case ok:
		return x.location(usable), true
	case found:
		return x.location(oldest), true
	}
	return Location{}, false
}

// Copies returns every copy of a blob in packs not removed, oldest first:
// a reader whose copy fails its check tries the others.
func (x *Index) Copies(id format.ID) []Location {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []Location
	x.copies(id, func(l loc) bool {
		out = append(out, x.location(l))
		return false
	})
	return out
}

// DedupHas reports whether a backup may reference the stored blob instead
// of storing it: it is in a pack that is not a GC candidate.
func (x *Index) DedupHas(id format.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok, _, _ := x.find(id)
	return ok
}

// SetExcluded replaces the set of packs dedup must not offer (a Refresh
// sets GC's candidates and the quarantined packs; Check's own index, the
// quarantined ones, so its lookups prefer a sound copy).
func (x *Index) SetExcluded(packs map[format.ID]bool) { x.setExcluded(packs) }

// setExcluded replaces the set of GC candidate and quarantined packs.
func (x *Index) setExcluded(packs map[format.ID]bool) {
	x.mu.Lock()
	x.excluded = packs
	x.mu.Unlock()
}

// Has reports whether a blob is stored.
func (x *Index) Has(id format.ID) bool {
	_, ok := x.Lookup(id)
	return ok
}

// known returns a pack's ordinal unless it is unknown or removed; x.mu must
// be held.
func (x *Index) known(id format.ID) (uint32, bool) {
	o, ok := x.ords[id]
	return o, ok && !x.packs[o].removed
}

// HasPack says whether the index holds the pack id (not removed).
func (x *Index) HasPack(id format.ID) bool {
	x.mu.RLock()
	_, ok := x.known(id)
	x.mu.RUnlock()
	return ok
}

// PackSizes returns the known packs and their sizes.
func (x *Index) PackSizes() map[format.ID]int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	sizes := make(map[format.ID]int64, len(x.ords))
	for id, o := range x.ords {
		if p := x.packs[o]; !p.removed {
			sizes[id] = p.size
		}
	}
	return sizes
}

// AddPack adds the blobs of a pack; a pack already known is ignored.
func (x *Index) AddPack(pi format.PackIndex) {
	x.mu.Lock()
	if _, ok := x.known(pi.Pack); ok {
		x.mu.Unlock()
		return
	}
	o := uint32(len(x.packs))
	x.packs = append(x.packs, packInfo{id: pi.Pack, size: pi.Size, blobs: uint32(len(pi.Entries))})
	x.ords[pi.Pack] = o
	for _, e := range pi.Entries {
		x.mem.add(e.ID, loc{pack: o, off: e.Offset, length: e.Length, typ: e.Type})
	}
	full := x.mem.n >= x.memLimit
	x.mu.Unlock()
	if full {
		x.flush()
	}
}

// removePacks forgets packs that are gone, so that dedup stops trusting
// them and the next backup stores their blocks again. A blob that is also
// in another pack (a duplicate, e.g. re-uploaded while its first pack was a
// GC candidate) moves to that copy. Their entries stay in the runs, skipped,
// until a merge drops them; removing starts that merge.
func (x *Index) removePacks(gone map[format.ID]bool) {
	if len(gone) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for id := range gone {
		o, ok := x.known(id)
		if !ok {
			continue
		}
		p := &x.packs[o]
		p.removed = true
		if p.blobs == 0 {
			continue
		}
		for _, r := range x.runs {
			if r.lo <= o && o <= r.hi {
				r.dead += int(p.blobs)
			}
		}
		for _, m := range append([]*memtable{x.mem}, x.frozen...) {
			if m.n > 0 && m.lo <= o && o <= m.hi {
				m.dead += int(p.blobs)
			}
		}
	}
	x.startMerges()
}

// Runs is how many run files the index has now (benchmarks report it).
func (x *Index) Runs() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.runs)
}

// Stats summarises an index.
type Stats struct {
	Blobs      int   `json:"blobs"`
	Packs      int   `json:"packs"`
	PackBytes  int64 `json:"pack_bytes"`
	Duplicates int   `json:"duplicates"`
}

// Stats counts packs and bytes exactly. Duplicates, the copies beyond the
// first of each blob, are counted where copies meet without a lookup per
// entry: in the memtable as they are added, and in each run as it is
// written. So they are exact while the index fits in its memtable (fewer
// than 128 Ki entries: every test vault) and once merges bring the copies
// of a blob together; until then copies in different runs are missed, so
// Duplicates is low and Blobs high. Copies of removed packs count until the merge that
// drops them. Blobs is the copies in packs not removed less Duplicates.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var s Stats
	copies := 0
	for _, p := range x.packs {
		if !p.removed {
			s.Packs++
			s.PackBytes += p.size
			copies += int(p.blobs)
		}
	}
	for _, m := range append([]*memtable{x.mem}, x.frozen...) {
		s.Duplicates += m.n - len(m.first)
	}
	for _, r := range x.runs {
		s.Duplicates += r.n - r.distinct
	}
	s.Blobs = max(copies-s.Duplicates, 0)
	return s
}

// Close stops merging and closes the run files. The Index must not be used
// afterwards.
func (x *Index) Close() error {
	x.closed.Store(true)
	x.flushMu.Lock() // no run is being written
	defer x.flushMu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	for x.merging > 0 {
		x.cond.Wait()
	}
	var first error
	for _, r := range x.runs {
		if err := r.close(); err != nil && first == nil {
			first = err
		}
	}
	x.runs = nil
	return first
}
