package index

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// The index's entries: the latest in a memtable, the rest in run files on
// local disk (index.go says how they fit together; merge.go merges
// runs).
//
// A run file is a sorted array of fixed-size records, one per copy of a
// blob, ordered by (blob id, pack ordinal):
//
//	id [32] | pack ordinal u32 | offset u32 | length u32 | type u8 | pad [3]
//
// integers little endian. A run is written once and never changed. It is
// a cache of what the vault's index objects say, so it is not synced, and
// it is unlinked as soon as it is created: the open file is all the index
// needs, and a worker that dies leaves nothing behind.

const (
	recSize = 48
	// fenceEvery records, a run keeps the first 8 bytes of the id in
	// memory, so a lookup reads one block of fenceEvery records (3 KiB):
	// 8 bytes of memory per 64 entries.
	fenceEvery = 64
	blockBytes = recSize * fenceEvery
)

// rec is one copy of a blob: its id and where it is.
type rec struct {
	id format.ID
	l  loc
}

func cmpRec(a, b rec) int {
	if c := cmp.Compare(prefix(a.id[:]), prefix(b.id[:])); c != 0 {
		return c
	}
	if c := bytes.Compare(a.id[8:], b.id[8:]); c != 0 {
		return c
	}
	return cmp.Compare(a.l.pack, b.l.pack)
}

func putRec(b []byte, r rec) {
	copy(b, r.id[:])
	binary.LittleEndian.PutUint32(b[32:], r.l.pack)
	binary.LittleEndian.PutUint32(b[36:], r.l.off)
	binary.LittleEndian.PutUint32(b[40:], r.l.length)
	b[44], b[45], b[46], b[47] = byte(r.l.typ), 0, 0, 0
}

func getLoc(b []byte) loc {
	return loc{
		pack:   binary.LittleEndian.Uint32(b[32:]),
		off:    binary.LittleEndian.Uint32(b[36:]),
		length: binary.LittleEndian.Uint32(b[40:]),
		typ:    format.BlobType(b[44]),
	}
}

// prefix is the first 8 bytes of id, ordered as the id.
func prefix(id []byte) uint64 { return binary.BigEndian.Uint64(id[:8]) }

// memtable holds the latest entries in memory until there are enough for a
// run. It is changed only under the Index's lock, and never once frozen.
type memtable struct {
	first map[format.ID]loc   // each id's first copy
	more  map[format.ID][]loc // further copies, oldest first (rare)
	n     int                 // copies
	// lo and hi bound the pack ordinals of the copies.
	lo, hi uint32
	// dead counts copies of removed packs, guarded by the Index's lock.
	dead int
}

// newMemtable returns a memtable with room for size copies.
func newMemtable(size int) *memtable {
	return &memtable{first: make(map[format.ID]loc, size), more: make(map[format.ID][]loc)}
}

func (m *memtable) add(id format.ID, l loc) {
	if m.n == 0 {
		m.lo = l.pack
	}
	m.hi = max(m.hi, l.pack)
	m.n++
	if _, ok := m.first[id]; ok {
		m.more[id] = append(m.more[id], l)
		return
	}
	m.first[id] = l
}

// each calls fn with the copies of id, oldest first, until fn returns true,
// and reports whether it did.
func (m *memtable) each(id format.ID, fn func(loc) bool) bool {
	l, ok := m.first[id]
	if !ok {
		return false
	}
	if fn(l) {
		return true
	}
	for _, l := range m.more[id] {
		if fn(l) {
			return true
		}
	}
	return false
}

// sorted returns the copies in run order. An id's first copy goes before
// its further ones, which keep the order they were added in: copies in one
// pack tie on (id, ordinal). Only the few further copies need a stable sort.
func (m *memtable) sorted() []rec {
	recs := sortFirsts(m.first)
	if len(m.more) == 0 {
		return recs
	}
	var more []rec
	for id, ls := range m.more {
		for _, l := range ls {
			more = append(more, rec{id, l})
		}
	}
	slices.SortStableFunc(more, cmpRec)
	firsts := slices.Clone(recs)
	recs = recs[:0]
	for len(firsts) > 0 && len(more) > 0 {
		if cmpRec(more[0], firsts[0]) < 0 {
			recs, more = append(recs, more[0]), more[1:]
		} else {
			recs, firsts = append(recs, firsts[0]), firsts[1:]
		}
	}
	recs = append(recs, firsts...)
	return append(recs, more...)
}

// sortFirsts returns the copies in first, which have distinct ids, sorted:
// ids are hashes, so a counting sort on their first 12 bits leaves buckets
// of a few dozen (4 times faster than sorting all).
func sortFirsts(first map[format.ID]loc) []rec {
	const bits = 12
	var count [1<<bits + 1]int
	for id := range first {
		count[prefix(id[:])>>(64-bits)+1]++
	}
	for i := 1; i < len(count); i++ {
		count[i] += count[i-1]
	}
	recs, next := make([]rec, len(first)), count
	for id, l := range first {
		b := prefix(id[:]) >> (64 - bits)
		recs[next[b]] = rec{id, l}
		next[b]++
	}
	for b := 0; b < 1<<bits; b++ {
		slices.SortFunc(recs[count[b]:count[b+1]], cmpRec)
	}
	return recs
}

