package backup

// The CBT audit: a CBT backup takes every block outside the platform's
// changed extents from the parent without reading it, so a change the
// tracking missed (the image written while the VM was stopped, a bitmap
// cleared by hand, a platform bug) would be missing from the point and from
// every later one, silently. Before it trusts the tracking, a CBT backup
// reads a small seeded sample of those blocks and compares their ids with
// the parent's; one that differs means the tracking cannot be trusted for
// this disk, and the disk is read in full instead.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// auditMaxBytes bounds what one disk's audit reads, whatever its size and
// rate: 256 MiB is a few seconds of reading on any storage a VM runs on.
const auditMaxBytes = 256 << 20

// auditError is an audit that found blocks the tracking missed: the backup
// reads the disk in full instead (BackupDisk).
type auditError struct {
	audited, missed int64
	scanned         int64 // bytes the audit read
}

func (e *auditError) Error() string {
	return fmt.Sprintf("cbt: audit found %d of %d blocks the tracking missed", e.missed, e.audited)
}

// blockRange is the blocks [lo, hi).
type blockRange struct{ lo, hi int64 }

// blockRanges are the blocks that overlap the normalized extents ext, merged.
func blockRanges(ext []extent.Extent, lay format.Layout) []blockRange {
	var out []blockRange
	for _, e := range ext {
		lo, hi := e.Offset/lay.BS, min((e.End()+lay.BS-1)/lay.BS, lay.Blocks)
		if lo >= hi {
			continue
		}
		if n := len(out); n > 0 && out[n-1].hi >= lo {
			out[n-1].hi = max(out[n-1].hi, hi)
			continue
		}
		out = append(out, blockRange{lo, hi})
	}
	return out
}

// subtract returns the blocks of a not in b (both sorted and merged).
func subtract(a, b []blockRange) []blockRange {
	var out []blockRange
	j := 0
	for _, r := range a {
		lo := r.lo
		for j < len(b) && b[j].hi <= lo {
			j++
		}
		for k := j; k < len(b) && b[k].lo < r.hi; k++ {
			if b[k].lo > lo {
				out = append(out, blockRange{lo, b[k].lo})
			}
			lo = max(lo, b[k].hi)
		}
		if lo < r.hi {
			out = append(out, blockRange{lo, r.hi})
		}
	}
	return out
}

// auditSeed makes the sample a function of the parent (seed names the
// parent recovery point, root its tree) and the disk: a retry audits the
// same blocks, and each new parent other ones, so an idle disk's audits
// still cover it over time.
func auditSeed(seed string, root format.ID, disk string) [2]uint64 {
	h := sha256.New()
	for _, s := range []string{"vmvault cbt audit", seed, string(root[:]), disk} {
		binary.Write(h, binary.LittleEndian, uint64(len(s)))
		h.Write([]byte(s))
	}
	sum := h.Sum(nil)
	return [2]uint64{binary.LittleEndian.Uint64(sum), binary.LittleEndian.Uint64(sum[8:])}
}

// auditSample picks, in order, the blocks a CBT backup audits: about rate
// of the blocks it would take from the parent (those that may hold data,
// data nil meaning all, and overlap no changed extent), at least one if
// there is any and rate > 0, at most auditMaxBytes of them.
func auditSample(lay format.Layout, data, changed []extent.Extent, rate float64, seed [2]uint64) []int64 {
	if rate <= 0 || lay.Blocks == 0 {
		return nil
	}
	all := []blockRange{{0, lay.Blocks}}
	if data != nil {
		all = blockRanges(data, lay)
	}
	cand := subtract(all, blockRanges(changed, lay))
	var total int64
	for _, r := range cand {
		total += r.hi - r.lo
	}
	if total == 0 {
		return nil
	}
	k := int64(math.Ceil(rate * float64(total)))
	k = min(max(k, 1), total, max(auditMaxBytes/lay.BS, 1))
	// Floyd's algorithm: k distinct indexes of [0, total), uniformly.
	rng := rand.New(rand.NewPCG(seed[0], seed[1]))
	picked := make(map[int64]bool, k)
	for j := total - k; j < total; j++ {
		t := rng.Int64N(j + 1)
		if picked[t] {
			t = j
		}
		picked[t] = true
	}
	idx := make([]int64, 0, k)
	for i := range picked {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	// Index i is the i-th candidate block, counting through the ranges.
	out := make([]int64, 0, k)
	var base int64
	r := 0
	for _, i := range idx {
		for i-base >= cand[r].hi-cand[r].lo {
			base += cand[r].hi - cand[r].lo
			r++
		}
		out = append(out, cand[r].lo+i-base)
	}
	return out
}

// audit reads the sampled blocks from s's disk and compares each with the
// parent's id at the same place; it returns the bytes it read, and an
// *auditError if any block differs.
func (s *readHasher) audit(ctx context.Context, parent *format.Root, sample []int64, workers int) (int64, error) {
	want := make([]format.ID, len(sample))
	var leaves repo.LeafCache
	for i, n := range sample {
		l := n / s.lay.LE
		ids, err := leaves.Load(ctx, s.v.Repo, parent, l)
		if err != nil {
			return 0, fmt.Errorf("disk %s: parent leaf %d: %w", s.disk, l, parentUnreadable(fmt.Sprintf("leaf %d", l), err))
		}
		if j := n % s.lay.LE; j < int64(len(ids)) {
			want[i] = ids[j]
		}
	}
	var missed, scanned atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(workers, 1))
	for i, n := range sample {
		g.Go(func() error {
			buf := make([]byte, s.lay.BlockLen(n))
			if err := s.readBlock(ctx, n, buf); err != nil {
				return err
			}
			scanned.Add(int64(len(buf)))
			id := format.ZeroID
			if !isZero(buf) {
				id = s.v.Keys().Hash(buf)
			}
			if id != want[i] {
				missed.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return scanned.Load(), err
	}
	if m := missed.Load(); m > 0 {
		return scanned.Load(), &auditError{audited: int64(len(sample)), missed: m, scanned: scanned.Load()}
	}
	return scanned.Load(), nil
}
