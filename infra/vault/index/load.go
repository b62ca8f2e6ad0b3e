package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Loading the index (index.go holds the index itself). A refresh costs what
// is new, not what is stored: it lists the index objects written since the
// last one (their names sort by time) and learns the packs GC deleted from
// GC's deletion log (gc.go). A full load, which lists every index
// object and every pack, runs on first use, every Options.Reconcile,
// and when a lookup misses (an index object written by a host whose clock
// is far behind, or a pack lost outside GC).

// Options tune a vault's index; set them (Store.SetOptions) before first use.
type Options struct {
	// Dir holds the index's run files ("": the user's cache directory).
	Dir string
	// Reconcile is how often a refresh lists every index object and pack
	// to catch what the incremental refresh cannot see (0: DefaultReconcile).
	Reconcile time.Duration
}

// DefaultReconcile is how often a worker's index is checked against a full
// listing of the vault.
const DefaultReconcile = time.Hour

// indexSkew is how far before the newest index object seen a refresh lists
// again: writers' clocks differ, and an index object is named before its
// upload ends. One named earlier is found by the next full load.
const Skew = 10 * time.Minute

// missReload is how long after a full load a lookup miss starts another.
const missReload = 30 * time.Second

// indexCursor is what the refreshes of one vault have seen.
type indexCursor struct {
	ms      int64  // newest index object time seen, capped at the reader's clock
	logSeq  uint64 // newest GC deletion log read
	fullAt  time.Time
	skipped map[string]bool // index objects refused since the last full load
}

// Store is one process's view of a vault's index: the Index, loaded on
// first use, and what its refreshes have seen. Its mutex guards all of it
// and makes one refresh at a time; the Index guards its own contents.
type Store struct {
	be   storage.Backend
	keys *format.Keys

	mu  sync.Mutex
	idx *Index
	opt Options
	cur indexCursor
	// loaded is set once a load has read every index object; problems are
	// the index objects left out since the last full load.
	loaded   bool
	problems []format.IndexProblem
}

// NewStore returns the index store of the vault on be, opened with keys.
func NewStore(be storage.Backend, keys *format.Keys) *Store {
	return &Store{be: be, keys: keys}
}

// SetOptions sets where the index keeps its runs and how often it
// reconciles; it takes effect for an index not loaded yet.
func (s *Store) SetOptions(o Options) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opt = o
}

// Options are the options set.
func (s *Store) Options() Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opt
}

func (o Options) reconcile() time.Duration {
	if o.Reconcile <= 0 {
		return DefaultReconcile
	}
	return o.Reconcile
}

// Loaded is the index if a load has read it, else nil.
func (s *Store) Loaded() *Index {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded {
		return s.idx
	}
	return nil
}

// Problems are the index objects the loads left out since the last full
// load (unreadable, or naming a pack that is missing or of another size).
func (s *Store) Problems() []format.IndexProblem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]format.IndexProblem(nil), s.problems...)
}

// Stale says whether the last full load is older than missReload: a
// lookup that misses may reconcile.
func (s *Store) Stale() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.cur.fullAt) >= missReload
}

// Refresh adds the index objects written since the last refresh and
// forgets the packs GC deleted since; with full, on first use and every
// IndexOptions.Reconcile it loads fully instead. It is safe to call while
// the index is in use. Each index object is added whole or not at all: one
// that is unreadable, or whose pack is missing or has another size, is left
// out and reported (Problems); only storage errors fail the call.
func (s *Store) Refresh(ctx context.Context, full bool) (*Index, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idx == nil {
		s.idx = New(s.opt.Dir)
	}
	idx, cur := s.idx, &s.cur
	// GC candidates are read before anything is listed: a sweep logs and
	// deletes packs before it drops them from gc/candidates, so a deleted
	// pack is either still excluded here or in the log or listings below
	// (see GC's sweep).
	// A gc/candidates that cannot be read fails the load: offering its
	// packs to dedup could lose data at the next sweep (a new mark
	// rewrites it).
	cands, err := ReadGCCandidates(ctx, s.be, s.keys)
	if err != nil {
		return nil, fmt.Errorf("read GC candidates (run 'vmvault vault gc' to rewrite them): %w", err)
	}
	// Quarantined packs are out of dedup from this refresh on, whatever
	// gc/candidates says.
	excluded, err := ListQuarantined(ctx, s.be)
	if err != nil {
		return nil, err
	}
	for id := range cands.Excluded() {
		excluded[id] = true
	}
	now := time.Now()
	full = full || !s.loaded || now.Sub(cur.fullAt) >= s.opt.reconcile()
	var res Load
	if full {
		res, err = s.loadFull(ctx, idx)
	} else {
		res, err = s.loadSince(ctx, idx, cur, cands.DeletedThrough)
	}
	if err != nil {
		return nil, err // the cursor stays: the next refresh reads the same logs again
	}
	if full {
		cur.fullAt, cur.skipped, s.problems = now, map[string]bool{}, nil
	}
	cur.logSeq = res.logSeq
	if res.newestMs > cur.ms {
		cur.ms = min(res.newestMs, now.UnixMilli())
	}
	for _, p := range res.Problems {
		cur.skipped[p.Key] = true
	}
	idx.setExcluded(excluded)
	idx.removePacks(res.gone)
	s.problems = append(s.problems, res.Problems...)
	s.loaded = true
	return idx, nil
}

