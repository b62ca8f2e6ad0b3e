package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"golang.org/x/sync/errgroup"
)

// RestoreOptions describe one disk restore.
type RestoreOptions struct {
	Disk     string
	Progress func(repo.Progress)
	// Workers fetch and verify pack ranges in parallel; 0 means 4.
	Workers int
	// StartLeaf resumes an interrupted restore: the leaves before it are
	// already written (Progress.NextLeaf of the attempt that wrote them).
	StartLeaf int
}

// RestoreResult counts what a disk restore did.
type RestoreResult struct {
	Size         int64 `json:"size"`
	WrittenBytes int64 `json:"written_bytes"`
	ZeroBlocks   int64 `json:"zero_blocks"`
	Requests     int64 `json:"requests"`
	// ResumedAt is the byte offset a resumed restore started from.
	ResumedAt int64 `json:"resumed_at,omitempty"`
}

// maxRangeGap is the most unneeded bytes read to merge two blobs of a pack
// into one range request; maxRange caps a request.
const (
	maxRangeGap = 1 << 20
	maxRange    = 32 << 20
)

// RestoreDisk writes the disk with tree root id to w, which must read as
// zero where nothing is written (a new sparse file): zero blocks are skipped.
// Every block is verified; a bad one fails the restore naming disk and offset.
func (v *restorer) RestoreDisk(ctx context.Context, id format.ID, w io.WriterAt, opt RestoreOptions) (RestoreResult, error) {
	root, err := v.LoadRoot(ctx, id)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("disk %s: %w", opt.Disk, err)
	}
	idx, err := v.Index(ctx)
	if err != nil {
		return RestoreResult{}, err
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = 4
	}
	res := RestoreResult{Size: root.Size}
	bs, le := int64(root.BlockSize), int64(root.LeafEntries)
	began := time.Now()
	if opt.StartLeaf < 0 || opt.StartLeaf > len(root.Leaves) {
		opt.StartLeaf = 0 // a checkpoint of another disk: start over
	}
	res.ResumedAt = min(int64(opt.StartLeaf)*le*bs, root.Size)
	for li, lid := range root.Leaves {
		if li < opt.StartLeaf {
			continue
		}
		ids, err := v.LoadLeaf(ctx, lid)
		if err != nil {
			return res, fmt.Errorf("disk %s offset %d: %w", opt.Disk, int64(li)*le*bs, err)
		}
		var wants []Block
		for i, bid := range ids {
			off := (int64(li)*le + int64(i)) * bs
			if bid.IsZero() {
				res.ZeroBlocks++
				continue
			}
			loc, ok, err := v.Locate(ctx, idx, bid)
			if err != nil {
				return res, err
			}
			if !ok {
				return res, fmt.Errorf("disk %s offset %d: block %s: %w: not in the vault index", opt.Disk, off, bid.Short(), format.ErrMissing)
			}
			wants = append(wants, Block{Off: off, ID: bid, Loc: loc})
		}
		runs := RangeRuns(wants)
		written := make([]int64, len(runs))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(workers)
		for i, r := range runs {
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return context.Cause(gctx) // stop promptly after the first error
				}
				var err error
				written[i], err = v.restoreRun(gctx, root, r, w, opt.Disk)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return res, err
		}
		res.Requests += int64(len(runs))
		for _, n := range written {
			res.WrittenBytes += n
		}
		faultpoint.Hit("restore.write")
		if opt.Progress != nil {
			done := min((int64(li)+1)*le*bs, root.Size)
			opt.Progress(repo.Progress{Disk: opt.Disk, SizeBytes: root.Size, DoneBytes: done, NextLeaf: li + 1,
				Stats:     format.DiskStats{DataBytes: res.WrittenBytes},
				BytesPerS: float64(done) / max(time.Since(began).Seconds(), 0.001)})
		}
	}
	return res, nil
}

// restoreBlock is a block to restore: its offset on the disk, id and location.
type Block struct {
	Off int64
	ID  format.ID
	Loc index.Location
}

