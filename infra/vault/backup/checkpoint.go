package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"golang.org/x/sync/errgroup"
)

// saveCheckpoint writes the object at key listing leaves and returns the
// checkpoint naming it: it is durable when returned.
func (v *archiver) saveCheckpoint(ctx context.Context, key, disk string, lay format.Layout, leaves []format.ID, stats format.DiskStats) (*repo.Checkpoint, error) {
	o := format.CheckpointObject{Disk: disk, Size: lay.Size, BlockSize: lay.BS, LeafEntries: lay.LE, Leaves: make([]byte, 0, len(leaves)*len(format.ID{}))}
	for _, id := range leaves {
		o.Leaves = append(o.Leaves, id[:]...)
	}
	if err := v.PutSealed(ctx, key, o); err != nil {
		return nil, fmt.Errorf("disk %s: checkpoint: %w", disk, err)
	}
	faultpoint.Hit("transfer.checkpoint")
	return &repo.Checkpoint{NextBlock: min(int64(len(leaves))*lay.LE, lay.Blocks), Ref: key, Stats: stats}, nil
}

// resumeLeaves returns the leaves a backup of disk laid out as lay can
// resume from cp with, or nil to start over: cp must end on a leaf boundary
// inside the disk, its object must be of this disk and list at least that
// many leaves, and the index must hold every one of them (so everything they
// reference is stored too). Only a storage error other than not found fails.
func (v *archiver) resumeLeaves(ctx context.Context, cp *repo.Checkpoint, idx *index.Index, disk string, lay format.Layout) ([]format.ID, error) {
	if cp == nil || cp.NextBlock <= 0 || cp.NextBlock > lay.Blocks || cp.NextBlock%lay.LE != 0 && cp.NextBlock != lay.Blocks ||
		!format.IsCheckpointKey(cp.Ref) {
		return nil, nil
	}
	var raw json.RawMessage
	err := v.GetSealed(ctx, cp.Ref, &raw)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, format.ErrCorrupt) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("disk %s: resume: %w", disk, err)
	}
	o, err := format.DecodeCheckpointObject(raw)
	if err != nil || o.Disk != disk || o.Size != lay.Size || o.BlockSize != lay.BS || o.LeafEntries != lay.LE {
		return nil, nil
	}
	return trustedLeaves(o.LeafIDs(), cp.NextBlock, idx, lay), nil
}

// blocksStored says whether dedup holds every block the leaves name: a
// pack lost or quarantined since the interrupted attempt wrote them makes
// the backup start over, so it reads those blocks again instead of naming
// them. It reads the leaves, 8 at a time; one that cannot be read counts
// as not stored.
func (v *archiver) blocksStored(ctx context.Context, leaves []format.ID, idx *index.Index) bool {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, l := range leaves {
		g.Go(func() error {
			ids, err := v.LoadLeaf(gctx, l)
			if err != nil {
				return err
			}
			for _, id := range ids {
				if !id.IsZero() && !idx.DedupHas(id) {
					return errNotStored
				}
			}
			return nil
		})
	}
	return g.Wait() == nil
}

var errNotStored = errors.New("block not stored")

// trustedLeaves returns the leaves up to block next if the index holds them all.
func trustedLeaves(leaves []format.ID, next int64, idx *index.Index, lay format.Layout) []format.ID {
	n := (next + lay.LE - 1) / lay.LE
	if next <= 0 || next > lay.Blocks || int64(len(leaves)) < n || min(n*lay.LE, lay.Blocks) != next {
		return nil
	}
	leaves = leaves[:n]
	for _, id := range leaves {
		// A leaf in a GC candidate pack is not trusted: the backup stores it
		// again rather than reference a pack a sweep may delete (maint/gc.go).
		if !idx.DedupHas(id) {
			return nil
		}
	}
	return leaves
}

// checkpointer follows the leaves of a disk backup from finished (in a pack)
// to durable (every pack up to theirs uploaded and indexed). Leaves finish in
// order and packs are numbered in the order they are filled, so the durable
// leaves are always a prefix.
type checkpointer struct {
	lay format.Layout
	// leaves are all finished leaves, in order; the first durable of them
	// are durable, and stats counts those.
	leaves  []format.ID
	durable int64
	stats   format.DiskStats
	// waiting are the finished leaves that are not durable yet, in order.
	waiting []waitingLeaf
	// saved is the number of durable leaves the checkpoint object lists, and
	// savedAt when it was written.
	saved   int64
	savedAt time.Time
}

type waitingLeaf struct {
	pack  int // sequence number of the newest pack the leaf needs
	stats format.DiskStats
}

// newCheckpointer starts after the resumed leaves (durable by
// construction), or at the beginning if there are none.
func newCheckpointer(lay format.Layout, resumed []format.ID, stats format.DiskStats) *checkpointer {
	c := &checkpointer{lay: lay, leaves: make([]format.ID, 0, lay.NLeaves)}
	if len(resumed) > 0 {
		c.leaves = append(c.leaves, resumed...)
		c.durable = int64(len(resumed))
		c.saved = c.durable
		c.stats = stats
		c.stats.Packs = 0 // counts this attempt's packs
	}
	return c
}

// finished records the next leaf in order: its id, the newest pack holding
// it or a blob it names, and its stats.
func (c *checkpointer) finished(id format.ID, pack int, stats format.DiskStats) {
	c.leaves = append(c.leaves, id)
	c.waiting = append(c.waiting, waitingLeaf{pack: pack, stats: stats})
}

// advance moves over the leaves that are durable now that every pack up to
// durablePack is, and reports whether any moved.
func (c *checkpointer) advance(durablePack int) bool {
	moved := false
	for len(c.waiting) > 0 && c.waiting[0].pack <= durablePack {
		c.stats.Add(c.waiting[0].stats)
		c.waiting = c.waiting[1:]
		c.durable++
		moved = true
	}
	return moved
}

// checkpointEvery is the longest a backup goes without writing a newer
// checkpoint object once leaves became durable; it also writes one whenever
// 1/checkpointSteps of the disk's leaves became durable since the last.
// Rewriting the object costs its size (up to 43 bytes a leaf: 176 KiB for
// 4 TiB in 1 MiB blocks and 1024-entry leaves), so it is not rewritten at
// every pack.
const (
	checkpointEvery = 30 * time.Second
	checkpointSteps = 64
)

// due reports whether the durable leaves are worth a new checkpoint object.
func (c *checkpointer) due(now time.Time) bool {
	if c.durable <= c.saved {
		return false
	}
	step := max(1, c.lay.NLeaves/checkpointSteps)
	return c.saved == 0 || c.durable-c.saved >= step || c.durable == c.lay.NLeaves || now.Sub(c.savedAt) >= checkpointEvery
}

// save writes the checkpoint object at key for the durable leaves and
// returns the checkpoint naming it.
func (c *checkpointer) save(ctx context.Context, v *archiver, key, disk string) (*repo.Checkpoint, error) {
	cp, err := v.saveCheckpoint(ctx, key, disk, c.lay, c.leaves[:c.durable], c.stats)
	if err != nil {
		return nil, err
	}
	c.saved, c.savedAt = c.durable, time.Now()
	return cp, nil
}