// indexLoad is what a load found besides the packs it added.
type Load struct {
	Problems []format.IndexProblem
	// Packs are the stored packs and their sizes (full loads only).
	Packs map[format.ID]int64
	// Rejected are the decodable index objects left out (their pack is
	// missing or has another size), for Check to name the pack of a blob.
	Rejected []format.PackIndex
	// unreadable are the packs whose index object could not be read.
	unreadable map[format.ID]bool
	// gone are packs the index knew before the load that are no longer stored.
	gone map[format.ID]bool
	// newestMs is the time of the newest index object listed.
	newestMs int64
	// logSeq is the newest GC deletion log the load accounts for.
	logSeq uint64
}

// loadIndexFull adds to idx every index object it does not know yet whose
// pack is stored with the size it names, and finds the known packs that
// are gone. The deletion log is listed first and index objects before
// packs: a pack is written before its index object, and GC logs a pack
// before deleting it, so nothing falls between the listings.
func (s *Store) loadFull(ctx context.Context, idx *Index) (Load, error) {
	logSeq, err := LastDeletionLog(ctx, s.be)
	if err != nil {
		return Load{}, err
	}
	res, err := s.LoadInto(ctx, idx)
	res.logSeq = logSeq
	return res, err
}

// LoadInto is a full load into idx (also Check's, into its own index);
// it leaves the store's own index and cursor alone.
func (s *Store) LoadInto(ctx context.Context, idx *Index) (Load, error) {
	res := Load{unreadable: map[format.ID]bool{}, gone: map[format.ID]bool{}}
	var keys []indexName
	listed := map[format.ID]int64{} // when each known pack's index object was named
	if err := s.be.List(ctx, format.KindIndex.Prefix(), func(key string, _ int64) error {
		id, ms, ok := format.ParseIndexKey(key)
		if !ok {
			return nil // not ours
		}
		res.newestMs = max(res.newestMs, ms)
		if idx.HasPack(id) {
			listed[id] = ms
		} else {
			keys = append(keys, indexName{ms, id})
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("list index in %s: %w", s.be.Location(), err)
	}
	known := idx.PackSizes()
	packs, err := ListPacks(ctx, s.be)
	if err != nil {
		return res, err
	}
	res.Packs = packs
	for id, n := range known {
		if size, ok := packs[id]; !ok || size != n {
			res.gone[id] = true
			key := format.KindIndex.Prefix() + "…-" + id.String()
			if ms, ok := listed[id]; ok {
				key = format.IndexKeyFloor(ms) + "-" + id.String()
			}
			kind, why := format.ProblemMissingPack, "pack is not in the vault"
			if ok {
				kind, why = format.ProblemPackSize, fmt.Sprintf("pack has %d bytes, index says %d", size, n)
			}
			res.Problems = append(res.Problems, format.IndexProblem{Kind: kind, Key: key, Pack: id, Reason: why})
		}
	}
	err = s.addIndexObjects(ctx, idx, keys, func(_ context.Context, id format.ID) (int64, bool, error) {
		size, ok := packs[id]
		return size, ok, nil
	}, &res)
	return res, err
}

// loadIndexSince adds the index objects listed since the cursor (less the
// skew margin) and forgets the packs the deletion logs since the cursor
// name. through is the newest log gc/candidates says exists: a listing
// that does not show it yet fails the refresh rather than trust a pack
// that may be gone.
func (s *Store) loadSince(ctx context.Context, idx *Index, cur *indexCursor, through uint64) (Load, error) {
	res := Load{unreadable: map[format.ID]bool{}, gone: map[format.ID]bool{}}
	seq, gone, err := ReadDeletionLogs(ctx, s.be, s.keys, cur.logSeq)
	if err != nil {
		return res, err
	}
	if seq < through {
		return res, fmt.Errorf("%s: GC deletion log %d is not listed yet (newest listed %d); retry", s.be.Location(), through, seq)
	}
	res.logSeq, res.gone = seq, gone
	var keys []indexName
	after := format.IndexKeyFloor(cur.ms - Skew.Milliseconds())
	if err := s.be.ListAfter(ctx, format.KindIndex.Prefix(), after, func(key string, _ int64) error {
		id, ms, ok := format.ParseIndexKey(key)
		if !ok {
			return nil
		}
		res.newestMs = max(res.newestMs, ms)
		if !idx.HasPack(id) && !gone[id] && !cur.skipped[key] {
			keys = append(keys, indexName{ms, id})
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("list index in %s: %w", s.be.Location(), err)
	}
	err = s.addIndexObjects(ctx, idx, keys, func(ctx context.Context, id format.ID) (int64, bool, error) {
		size, err := s.be.Stat(ctx, format.PackKey(id))
		if errors.Is(err, storage.ErrNotFound) {
			return 0, false, nil
		}
		return size, err == nil, err
	}, &res)
	return res, err
}

// indexName is an index object's key, kept compact while a load lists a
// whole vault's (40 bytes instead of an 84-byte string and its header).
type indexName struct {
	ms   int64
	pack format.ID
}

func (n indexName) key() string { return format.IndexKeyFloor(n.ms) + "-" + n.pack.String() }

// addIndexObjects reads the index objects at keys, 8 at a time, and adds
// to idx each one whose pack packSize finds with the size it names, as it
// goes: a vault's index objects do not fit in memory together.
func (s *Store) addIndexObjects(ctx context.Context, idx *Index, keys []indexName,
	packSize func(context.Context, format.ID) (int64, bool, error), res *Load) error {
	var mu sync.Mutex // guards res
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, name := range keys {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return context.Cause(gctx) // stop promptly after the first error
			}
			id, key := name.pack, name.key()
			pi, err := GetPackIndex(gctx, s.be, s.keys, key)
			switch {
			case errors.Is(err, storage.ErrNotFound):
				return nil // removed since listed (Repair or GC): nothing to load
			case errors.Is(err, format.ErrCorrupt):
				mu.Lock()
				defer mu.Unlock()
				res.unreadable[id] = true
				res.Problems = append(res.Problems, format.IndexProblem{Kind: format.ProblemUnreadableIndex, Key: key, Pack: id, Reason: err.Error()})
				return nil
			case err != nil:
				return err
			}
			size, stored, err := packSize(gctx, pi.Pack)
			if err != nil {
				return fmt.Errorf("%s: %w", format.PackKey(pi.Pack), err)
			}
			if stored && size == pi.Size {
				idx.AddPack(pi)
				return nil
			}
			p := format.IndexProblem{Kind: format.ProblemMissingPack, Key: key, Pack: id, Reason: "pack is not in the vault"}
			if stored {
				p = format.IndexProblem{Kind: format.ProblemPackSize, Key: key, Pack: id, Reason: fmt.Sprintf("pack has %d bytes, index says %d", size, pi.Size)}
			}
			mu.Lock()
			defer mu.Unlock()
			res.Problems = append(res.Problems, p)
			res.Rejected = append(res.Rejected, pi)
			return nil
		})
	}
	err := g.Wait()
	slices.SortFunc(res.Problems, func(a, b format.IndexProblem) int { return strings.Compare(a.Key, b.Key) })
	return err
}

// GetPackIndex reads and decodes the index object at key.
func GetPackIndex(ctx context.Context, be storage.Backend, keys *format.Keys, key string) (format.PackIndex, error) {
	sealed, err := be.Get(ctx, key)
	if err != nil {
		return format.PackIndex{}, fmt.Errorf("get %s: %w", key, err)
	}
	plain, err := keys.Open(nil, sealed, []byte(key))
	if err != nil {
		return format.PackIndex{}, fmt.Errorf("%s in %s: %w", key, be.Location(), err)
	}
	pi, err := format.DecodePackIndex(key, plain)
	if err != nil {
		return format.PackIndex{}, fmt.Errorf("%s: %w", be.Location(), err)
	}
	return pi, nil
}

// ListPacks returns every stored pack and its size.
func ListPacks(ctx context.Context, be storage.Backend) (map[format.ID]int64, error) {
	packs := map[format.ID]int64{}
	err := be.List(ctx, format.KindPack.Prefix(), func(key string, size int64) error {
		id, err := format.ParseID(key[strings.LastIndexByte(key, '/')+1:])
		if err == nil && key == format.PackKey(id) {
			packs[id] = size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs in %s: %w", be.Location(), err)
	}
	return packs, nil
}

// RejectedPack says whether id's index object was decodable but left out.
func (l Load) RejectedPack(id format.ID) bool {
	if l.unreadable[id] {
		return false // unindexed: its index object is no use
	}
	for _, pi := range l.Rejected {
		if pi.Pack == id {
			return true
		}
	}
	return false
}

// MoveCursor shifts what the refreshes have seen: the newest index object
// time by d, and the last full load to fullAt unless zero. Tests stand in
// with it for writers whose clocks differ.
func (s *Store) MoveCursor(d time.Duration, fullAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.ms += d.Milliseconds()
	if !fullAt.IsZero() {
		s.cur.fullAt = fullAt
	}
}
