package index

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// refIndex is the index as a plain map, to compare the Index with.
type refIndex struct {
	seq      int
	packs    map[format.ID]refPack // packs not removed
	copies   map[format.ID][]refCopy
	excluded map[format.ID]bool
}

type refPack struct {
	seq  int
	size int64
}

type refCopy struct {
	seq int
	loc Location
}

func newRefIndex() *refIndex {
	return &refIndex{packs: map[format.ID]refPack{}, copies: map[format.ID][]refCopy{}}
}

func (r *refIndex) addPack(pi format.PackIndex) {
	if _, ok := r.packs[pi.Pack]; ok {
		return
	}
	r.seq++
	r.packs[pi.Pack] = refPack{r.seq, pi.Size}
	for _, e := range pi.Entries {
		r.copies[e.ID] = append(r.copies[e.ID], refCopy{r.seq, Location{Pack: pi.Pack, Offset: e.Offset, Length: e.Length, Type: e.Type}})
	}
}

func (r *refIndex) removePacks(gone map[format.ID]bool) {
	for id := range gone {
		delete(r.packs, id)
	}
}

// live returns the copies of id in packs not removed, oldest first.
func (r *refIndex) live(id format.ID) []Location {
	var live []Location
	for _, c := range r.copies[id] {
		if p, ok := r.packs[c.loc.Pack]; ok && p.seq == c.seq {
			live = append(live, c.loc)
		}
	}
	return live
}

func (r *refIndex) lookup(id format.ID) (Location, bool) {
	live := r.live(id)
	for _, l := range live {
		if !r.excluded[l.Pack] {
			return l, true
		}
	}
	if len(live) > 0 {
		return live[0], true
	}
	return Location{}, false
}

func (r *refIndex) dedupHas(id format.ID) bool {
	for _, l := range r.live(id) {
		if !r.excluded[l.Pack] {
			return true
		}
	}
	return false
}

// stats counts blobs and their extra copies exactly.
func (r *refIndex) stats() Stats {
	var s Stats
	for _, p := range r.packs {
		s.Packs++
		s.PackBytes += p.size
	}
	for id := range r.copies {
		if n := len(r.live(id)); n > 0 {
			s.Blobs++
			s.Duplicates += n - 1
		}
	}
	return s
}

func testIndex(t testing.TB, memLimit int) *Index {
	t.Helper()
	x := New(t.TempDir())
	x.memLimit = memLimit
	t.Cleanup(func() {
		if err := x.Close(); err != nil {
			t.Error(err)
		}
	})
	return x
}

// prefixedID returns an id whose first 8 bytes are p, so that tests can
// make ids share the prefix the fences keep.
func prefixedID(r *rand.Rand, p uint64) (id format.ID) {
	binary.BigEndian.PutUint64(id[:8], p)
	for i := 8; i < len(id); i += 8 {
		binary.LittleEndian.PutUint64(id[i:], r.Uint64())
	}
	return id
}

func randID(r *rand.Rand) format.ID { return prefixedID(r, r.Uint64()) }

// checkIndex compares every answer of x about ids and packs with ref's.
func checkIndex(t *testing.T, x *Index, ref *refIndex, ids, packs []format.ID) {
	t.Helper()
	for _, id := range ids {
		want, wok := ref.lookup(id)
		got, ok := x.Lookup(id)
		if ok != wok || got != want {
			t.Fatalf("Lookup(%s) = %+v, %v; want %+v, %v", id.Short(), got, ok, want, wok)
		}
		if got, want := x.DedupHas(id), ref.dedupHas(id); got != want {
			t.Fatalf("dedupHas(%s) = %v, want %v", id.Short(), got, want)
		}
		if x.Has(id) != wok {
			t.Fatalf("Has(%s) = %v", id.Short(), !wok)
		}
	}
	want := map[format.ID]int64{}
	for _, p := range packs {
		rp, ok := ref.packs[p]
		if ok {
			want[p] = rp.size
		}
		if x.HasPack(p) != ok {
			t.Fatalf("hasPack(%s) = %v", p.Short(), !ok)
		}
	}
	if got := x.PackSizes(); !maps.Equal(got, want) {
		t.Fatalf("packSizes has %d packs, want %d", len(got), len(want))
	}
	got, exact := x.Stats(), ref.stats()
	if got.Packs != exact.Packs || got.PackBytes != exact.PackBytes {
		t.Fatalf("Stats = %+v, want %+v", got, exact)
	}
}

