package backup

import (
	"context"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// collector is the last stage of a disk backup. It takes the seal workers'
// results in any order, assembles the tree's leaves in order, hands new
// blobs to the packer, and writes the root once every leaf is done.
type collector struct {
	v      *archiver
	idx    *index.Index
	pk     *repo.Packer
	lay    format.Layout
	disk   string
	parent *format.Root // to count changed bytes against; nil for none
	// open are the leaves with blocks still to come, by leaf number; next is
	// the first leaf not finished yet.
	open       map[int64]*openLeaf
	next       int64
	parentLeaf repo.LeafCache
	cp         *checkpointer
	// stats count the finished leaves, then the whole disk.
	stats format.DiskStats

	// cpKey is this attempt's checkpoint object.
	cpKey          string
	progress       func(repo.Progress)
	began, lastRep time.Time
	resumedScanned int64 // scanned before a resumed attempt
}

type openLeaf struct {
	ids   []format.ID
	count int64 // blocks received
	stats format.DiskStats
}

// newCollector starts after the resumed leaves, whose stats are resumedStats.
func newCollector(v *archiver, idx *index.Index, pk *repo.Packer, lay format.Layout, parent *format.Root, resumed []format.ID, resumedStats format.DiskStats, opt BackupOptions) *collector {
	c := &collector{v: v, idx: idx, pk: pk, lay: lay, disk: opt.Disk, parent: parent,
		open: make(map[int64]*openLeaf), cp: newCheckpointer(lay, resumed, resumedStats),
		cpKey: format.NewCheckpointKey(), progress: opt.Progress, began: time.Now()}
	c.stats = c.cp.stats
	c.resumedScanned = c.stats.ScannedBytes
	c.next = int64(len(c.cp.leaves))
	return c
}

// run collects results until the channel closes, then writes the root and
// waits for the packer: the returned root is durable.
func (c *collector) run(ctx context.Context, results <-chan blockResult) (format.ID, error) {
	for r := range results {
		if err := c.add(r); err != nil {
			return format.ID{}, err
		}
		if err := c.finishLeaves(ctx); err != nil {
			return format.ID{}, err
		}
		c.report(ctx, false)
	}
	if err := context.Cause(ctx); err != nil {
		return format.ID{}, err // a stage stopped early
	}
	if n := int64(len(c.cp.leaves)); n != c.lay.NLeaves {
		return format.ID{}, fmt.Errorf("disk %s: internal error: %d of %d leaves", c.disk, n, c.lay.NLeaves)
	}
	root := format.Root{Size: c.lay.Size, BlockSize: int(c.lay.BS), LeafEntries: int(c.lay.LE), Leaves: c.cp.leaves}
	id, stored, err := c.store(format.EncodeRoot(root))
	if err != nil {
		return format.ID{}, err
	}
	c.stats.StoredBytes += stored
	if err := c.pk.Finish(); err != nil {
		return format.ID{}, fmt.Errorf("disk %s: %w", c.disk, err)
	}
	c.stats.Packs = c.pk.Uploaded()
	c.report(ctx, true)
	return id, nil
}

// add places one block in its leaf and queues its blob if it is new.
func (c *collector) add(r blockResult) error {
	l := r.n / c.lay.LE
	ls := c.open[l]
	if ls == nil {
		ls = &openLeaf{ids: make([]format.ID, c.lay.LeafLen(l))}
		c.open[l] = ls
	}
	ls.ids[r.n%c.lay.LE] = r.id
	ls.count++
	if r.scanned {
		ls.stats.ScannedBytes += int64(r.size)
	}
	if r.id.IsZero() {
		ls.stats.ZeroBlocks++
	} else {
		ls.stats.DataBytes += int64(r.size)
	}
	// Another worker may have sealed the same block since this one looked.
	if r.sealed != nil && !c.pk.Has(c.idx, r.id) {
		if _, err := c.pk.AddBlob(r.id, format.BlobData, r.sealed); err != nil {
			return err
		}
		ls.stats.NewBytes += int64(r.size)
		ls.stats.StoredBytes += int64(len(r.sealed))
		ls.stats.NewBlocks++
	}
	return nil
}

// finishLeaves stores every complete leaf at the front, in order.
func (c *collector) finishLeaves(ctx context.Context) error {
	for {
		ls := c.open[c.next]
		if ls == nil || ls.count < int64(len(ls.ids)) {
			return nil
		}
		ls.stats.ChangedBytes += c.changedBytes(ctx, c.next, ls.ids)
		id, stored, err := c.store(format.EncodeLeaf(ls.ids))
		if err != nil {
			return err
		}
		ls.stats.StoredBytes += stored
		// The leaf and every block it names are in packs up to the newest.
		c.cp.finished(id, c.pk.LastSeq(), ls.stats)
		c.stats.Add(ls.stats)
		delete(c.open, c.next)
		c.next++
	}
}

// changedBytes counts the data of leaf l that differs from the parent's leaf
// at the same place (all of it without a parent, or if that leaf is unreadable).
func (c *collector) changedBytes(ctx context.Context, l int64, ids []format.ID) int64 {
	var prev []format.ID
	if c.parent != nil && l < int64(len(c.parent.Leaves)) {
		prev, _ = c.parentLeaf.Load(ctx, c.v.Repo, c.parent, l)
	}
	var n int64
	for i, id := range ids {
		if !id.IsZero() && (i >= len(prev) || prev[i] != id) {
			n += c.lay.BlockLen(l*c.lay.LE + int64(i))
		}
	}
	return n
}

// store queues a tree node unless the vault has it, and returns its id and
// the bytes it adds to the vault.
func (c *collector) store(plain []byte) (format.ID, int64, error) {
	id := c.v.Keys().Hash(plain)
	if c.pk.Has(c.idx, id) {
		return id, 0, nil
	}
	sealed, _ := c.v.Keys().SealBlob(id, plain, nil)
	if _, err := c.pk.AddBlob(id, format.BlobTree, sealed); err != nil {
		return id, 0, err
	}
	return id, int64(len(sealed)), nil
}

// report calls the progress callback at most once a second, and whenever
// a new checkpoint is written or force is set. The checkpoint object is
// written before the checkpoint naming it is reported; a failed write is
// tried again at the next report (the previous checkpoint still holds).
func (c *collector) report(ctx context.Context, force bool) {
	if c.progress == nil {
		return // nobody to hand a checkpoint to
	}
	c.cp.advance(c.pk.DurableSeq())
	var cp *repo.Checkpoint
	if c.cp.due(time.Now()) {
		cp, _ = c.cp.save(ctx, c.v, c.cpKey, c.disk)
	}
	if !force && cp == nil && time.Since(c.lastRep) < time.Second {
		return
	}
	c.lastRep = time.Now()
	done := min(c.next*c.lay.LE*c.lay.BS, c.lay.Size)
	st := c.stats
	for _, ls := range c.open {
		done += ls.count * c.lay.BS
		st.Add(ls.stats)
	}
	st.Packs = c.pk.Uploaded()
	rate := float64(st.ScannedBytes-c.resumedScanned) / max(time.Since(c.began).Seconds(), 0.001)
	c.progress(repo.Progress{Disk: c.disk, SizeBytes: c.lay.Size, DoneBytes: min(done, c.lay.Size), Stats: st, BytesPerS: rate, Checkpoint: cp})
}