// RangeRuns groups blocks into range requests: by pack, by offset, merging
// near neighbours.
func RangeRuns(wants []Block) [][]Block {
	sort.Slice(wants, func(i, j int) bool {
		a, b := wants[i].Loc, wants[j].Loc
		if a.Pack != b.Pack {
			return string(a.Pack[:]) < string(b.Pack[:])
		}
		return a.Offset < b.Offset
	})
	var runs [][]Block
	for i, wnt := range wants {
		if i > 0 {
			r := runs[len(runs)-1]
			first, last := r[0].Loc, r[len(r)-1].Loc
			end := int64(last.Offset) + int64(last.Length)
			if wnt.Loc.Pack == first.Pack && int64(wnt.Loc.Offset)-end <= maxRangeGap &&
				int64(wnt.Loc.Offset)+int64(wnt.Loc.Length)-int64(first.Offset) <= maxRange && int64(wnt.Loc.Offset) >= end {
				runs[len(runs)-1] = append(r, wnt)
				continue
			}
		}
		runs = append(runs, []Block{wnt})
	}
	return runs
}

// restoreRun fetches one range of a pack, verifies its blocks and writes
// them, and returns the bytes written. A block whose pack is gone or whose
// copy fails its check is read from another pack holding it, if any
// (repo.ReadOtherCopy), before the restore fails.
func (v *restorer) restoreRun(ctx context.Context, root format.Root, r []Block, w io.WriterAt, disk string) (int64, error) {
	bs := int64(root.BlockSize)
	first, last := r[0].Loc, r[len(r)-1].Loc
	start := int64(first.Offset)
	data, gerr := v.Storage().GetRange(ctx, format.PackKey(first.Pack), start, int64(last.Offset)+int64(last.Length)-start)
	each := false
	switch {
	case errors.Is(gerr, storage.ErrNotFound):
		gerr = fmt.Errorf("%w: pack %s is not in the vault", format.ErrMissing, first.Pack.Short())
	case errors.Is(gerr, storage.ErrRange):
		// The pack is shorter than the index says: read block by block,
		// so those before its end still come from it, the others from
		// another copy if there is one.
		each, gerr = true, nil
	case gerr != nil:
		return 0, fmt.Errorf("disk %s offset %d: block %s in pack %s: %w", disk, r[0].Off, r[0].ID.Short(), first.Pack.Short(), gerr)
	}
	var written int64
	for _, wnt := range r {
		var plain []byte
		var err error
		if each {
			plain, err = v.ReadBlob(ctx, wnt.ID)
		} else {
			plain, err = v.openBlock(data, start, wnt, gerr)
		}
		if err != nil && !each && repo.AnotherCopyMayHelp(err) && ctx.Err() == nil {
			plain, _, err = v.ReadOtherCopy(ctx, wnt.ID, wnt.Loc.Pack, err)
		}
		if err != nil {
			return written, fmt.Errorf("disk %s offset %d: block %s: %w", disk, wnt.Off, wnt.ID.Short(), err)
		}
		if want := min(bs, root.Size-wnt.Off); int64(len(plain)) != want {
			return written, fmt.Errorf("disk %s offset %d: block %s: %w: %d bytes, want %d", disk, wnt.Off, wnt.ID.Short(), format.ErrCorrupt, len(plain), want)
		}
		if _, err := w.WriteAt(plain, wnt.Off); err != nil {
			return written, fmt.Errorf("disk %s: write at offset %d: %w", disk, wnt.Off, err)
		}
		written += int64(len(plain))
	}
	return written, nil
}

// openBlock verifies and opens block b from data, the range of its pack
// that starts at start (gerr: why the range could not be read).
func (v *restorer) openBlock(data []byte, start int64, b Block, gerr error) ([]byte, error) {
	if gerr != nil {
		return nil, gerr
	}
	lo := int64(b.Loc.Offset) - start
	hi := lo + int64(b.Loc.Length)
	if hi > int64(len(data)) {
		return nil, fmt.Errorf("in pack %s: %w: pack is truncated", b.Loc.Pack.Short(), format.ErrCorrupt)
	}
	plain, err := v.Keys().OpenBlob(b.ID, data[lo:hi])
	if err != nil {
		return nil, fmt.Errorf("in pack %s: %w", b.Loc.Pack.Short(), err)
	}
	return plain, nil
}