// TestIndexMatchesMap runs random adds, removals and exclusions on an
// Index whose memtable holds 64 entries, so that it writes and merges many
// runs, and compares it with a map after each step. Ids share 8-byte
// prefixes and are stored in several packs, also twice in one, so that
// their copies straddle fence blocks and runs.
func TestIndexMatchesMap(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			x, ref := testIndex(t, 64), newRefIndex()
			var ids, packs []format.ID
			for i := 0; i < 1500; i++ {
				ids = append(ids, prefixedID(r, uint64(r.IntN(40))<<56))
			}
			absent := make([]format.ID, 200)
			for i := range absent {
				absent[i] = prefixedID(r, uint64(r.IntN(40))<<56)
			}
			for step := 0; step < 300; step++ {
				switch op := r.IntN(20); {
				case op < 14 || len(packs) == 0:
					pi := format.PackIndex{Pack: randID(r), Size: int64(1000 + r.IntN(1000))}
					if len(packs) > 0 && r.IntN(8) == 0 {
						pi.Pack = packs[r.IntN(len(packs))] // known, or removed and back
					} else {
						packs = append(packs, pi.Pack)
					}
					for n := r.IntN(40); len(pi.Entries) < n; {
						e := format.IndexEntry{ID: ids[r.IntN(len(ids))], Offset: r.Uint32(), Length: 1 + r.Uint32N(1<<20), Type: format.BlobType(1 + r.IntN(2))}
						pi.Entries = append(pi.Entries, e)
						if r.IntN(20) == 0 {
							e.Offset++
							pi.Entries = append(pi.Entries, e) // twice in one pack
						}
					}
					x.AddPack(pi)
					ref.addPack(pi)
				case op < 17:
					gone := map[format.ID]bool{randID(r): true} // unknown: ignored
					for n := r.IntN(4); n > 0; n-- {
						gone[packs[r.IntN(len(packs))]] = true
					}
					x.removePacks(gone)
					ref.removePacks(gone)
				default:
					ex := map[format.ID]bool{}
					for n := r.IntN(len(packs)/2 + 1); n > 0; n-- {
						ex[packs[r.IntN(len(packs))]] = true
					}
					x.setExcluded(ex)
					ref.excluded = ex
				}
				if step%25 == 0 {
					checkIndex(t, x, ref, append(ids[:len(ids):len(ids)], absent...), packs)
				}
			}
			x.Settle()
			checkIndex(t, x, ref, append(ids, absent...), packs)
			x.mu.RLock()
			nruns := len(x.runs)
			x.mu.RUnlock()
			if nruns < 1 || nruns > 8 {
				t.Errorf("%d runs", nruns)
			}
		})
	}
}

// TestIndexStraddle stores one blob in 300 packs, among ids that share its
// 8-byte prefix, so its copies fill several fence blocks of one run and
// also lie in several runs; every copy must count.
func TestIndexStraddle(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	x, ref := testIndex(t, 100), newRefIndex()
	const p = 0x1234 << 40
	target := prefixedID(r, p)
	var packs, ids []format.ID
	for i := 0; i < 300; i++ {
		pi := format.PackIndex{Pack: randID(r), Size: 100}
		pi.Entries = append(pi.Entries, format.IndexEntry{ID: target, Offset: uint32(i), Length: 1, Type: format.BlobData})
		for j := 0; j < 3; j++ {
			id := prefixedID(r, p+uint64(r.IntN(3))-1) // just below, at, just above
			ids = append(ids, id)
			pi.Entries = append(pi.Entries, format.IndexEntry{ID: id, Offset: 1, Length: 1, Type: format.BlobData})
		}
		packs = append(packs, pi.Pack)
		x.AddPack(pi)
		ref.addPack(pi)
	}
	x.Settle()
	ids = append(ids, target, prefixedID(r, p))
	checkIndex(t, x, ref, ids, packs)
	// Copies in different runs are missed until a merge brings them
	// together, never counted twice.
	if s := x.Stats(); s.Duplicates > 299 || s.Duplicates < 150 || s.Blobs < 1+len(ids)-2 {
		t.Errorf("Stats = %+v after merges, want 299 duplicates or a few less", s)
	}
	for _, n := range []int{1, 150, 299} {
		ex := map[format.ID]bool{}
		for _, p := range packs[:n] {
			ex[p] = true
		}
		x.setExcluded(ex)
		ref.excluded = ex
		checkIndex(t, x, ref, ids, packs)
		if loc, _ := x.Lookup(target); loc.Pack != packs[n] {
			t.Fatalf("with %d packs excluded, Lookup gives pack %s", n, loc.Pack.Short())
		}
	}
	gone := map[format.ID]bool{}
	for _, p := range packs[1:] {
		gone[p] = true
	}
	x.removePacks(gone)
	ref.removePacks(gone)
	checkIndex(t, x, ref, ids, packs)
	if !x.Has(target) || x.DedupHas(target) {
		t.Fatal("the copy in the excluded first pack must be found, and not used for dedup")
	}
	x.Settle()
	checkIndex(t, x, ref, ids, packs)
	if got, want := x.Stats(), ref.stats(); got != want {
		t.Errorf("Stats = %+v after removal and merges, want %+v", got, want)
	}
}

