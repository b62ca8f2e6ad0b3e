package index

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
)

// Writing the memtable as a run, and merging runs (index.go says how the
// Index uses them, run.go what a run is).

const (
	// mergeRatio: each run is kept at least mergeRatio times the size of
	// all newer runs together, by merging a run with the newer ones once it
	// is smaller. n entries then make at most about log3(n/memLimit)+1 runs
	// (7 for 100 million), and an entry is written about 9 times on its way
	// into the oldest run; a ratio of 4 makes 5 runs for 11 writes.
	mergeRatio = 2
	// maxMerges run at once: a merge into the oldest run may take a minute,
	// and meanwhile another keeps the new runs few.
	maxMerges = 2
	// maxRuns: with this many runs, writing another waits for a merge, so
	// a lookup reads at most this many blocks even when runs come faster
	// than merges.
	maxRuns = 16
)

var errIndexClosed = errors.New("index closed")

// flush writes the memtable, once full, and the frozen ones as runs. On
// failure (the local disk is full or unwritable) their entries stay in
// memory, where the index still finds them, and the next flush tries again.
func (x *Index) flush() {
	x.flushMu.Lock()
	defer x.flushMu.Unlock()
	x.mu.Lock()
	for len(x.runs) >= maxRuns && x.merging > 0 {
		x.cond.Wait()
	}
	if x.closed.Load() {
		x.mu.Unlock()
		return
	}
	if x.mem.n >= x.memLimit {
		x.frozen = append(x.frozen, x.mem)
		x.mem = newMemtable(x.memLimit) // no growing on the way, now it fills
	}
	todo := slices.Clone(x.frozen)
	x.mu.Unlock()
	for _, m := range todo {
		x.mu.Lock()
		removed, deadThen := x.removedIn(m.lo, m.hi), m.dead
		x.mu.Unlock()
		r, err := writeMemtable(x.dir, m, removed)
		if err != nil {
			slog.Warn("vault index: cannot write a run file, keeping its entries in memory", "dir", x.dir, "err", err)
			return
		}
		x.mu.Lock()
		x.frozen = x.frozen[1:]
		if r.n > 0 {
			r.dead = m.dead - deadThen
			x.runs = append(x.runs, r)
		} else {
			r.close()
		}
		x.startMerges()
		x.mu.Unlock()
	}
}

// removedIn tells, by ordinal-lo, which packs of ordinals lo..hi are
// removed; x.mu must be held.
func (x *Index) removedIn(lo, hi uint32) []bool {
	removed := make([]bool, hi-lo+1)
	for o := lo; o <= hi; o++ {
		removed[o-lo] = x.packs[o].removed
	}
	return removed
}

// merge is a merge of adjacent runs under way.
type merge struct {
	in []*run
	lo uint32
	// removed are the packs removed when the merge began, whose records
	// it drops (by ordinal-lo); dead counted them.
	removed []bool
	dead    int
}

// planMerge picks runs to merge, if any, and marks them busy; x.mu must be
// held for writing. It considers the runs newer than any busy one: a run
// smaller than mergeRatio times the newer ones together is merged with
// them, and so is a run holding records of removed packs.
func (x *Index) planMerge() *merge {
	if x.closed.Load() || x.merging >= maxMerges {
		return nil
	}
	tail := x.runs
	for i, r := range x.runs {
		if r.busy {
			tail = x.runs[i+1:]
		}
	}
	k, newer := -1, 0
	for i := len(tail) - 1; i >= 0; i-- {
		if tail[i].dead > 0 || i < len(tail)-1 && tail[i].n < mergeRatio*newer {
			k = i
		}
		newer += tail[i].n
	}
	if k < 0 {
		return nil
	}
	m := &merge{in: slices.Clone(tail[k:]), lo: tail[k].lo}
	m.removed = x.removedIn(m.lo, tail[len(tail)-1].hi)
	for _, r := range m.in {
		r.busy = true
		m.dead += r.dead
	}
	x.merging++
	return m
}