// run is one run file, open for reading.
type run struct {
	f        *os.File
	n        int      // records
	fence    []uint64 // prefix of record i*fenceEvery
	distinct int      // distinct ids among the records
	// lo and hi bound the pack ordinals in the run: runs hold disjoint,
	// increasing ranges (index.go).
	lo, hi uint32
	// Guarded by the Index's lock: dead counts the records of packs removed
	// since the run was written; busy is set while a merge reads the run.
	dead int
	busy bool
}

var blockPool = sync.Pool{New: func() any { b := make([]byte, 2*blockBytes); return &b }}

// each calls fn with the copies of id in r, oldest pack first, until fn
// returns true, and reports whether it did.
//
// A run file is private to this process and open, so a failing read is a
// failing local disk or a bug. each panics rather than answer "not found":
// that answer would make restores and Check report the blob missing from the
// vault, which it is not, and backups store it again without a word.
func (r *run) each(id format.ID, fn func(loc) bool) bool {
	p := prefix(id[:])
	// Blocks start..end may hold id: the block before the first fence >= p
	// can end with it, and every block whose fence equals p starts with it
	// (many copies of one id, or ids sharing 8 bytes, straddle blocks).
	start := sort.Search(len(r.fence), func(i int) bool { return r.fence[i] >= p }) - 1
	end := sort.Search(len(r.fence), func(i int) bool { return r.fence[i] > p }) - 1
	if end < 0 {
		return false
	}
	start = max(start, 0)
	from, to := start*fenceEvery, min((end+1)*fenceEvery, r.n)
	size := (to - from) * recSize
	bp := blockPool.Get().(*[]byte)
	defer blockPool.Put(bp)
	buf := *bp
	if size > len(buf) {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := r.f.ReadAt(buf, int64(from)*recSize); err != nil {
		panic(fmt.Sprintf("vault index: read run file %s: %v", r.f.Name(), err))
	}
	k := to - from
	i := sort.Search(k, func(i int) bool { return bytes.Compare(buf[i*recSize:i*recSize+32], id[:]) >= 0 })
	for ; i < k && bytes.Equal(buf[i*recSize:i*recSize+32], id[:]); i++ {
		if fn(getLoc(buf[i*recSize:])) {
			return true
		}
	}
	return false
}

func (r *run) close() error { return r.f.Close() }

// runWriter writes a run file from records in order.
type runWriter struct {
	r    *run
	w    *bufio.Writer
	buf  [recSize]byte
	last format.ID
}

// createRun starts a run file in dir, unlinked at once.
func createRun(dir string) (*runWriter, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("index run: %w", err)
	}
	f, err := os.CreateTemp(dir, "run-*")
	if err != nil {
		return nil, fmt.Errorf("index run: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("index run: %w", err)
	}
	return &runWriter{r: &run{f: f}, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (w *runWriter) add(rc rec) error {
	r := w.r
	if r.n%fenceEvery == 0 {
		r.fence = append(r.fence, prefix(rc.id[:]))
	}
	if r.n == 0 || rc.id != w.last {
		r.distinct++
		w.last = rc.id
	}
	r.n++
	putRec(w.buf[:], rc)
	_, err := w.w.Write(w.buf[:])
	return err
}

// finish returns the run, or closes the file if err or writing failed.
func (w *runWriter) finish(err error) (*run, error) {
	if err == nil {
		err = w.w.Flush()
	}
	if err != nil {
		w.r.f.Close()
		return nil, fmt.Errorf("index run: %w", err)
	}
	w.r.fence = slices.Clip(w.r.fence)
	return w.r, nil
}

// writeMemtable writes m as a run, without the copies of removed packs
// (by ordinal-m.lo).
func writeMemtable(dir string, m *memtable, removed []bool) (*run, error) {
	w, err := createRun(dir)
	if err != nil {
		return nil, err
	}
	for _, rc := range m.sorted() {
		if removed[rc.l.pack-m.lo] {
			continue
		}
		if err = w.add(rc); err != nil {
			break
		}
	}
	w.r.lo, w.r.hi = m.lo, m.hi
	return w.finish(err)
}

// runReader reads a run's records in order, for merging.
type runReader struct {
	r    *bufio.Reader
	left int
	buf  [recSize]byte
	cur  rec
}

func newRunReader(r *run) *runReader {
	return &runReader{r: bufio.NewReaderSize(io.NewSectionReader(r.f, 0, int64(r.n)*recSize), 64<<10), left: r.n}
}

// next reads the next record into cur, or reports false at the end.
func (rr *runReader) next() (bool, error) {
	if rr.left == 0 {
		return false, nil
	}
	if _, err := io.ReadFull(rr.r, rr.buf[:]); err != nil {
		return false, fmt.Errorf("index run: %w", err)
	}
	rr.left--
	copy(rr.cur.id[:], rr.buf[:32])
	rr.cur.l = getLoc(rr.buf[:])
	return true, nil
}
