package format

// Layout is the shape of one disk in the tree: blocks of BS bytes (the last
// may be shorter), grouped LE to a leaf (the last may hold fewer).
type Layout struct {
	Size, BS, LE    int64
	Blocks, NLeaves int64
}

// NewLayout is the shape of a disk of size bytes in a vault with cfg.
func NewLayout(size int64, cfg Config) Layout {
	bs, le := int64(cfg.BlockSize), int64(cfg.LeafEntries)
	blocks := (size + bs - 1) / bs
	return Layout{Size: size, BS: bs, LE: le, Blocks: blocks, NLeaves: (blocks + le - 1) / le}
}

// BlockLen is the length of block n.
func (l Layout) BlockLen(n int64) int64 { return min(l.BS, l.Size-n*l.BS) }

// LeafLen is the number of blocks in leaf i.
func (l Layout) LeafLen(i int64) int64 { return min(l.LE, l.Blocks-i*l.LE) }