// startMerges starts the merges there are to do; x.mu must be held for
// writing.
func (x *Index) startMerges() {
	for m := x.planMerge(); m != nil; m = x.planMerge() {
		go x.runMerges(m)
	}
}

// runMerges does m, then the merges it leads to, and exits when there is
// none (or one fails: the next flush tries again).
func (x *Index) runMerges(m *merge) {
	for m != nil {
		out, err := x.mergeRuns(m)
		x.mu.Lock()
		x.endMerge(m, out, err)
		x.merging--
		m = nil
		if err == nil {
			m = x.planMerge()
		}
		x.cond.Broadcast()
		x.mu.Unlock()
		if err != nil && !errors.Is(err, errIndexClosed) {
			slog.Warn("vault index: cannot merge run files", "dir", x.dir, "err", err)
		}
	}
}

// endMerge puts out in place of m's runs, unless the merge failed; x.mu
// must be held for writing.
func (x *Index) endMerge(m *merge, out *run, err error) {
	dead := -m.dead
	for _, r := range m.in {
		r.busy = false
		dead += r.dead
	}
	if err != nil {
		return
	}
	var with []*run
	if out != nil {
		out.dead = dead // packs removed during the merge
		with = append(with, out)
	}
	i := slices.Index(x.runs, m.in[0])
	x.runs = slices.Replace(x.runs, i, i+len(m.in), with...)
	// Lookups read runs under x.mu, so none is reading these.
	for _, r := range m.in {
		r.close()
	}
}

// mergeRuns writes m's runs, without the records of removed packs, as one
// run; it returns nil if no record is left. It reads the runs and writes
// the new one sequentially, through buffers of constant size.
func (x *Index) mergeRuns(m *merge) (*run, error) {
	w, err := createRun(x.dir)
	if err != nil {
		return nil, err
	}
	h := make(mergeHeap, 0, len(m.in))
	for i, r := range m.in {
		rr := newRunReader(r)
		ok, err := rr.next()
		if err != nil {
			return w.finish(err)
		}
		if ok {
			h = append(h, mergeSrc{rr, i})
		}
	}
	h.init()
	for n := 0; len(h) > 0 && err == nil; n++ {
		if n%(64<<10) == 0 && x.closed.Load() {
			return w.finish(errIndexClosed)
		}
		top := h[0].rr
		if !m.removed[top.cur.l.pack-m.lo] {
			if err = w.add(top.cur); err != nil {
				break
			}
		}
		var ok bool
		if ok, err = top.next(); ok {
			h.down(0)
		} else {
			h.pop()
		}
	}
	w.r.lo, w.r.hi = m.lo, m.in[len(m.in)-1].hi
	out, err := w.finish(err)
	if err == nil && out.n == 0 {
		out.close()
		out = nil
	}
	return out, err
}

// mergeSrc is one input of a merge; i, the run's place, orders equal ids
// oldest pack first, as the runs hold increasing ordinals.
type mergeSrc struct {
	rr *runReader
	i  int
}

// mergeHeap is a min-heap of the inputs by their current record.
type mergeHeap []mergeSrc

func (h mergeHeap) less(a, b int) bool {
	if c := bytes.Compare(h[a].rr.cur.id[:], h[b].rr.cur.id[:]); c != 0 {
		return c < 0
	}
	return h[a].i < h[b].i
}

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h mergeHeap) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h.less(c+1, c) {
			c++
		}
		if !h.less(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

func (h *mergeHeap) pop() {
	old := *h
	n := len(old) - 1
	old[0] = old[n]
	*h = old[:n]
	h.down(0)
}

// Settle waits until no merge is under way, for tests and benchmarks.
func (x *Index) Settle() {
	x.mu.Lock()
	for x.merging > 0 {
		x.cond.Wait()
	}
	x.mu.Unlock()
}
