package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// Source is a disk to back up.
type Source interface {
	io.ReaderAt
	Size() int64
}

// BackupOptions describe one disk backup.
type BackupOptions struct {
	Disk string
	// Extents that may hold data; nil means the whole disk. Blocks outside
	// them are zero and not read.
	Extents []extent.Extent
	// Parent is the disk's tree root in the previous recovery point, if any.
	Parent *format.ID
	// Changed, when non-nil and Parent is set, lists the only extents that
	// changed since the parent (CBT): other blocks are taken from the parent.
	Changed []extent.Extent
	// Resume continues an interrupted backup from a checkpoint it reported
	// (Progress.Checkpoint); one that does not fit the disk or names data
	// the index lacks is ignored.
	Resume *repo.Checkpoint
	// Progress is called now and then, and with every new checkpoint.
	Progress func(repo.Progress)
	// Workers read, hash and seal blocks in parallel; 0 means GOMAXPROCS.
	Workers int
	// ReadLimit caps the disk read rate in bytes per second (0: no cap), to
	// spare the storage the VMs run on.
	ReadLimit int64
	// AuditRate is the fraction of the blocks a CBT backup would take from
	// the parent that it reads and compares with the parent first (the CBT
	// audit, audit.go); 0 audits nothing. AuditSeed (the parent recovery
	// point's name) seeds the sample with the parent's root and the disk.
	AuditRate float64
	AuditSeed string
}

// DiskResult is a finished disk backup.
type DiskResult struct {
	Root   format.ID        `json:"root"`
	Size   int64            `json:"size"`
	Stats  format.DiskStats `json:"stats"`
	Method format.Method    `json:"method"`
	// ResumedAt is the block a retried backup started from (0 if not resumed).
	ResumedAt int64 `json:"resumed_at"`
	// ParentUnreadable says why the parent could not be used (its root or
	// a leaf missing or corrupt), when the disk was read in full instead.
	ParentUnreadable string `json:"parent_unreadable,omitempty"`
}

// parentError is a parent tree that cannot be read (ErrMissing or
// ErrCorrupt): the backup falls back to a full read instead of failing.
type parentError struct {
	what string // "root" or "leaf <n>"
	err  error
}

func (e *parentError) Error() string { return e.what + ": " + e.err.Error() }
func (e *parentError) Unwrap() error { return e.err }

// parentUnreadable marks err, from reading the parent's what, as a parent
// that cannot be used if it is missing or corrupt data; other errors (the
// storage is down, the job was cancelled) stay what they are.
func parentUnreadable(what string, err error) error {
	if errors.Is(err, format.ErrMissing) || errors.Is(err, format.ErrCorrupt) {
		return &parentError{what: what, err: err}
	}
	return err
}

// BackupDisk stores src in the vault and returns its tree root. It runs as
// stages joined by channels: a feeder walks the blocks in order (feed.go),
// workers read, hash and seal them on all cores (readhash.go), and a collector
// assembles the tree in order and hands blobs to the packer, which uploads
// packs in the background (collect.go, repo/pack.go); the collector also reports
// progress and checkpoints (checkpoint.go). Memory stays bounded by the
// number of workers and packs in flight. The first stage to fail stops the
// others, and its error is returned.
//
// A CBT backup first audits the tracking (audit.go). If the audit finds
// blocks it missed, the disk is read in full (checksum, with the parent)
// instead: correctness first. DiskResult.Stats count the audit either way.
//
// A parent whose root or a leaf is missing or corrupt must not block every
// later backup of the VM: the disk is read in full (checksum, no parent)
// instead, and DiskResult.ParentUnreadable says why.
func (v *archiver) BackupDisk(ctx context.Context, src Source, opt BackupOptions) (DiskResult, error) {
	res, err := v.backupDisk(ctx, src, opt)
	var ae *auditError
	if errors.As(err, &ae) && ctx.Err() == nil {
		// A retry audits the same sample of the same snapshot and finds the
		// same: a checkpoint it resumes from was made by this full read.
		opt.Changed = nil
		res, err = v.backupDisk(ctx, src, opt)
	}
	var pe *parentError
	if opt.Parent != nil && errors.As(err, &pe) && ctx.Err() == nil {
		opt.Parent, opt.Changed = nil, nil
		res, err = v.backupDisk(ctx, src, opt)
		res.ParentUnreadable = pe.Error()
	}
	if ae != nil {
		res.Stats.AuditedBlocks, res.Stats.AuditMissed = ae.audited, ae.missed
		res.Stats.ScannedBytes += ae.scanned
	}
	return res, err
}