// TestIndexStatsExactInMemtable: while every entry is in the memtable, as
// in a backup of fewer than 128 Ki blocks, Duplicates and Blobs are exact.
func TestIndexStatsExactInMemtable(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	x, ref := testIndex(t, defaultMemLimit), newRefIndex()
	ids := make([]format.ID, 500)
	for i := range ids {
		ids[i] = randID(r)
	}
	for i := 0; i < 50; i++ {
		pi := format.PackIndex{Pack: randID(r), Size: 10}
		for j := 0; j < 20; j++ {
			pi.Entries = append(pi.Entries, format.IndexEntry{ID: ids[r.IntN(len(ids))], Length: 1})
		}
		x.AddPack(pi)
		ref.addPack(pi)
	}
	if got, want := x.Stats(), ref.stats(); got != want || want.Duplicates == 0 {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

// TestIndexConcurrent adds packs from several goroutines while others look
// up blobs; a blob is found as soon as its addPack returned. Run with -race.
func TestIndexConcurrent(t *testing.T) {
	x := testIndex(t, 200)
	const writers, packsEach, perPack = 4, 60, 50
	added := make([][]format.ID, writers)
	var mu sync.Mutex
	var wg, readers sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for p := 0; p < packsEach; p++ {
				pi := format.PackIndex{Pack: randID(r), Size: 1}
				for e := 0; e < perPack; e++ {
					pi.Entries = append(pi.Entries, format.IndexEntry{ID: randID(r), Offset: uint32(e), Length: 1, Type: format.BlobData})
				}
				x.AddPack(pi)
				mu.Lock()
				for _, e := range pi.Entries {
					added[w] = append(added[w], e.ID)
				}
				mu.Unlock()
			}
		}()
	}
	var failed sync.Once
	for g := 0; g < 4; g++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := rand.New(rand.NewPCG(uint64(g), 12))
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				w := r.IntN(writers)
				var id format.ID
				if n := len(added[w]); n > 0 {
					id = added[w][r.IntN(n)]
				}
				mu.Unlock()
				if id != (format.ID{}) && !x.DedupHas(id) {
					failed.Do(func() { t.Errorf("%s added but not found", id.Short()) })
				}
				if x.Has(randID(r)) {
					failed.Do(func() { t.Error("a random id is found") })
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	x.Settle()
	for _, ids := range added {
		for _, id := range ids {
			if !x.Has(id) {
				t.Fatalf("%s lost", id.Short())
			}
		}
	}
	if s := x.Stats(); s.Blobs != writers*packsEach*perPack || s.Duplicates != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

// TestIndexLeavesNoFiles: run files are unlinked as they are created, and
// Close ends the merges.
func TestIndexLeavesNoFiles(t *testing.T) {
	dir := t.TempDir()
	x := New(dir)
	x.memLimit = 100
	r := rand.New(rand.NewPCG(13, 14))
	before := runtime.NumGoroutine()
	for p := 0; p < 100; p++ {
		pi := format.PackIndex{Pack: randID(r), Size: 1}
		for e := 0; e < 30; e++ {
			pi.Entries = append(pi.Entries, format.IndexEntry{ID: randID(r), Length: 1})
		}
		x.AddPack(pi)
	}
	x.Settle()
	x.mu.RLock()
	nruns := len(x.runs)
	x.mu.RUnlock()
	if nruns == 0 {
		t.Fatal("no run written")
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("%d files left in %s (%v)", len(ents), dir, err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}
}

// TestIndexDefaultDir: the run files go to the user cache dir, not /tmp
// first (it may be in memory).
func TestIndexDefaultDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/cache")
	if x := New(""); x.dir != "/cache/vmvault/index" {
		t.Errorf("dir = %s", x.dir)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	if x := New(""); x.dir != os.TempDir() {
		t.Errorf("dir = %s without a cache dir", x.dir)
	}
}
