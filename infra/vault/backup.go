package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/vmvault/vmvault/infra/extent"
)

// Source is a disk to back up.
type Source interface {
	io.ReaderAt
	Size() int64
}

// Method is how a disk backup found the blocks that changed.
type Method string

const (
	// MethodCBT read only the extents the platform reported changed.
	MethodCBT Method = "cbt"
	// MethodChecksum read every allocated block and compared ids.
	MethodChecksum Method = "checksum"
)

// DiskStats count what a disk backup did. Byte counts are logical bytes
// unless named stored.
type DiskStats struct {
	// ScannedBytes were read from the disk.
	ScannedBytes int64 `json:"scanned_bytes"`
	// DataBytes are the non-zero blocks of the disk (what the disk holds).
	DataBytes int64 `json:"data_bytes"`
	// ChangedBytes differ from the parent recovery point (all data if none).
	ChangedBytes int64 `json:"changed_bytes"`
	// NewBytes were not in the vault yet and were uploaded.
	NewBytes int64 `json:"new_bytes"`
	// StoredBytes is what the new blobs take in the vault (compressed, sealed).
	StoredBytes int64 `json:"stored_bytes"`
	NewBlocks   int64 `json:"new_blocks"`
	ZeroBlocks  int64 `json:"zero_blocks"`
	Packs       int   `json:"packs"`
}

// Add adds o's counts to s, e.g. to total the disks of a recovery point.
func (s *DiskStats) Add(o DiskStats) {
	s.ScannedBytes += o.ScannedBytes
	s.DataBytes += o.DataBytes
	s.ChangedBytes += o.ChangedBytes
	s.NewBytes += o.NewBytes
	s.StoredBytes += o.StoredBytes
	s.NewBlocks += o.NewBlocks
	s.ZeroBlocks += o.ZeroBlocks
	s.Packs += o.Packs
}

// Checkpoint is the durable part of an interrupted disk backup: every leaf in
// Leaves and every blob it references are stored and indexed. A retried
// backup starts at block NextBlock.
type Checkpoint struct {
	NextBlock int64     `json:"next_block"`
	Leaves    []ID      `json:"leaves"`
	Stats     DiskStats `json:"stats"`
}

// Progress is reported while a disk is backed up or restored.
type Progress struct {
	Disk       string    `json:"disk"`
	SizeBytes  int64     `json:"size_bytes"`
	DoneBytes  int64     `json:"done_bytes"` // logical offset reached
	Stats      DiskStats `json:"stats"`
	BytesPerS  float64   `json:"bytes_per_s"`
	Checkpoint *Checkpoint
}

// BackupOptions describe one disk backup.
type BackupOptions struct {
	Disk string
	// Extents that may hold data; nil means the whole disk. Blocks outside
	// them are zero and not read.
	Extents []extent.Extent
	// Parent is the disk's tree root in the previous recovery point, if any.
	Parent *ID
	// Changed, when non-nil and Parent is set, lists the only extents that
	// changed since the parent (CBT): other blocks are taken from the parent.
	Changed []extent.Extent
	// Resume continues an interrupted backup.
	Resume *Checkpoint
	// Progress is called now and then, and with every new checkpoint.
	Progress func(Progress)
	// Workers read, hash and seal blocks in parallel; 0 means GOMAXPROCS.
	Workers int
	// ReadLimit caps the disk read rate in bytes per second (0: no cap), to
	// spare the storage the VMs run on.
	ReadLimit int64
}

// DiskResult is a finished disk backup.
type DiskResult struct {
	Root   ID        `json:"root"`
	Size   int64     `json:"size"`
	Stats  DiskStats `json:"stats"`
	Method Method    `json:"method"`
	// ResumedAt is the block a retried backup started from (0 if not resumed).
	ResumedAt int64 `json:"resumed_at"`
}

type blockJob struct {
	n      int64 // block number
	hole   bool  // known zero: not read
	reuse  bool  // unchanged since parent (CBT): id taken from the parent
	parent ID
}

type blockResult struct {
	n       int64
	id      ID
	size    int
	scanned bool
	sealed  []byte // nil when nothing to upload
	err     error
}