func (v *archiver) backupDisk(ctx context.Context, src Source, opt BackupOptions) (DiskResult, error) {
	idx, err := v.Index(ctx)
	if err != nil {
		return DiskResult{}, err
	}
	lay := format.NewLayout(src.Size(), v.Config())
	res := DiskResult{Size: lay.Size, Method: format.MethodChecksum}
	var parent *format.Root
	if opt.Parent != nil {
		r, err := v.LoadRoot(ctx, *opt.Parent)
		if err != nil {
			return res, fmt.Errorf("disk %s: parent: %w", opt.Disk, parentUnreadable("root", err))
		}
		if int64(r.BlockSize) == lay.BS && int64(r.LeafEntries) == lay.LE {
			parent = &r
		}
	}
	useCBT := parent != nil && opt.Changed != nil && parent.Size == lay.Size
	if useCBT {
		res.Method = format.MethodCBT
	}
	resumed, err := v.resumeLeaves(ctx, opt.Resume, idx, opt.Disk, lay)
	if err != nil {
		return res, err
	}
	if resumed != nil && !v.blocksStored(ctx, resumed, idx) {
		resumed = nil // start over: read what was lost since
	}
	var resumedStats format.DiskStats
	if resumed != nil {
		res.ResumedAt, resumedStats = opt.Resume.NextBlock, opt.Resume.Stats
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	s := &readHasher{v: v, idx: idx, src: src, disk: opt.Disk, lay: lay, limit: newReadLimiter(opt.ReadLimit, lay.BS)}
	var audited, auditScanned int64
	if useCBT {
		sample := auditSample(lay, extent.Normalize(opt.Extents), extent.Normalize(opt.Changed), opt.AuditRate, auditSeed(opt.AuditSeed, *opt.Parent, opt.Disk))
		if auditScanned, err = s.audit(ctx, parent, sample, workers); err != nil {
			return res, err
		}
		audited = int64(len(sample))
	}

	g, gctx := errgroup.WithContext(ctx)
	pk := repo.NewPacker(gctx, v.Repo)
	defer pk.Abort()
	jobs := make(chan blockJob, workers*2)
	results := make(chan blockResult, workers*2)
	f := &feeder{v: v, disk: opt.Disk, lay: lay, data: extent.Normalize(opt.Extents)}
	if useCBT {
		f.parent, f.changed = parent, extent.Normalize(opt.Changed)
	}
	g.Go(func() error {
		defer close(jobs)
		return f.run(gctx, res.ResumedAt, jobs)
	})
	g.Go(func() error {
		defer close(results)
		return s.run(gctx, workers, jobs, results)
	})
	c := newCollector(v, idx, pk, lay, parent, resumed, resumedStats, opt)
	g.Go(func() error {
		var err error
		res.Root, err = c.run(gctx, results)
		return err
	})
	if err := g.Wait(); err != nil {
		return res, err
	}
	res.Stats = c.stats
	res.Stats.AuditedBlocks = audited
	res.Stats.ScannedBytes += auditScanned
	// Checkpoints are garbage once the root is durable. Best effort: GC
	// removes what is left (this one if the DELETE fails, and those of
	// attempts that were never resumed).
	_ = v.Storage().Delete(ctx, c.cpKey)
	if opt.Resume != nil && format.IsCheckpointKey(opt.Resume.Ref) {
		_ = v.Storage().Delete(ctx, opt.Resume.Ref)
	}
	return res, nil
}
