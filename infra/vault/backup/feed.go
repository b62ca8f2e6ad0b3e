package backup

import (
	"context"
	"fmt"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// blockJob is one block for the seal workers, in disk order.
type blockJob struct {
	n      int64 // block number
	hole   bool  // known zero: not read
	reuse  bool  // unchanged since parent (CBT): id taken from the parent if dedup has it
	parent format.ID
}

// feeder is the first stage of a disk backup: it walks the blocks in order
// and marks those that need not be read.
type feeder struct {
	v    *archiver
	disk string
	lay  format.Layout
	// data are the normalized extents that may hold data; nil means all.
	data []extent.Extent
	// parent and changed are set for a CBT backup: blocks outside changed
	// are taken from parent.
	parent  *format.Root
	changed []extent.Extent
}

// run sends a job for every block from start on, until done or ctx ends.
func (f *feeder) run(ctx context.Context, start int64, jobs chan<- blockJob) error {
	data, changed := extent.NewCursor(f.data), extent.NewCursor(f.changed)
	var parentLeaf repo.LeafCache
	for n := start; n < f.lay.Blocks; n++ {
		off := n * f.lay.BS
		end := off + f.lay.BlockLen(n)
		j := blockJob{n: n}
		if f.data != nil && !data.Overlaps(off, end) {
			j.hole = true
		} else if l := n / f.lay.LE; f.parent != nil && !changed.Overlaps(off, end) && l < int64(len(f.parent.Leaves)) {
			ids, err := parentLeaf.Load(ctx, f.v.Repo, f.parent, l)
			if err != nil {
				return fmt.Errorf("disk %s: parent leaf %d: %w", f.disk, l, parentUnreadable(fmt.Sprintf("leaf %d", l), err))
			}
			if i := n % f.lay.LE; i < int64(len(ids)) {
				j.reuse, j.parent = true, ids[i]
			}
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}
