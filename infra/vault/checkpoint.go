package vault

// Checkpoint is the durable part of an interrupted disk backup: every leaf in
// Leaves and every blob it references are stored and indexed. A retried
// backup starts at block NextBlock.
type Checkpoint struct {
	NextBlock int64     `json:"next_block"`
	Leaves    []ID      `json:"leaves"`
	Stats     DiskStats `json:"stats"`
}

// trustedCheckpoint returns cp if a backup of a disk laid out as lay can
// resume from it: it must end on a leaf boundary inside the disk and name
// only leaves the index holds (so everything they reference is stored too).
// Otherwise it returns nil and the backup starts over.
func trustedCheckpoint(cp *Checkpoint, idx *Index, lay layout) *Checkpoint {
	if cp == nil || cp.NextBlock <= 0 || cp.NextBlock > lay.blocks ||
		cp.NextBlock%lay.le != 0 || int64(len(cp.Leaves)) != cp.NextBlock/lay.le {
		return nil
	}
	for _, id := range cp.Leaves {
		if !idx.Has(id) {
			return nil
		}
	}
	return cp
}

// checkpointer follows the leaves of a disk backup from finished (in a pack)
// to durable (every pack up to theirs uploaded and indexed). Leaves finish in
// order and packs are numbered in the order they are filled, so the durable
// leaves are always a prefix.
type checkpointer struct {
	lay layout
	// leaves are all finished leaves, in order; the first durable of them
	// are durable, and stats counts those.
	leaves  []ID
	durable int64
	stats   DiskStats
	// waiting are the finished leaves that are not durable yet, in order.
	waiting []waitingLeaf
}

type waitingLeaf struct {
	pack  int // sequence number of the newest pack the leaf needs
	stats DiskStats
}

// newCheckpointer starts after resume's leaves (durable by construction), or
// at the beginning if resume is nil.
func newCheckpointer(lay layout, resume *Checkpoint) *checkpointer {
	c := &checkpointer{lay: lay, leaves: make([]ID, 0, lay.nLeaves)}
	if resume != nil {
		c.leaves = append(c.leaves, resume.Leaves...)
		c.durable = int64(len(resume.Leaves))
		c.stats = resume.Stats
		c.stats.Packs = 0 // counts this attempt's packs
	}
	return c
}

// finished records the next leaf in order: its id, the newest pack holding
// it or a blob it names, and its stats.
func (c *checkpointer) finished(id ID, pack int, stats DiskStats) {
	c.leaves = append(c.leaves, id)
	c.waiting = append(c.waiting, waitingLeaf{pack: pack, stats: stats})
}

// advance moves over the leaves that are durable now that every pack up to
// durablePack is, and returns the new checkpoint, or nil if none moved.
func (c *checkpointer) advance(durablePack int) *Checkpoint {
	moved := false
	for len(c.waiting) > 0 && c.waiting[0].pack <= durablePack {
		c.stats.Add(c.waiting[0].stats)
		c.waiting = c.waiting[1:]
		c.durable++
		moved = true
	}
	if !moved {
		return nil
	}
	return &Checkpoint{
		NextBlock: min(c.durable*c.lay.le, c.lay.blocks),
		Leaves:    append([]ID(nil), c.leaves[:c.durable]...),
		Stats:     c.stats,
	}
}