// BackupDisk stores src in the vault and returns its tree root. It reads,
// hashes and seals blocks on all cores, uploads packs in the background and
// keeps memory bounded by the number of workers and packs in flight.
func (v *Vault) BackupDisk(ctx context.Context, src Source, opt BackupOptions) (DiskResult, error) {
	idx, err := v.Index(ctx)
	if err != nil {
		return DiskResult{}, err
	}
	bs := int64(v.cfg.BlockSize)
	size := src.Size()
	nBlocks := (size + bs - 1) / bs
	le := int64(v.cfg.LeafEntries)
	nLeaves := (nBlocks + le - 1) / le

	res := DiskResult{Size: size, Method: MethodChecksum}
	var parent *Root
	if opt.Parent != nil {
		r, err := v.LoadRoot(ctx, *opt.Parent)
		if err != nil {
			return res, fmt.Errorf("disk %s: parent: %w", opt.Disk, err)
		}
		if r.BlockSize == int(bs) && r.LeafEntries == int(le) {
			parent = &r
		}
	}
	useCBT := parent != nil && opt.Changed != nil && parent.Size == size
	if useCBT {
		res.Method = MethodCBT
	}

	var stats DiskStats
	leaves := make([]ID, 0, nLeaves)
	start := int64(0)
	if cp := opt.Resume; cp != nil && cp.NextBlock > 0 && cp.NextBlock <= nBlocks && int64(len(cp.Leaves)) == cp.NextBlock/le && cp.NextBlock%le == 0 {
		// A checkpoint is only trusted if everything it names is in the index.
		ok := true
		for _, id := range cp.Leaves {
			if !idx.Has(id) {
				ok = false
				break
			}
		}
		if ok {
			start = cp.NextBlock
			leaves = append(leaves, cp.Leaves...)
			stats = cp.Stats
			stats.Packs = 0
			res.ResumedAt = start
		}
	}
	prevStats := stats // stats of the checkpointed leaves
	resumedScanned := stats.ScannedBytes

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pk := newPacker(ctx, v)
	defer pk.abort()

	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	jobs := make(chan blockJob, workers*2)
	results := make(chan blockResult, workers*2)
	bufPool := sync.Pool{New: func() any { b := make([]byte, bs); return &b }}
	pace := newPacer(opt.ReadLimit)

	// Feeder: walks the blocks in order, marking holes and unchanged blocks.
	go func() {
		defer close(jobs)
		dataCur, chgCur := extent.NewCursor(opt.Extents), extent.NewCursor(opt.Changed)
		var pLeaf []ID
		pLeafN := int64(-1)
		for n := start; n < nBlocks; n++ {
			off := n * bs
			end := min(off+bs, size)
			j := blockJob{n: n}
			if opt.Extents != nil && !dataCur.Overlaps(off, end) {
				j.hole = true
			} else if useCBT && !chgCur.Overlaps(off, end) && n/le < int64(len(parent.Leaves)) {
				if pLeafN != n/le {
					l, err := v.loadLeaf(ctx, parent.Leaves[n/le])
					if err != nil {
						cancel(fmt.Errorf("disk %s: parent leaf %d: %w", opt.Disk, n/le, err))
						return
					}
					pLeaf, pLeafN = l, n/le
				}
				if i := n % le; i < int64(len(pLeaf)) {
					j.reuse, j.parent = true, pLeaf[i]
				}
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()

	// Workers: read, hash, and seal blocks the vault lacks.
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var scratch []byte
			for j := range jobs {
				off := j.n * bs
				n := int(min(bs, size-off))
				r := blockResult{n: j.n, size: n}
				switch {
				case j.hole:
				case j.reuse:
					r.id = j.parent
				default:
					if err := pace.wait(ctx, int64(n)); err != nil {
						return
					}
					bp := bufPool.Get().(*[]byte)
					buf := (*bp)[:n]
					if _, err := src.ReadAt(buf, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(n) <= size) {
						r.err = fmt.Errorf("disk %s: read at offset %d: %w", opt.Disk, off, err)
					} else {
						r.scanned = true
						if !isZero(buf) {
							r.id = v.keys.hash(buf)
							if !idx.Has(r.id) {
								r.sealed, scratch = v.keys.sealBlob(r.id, buf, scratch)
							}
						}
					}
					bufPool.Put(bp)
				}
				select {
				case results <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	// Collector: assembles leaves in order and hands blobs to the packer.
	type leafState struct {
		ids   []ID
		count int64
		stats DiskStats
	}
	open := make(map[int64]*leafState)
	nextLeaf := start / le
	type leafSeq struct {
		seq   int
		stats DiskStats
	}
	var sealedLeaves []leafSeq // leaves added to packs, waiting to be durable
	var cp *Checkpoint
	cpLeaves := int64(len(leaves))
	began := time.Now()
	lastReport := time.Time{}
	report := func(force bool) {
		if opt.Progress == nil {
			return
		}
		// Advance the checkpoint over leaves whose packs are all durable.
		d := pk.durableSeq()
		advanced := false
		for len(sealedLeaves) > 0 && sealedLeaves[0].seq <= d {
			prevStats.Add(sealedLeaves[0].stats)
			sealedLeaves = sealedLeaves[1:]
			cpLeaves++
			advanced = true
		}
		if advanced {
			cp = &Checkpoint{NextBlock: min(cpLeaves*le, nBlocks), Leaves: append([]ID(nil), leaves[:cpLeaves]...), Stats: prevStats}
		}
		if !force && !advanced && time.Since(lastReport) < time.Second {
			return
		}
		lastReport = time.Now()
		done := min(nextLeaf*le*bs, size)
		for _, ls := range open {
			done += ls.count * bs
		}
		done = min(done, size)
		st := stats
		for _, ls := range open {
			st.Add(ls.stats)
		}
		st.Packs = pk.uploaded()
		rate := float64(st.ScannedBytes-resumedScanned) / max(time.Since(began).Seconds(), 0.001)
		opt.Progress(Progress{Disk: opt.Disk, SizeBytes: size, DoneBytes: done, Stats: st, BytesPerS: rate, Checkpoint: cp})
		cp = nil
	}
	var pLeaf []ID
	pLeafN := int64(-1)
	for r := range results {
		if r.err != nil {
			cancel(r.err)
			break
		}
		l := r.n / le
		ls := open[l]
		if ls == nil {
			cnt := min(le, nBlocks-l*le)
			ls = &leafState{ids: make([]ID, cnt)}
			open[l] = ls
		}
		ls.ids[r.n%le] = r.id
		ls.count++
		if r.scanned {
			ls.stats.ScannedBytes += int64(r.size)
		}
		if r.id.IsZero() {
			ls.stats.ZeroBlocks++
		} else {
			ls.stats.DataBytes += int64(r.size)
		}
		if r.sealed != nil && !pk.has(idx, r.id) {
			if _, err := pk.addBlob(r.id, BlobData, r.sealed); err != nil {
				cancel(err)
				break
			}
			ls.stats.NewBytes += int64(r.size)
			ls.stats.StoredBytes += int64(len(r.sealed))
			ls.stats.NewBlocks++
		}
		// Finish every complete leaf, in order.
		for {
			ls := open[nextLeaf]
			if ls == nil || ls.count < int64(len(ls.ids)) {
				break
			}
			// Changed blocks, against the parent's leaf at the same place.
			var pl []ID
			if parent != nil && nextLeaf < int64(len(parent.Leaves)) {
				if pLeafN != nextLeaf {
					if pl2, err := v.loadLeaf(ctx, parent.Leaves[nextLeaf]); err == nil {
						pLeaf, pLeafN = pl2, nextLeaf
					} else {
						pLeaf, pLeafN = nil, nextLeaf
					}
				}
				pl = pLeaf
			}
			for i, id := range ls.ids {
				if id.IsZero() {
					continue
				}
				if i >= len(pl) || pl[i] != id {
					ls.stats.ChangedBytes += min(bs, size-(nextLeaf*le+int64(i))*bs)
				}
			}
			plain := encodeLeaf(ls.ids)
			lid := v.keys.hash(plain)
			if !pk.has(idx, lid) {
				sealed, _ := v.keys.sealBlob(lid, plain, nil)
				if _, err := pk.addBlob(lid, BlobTree, sealed); err != nil {
					cancel(err)
					break
				}
				ls.stats.StoredBytes += int64(len(sealed))
			}
			// The leaf and every block it names are in packs up to this one.
			leaves = append(leaves, lid)
			sealedLeaves = append(sealedLeaves, leafSeq{seq: lastSeqFor(pk), stats: ls.stats})
			stats.Add(ls.stats)
			delete(open, nextLeaf)
			nextLeaf++
		}
		report(false)
	}
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	if int64(len(leaves)) != nLeaves {
		return res, fmt.Errorf("disk %s: internal error: %d of %d leaves", opt.Disk, len(leaves), nLeaves)
	}

	root := Root{Size: size, BlockSize: int(bs), LeafEntries: int(le), Leaves: leaves}
	plain := encodeRoot(root)
	res.Root = v.keys.hash(plain)
	if !pk.has(idx, res.Root) {
		sealed, _ := v.keys.sealBlob(res.Root, plain, nil)
		if _, err := pk.addBlob(res.Root, BlobTree, sealed); err != nil {
			return res, err
		}
		stats.StoredBytes += int64(len(sealed))
	}
	if err := pk.finish(); err != nil {
		return res, fmt.Errorf("disk %s: %w", opt.Disk, err)
	}
	stats.Packs = pk.uploaded()
	res.Stats = stats
	report(true)
	return res, nil
}

// lastSeqFor is the sequence number of the newest pack that holds anything
// added so far: the open pack if it has entries, else the last flushed one.
func lastSeqFor(p *packer) int {
	if len(p.entries) > 0 {
		return p.seq
	}
	return p.seq - 1
}

var zeros [64 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// pacer spaces reads so they average at most rate bytes per second.
type pacer struct {
	mu   sync.Mutex
	rate int64
	next time.Time
}

func newPacer(rate int64) *pacer { return &pacer{rate: rate} }

func (p *pacer) wait(ctx context.Context, n int64) error {
	if p.rate <= 0 {
		return nil
	}
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
	p.mu.Unlock()
	select {
	case <-time.After(time.Until(at)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
