package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// blockResult is a block read, hashed and, if the vault lacks it, sealed.
type blockResult struct {
	n       int64
	id      format.ID // ZeroID for a zero block or a hole
	size    int
	scanned bool   // read from the disk
	sealed  []byte // nil when nothing to upload
}

// readHasher is the read-and-hash stage of a disk backup, its parallel one:
// its workers read and hash blocks, and seal those the vault lacks, in any
// order.
type readHasher struct {
	v     *archiver
	idx   *index.Index
	src   Source
	disk  string
	lay   format.Layout
	limit *rate.Limiter
	bufs  sync.Pool
}

// newReadLimiter caps reads at bytesPerS (none if 0). Its burst is one
// block: the first block is read at once, and WaitN accepts any block.
func newReadLimiter(bytesPerS, blockSize int64) *rate.Limiter {
	if bytesPerS <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(bytesPerS), int(blockSize))
}

// run processes jobs on workers goroutines until jobs is closed, the first
// error, or the end of ctx.
func (s *readHasher) run(ctx context.Context, workers int, jobs <-chan blockJob, results chan<- blockResult) error {
	s.bufs.New = func() any { b := make([]byte, s.lay.BS); return &b }
	g, ctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			var scratch []byte // reused by sealBlob
			for j := range jobs {
				r := blockResult{n: j.n, size: int(s.lay.BlockLen(j.n))}
				switch {
				case j.hole:
				case j.reuse && (j.parent.IsZero() || s.idx.DedupHas(j.parent)):
					r.id = j.parent
				default:
					// A reused id the index lacks (its pack lost, or
					// quarantined, or a GC candidate) is read again, so
					// the backup stores it instead of naming lost data.
					var err error
					if scratch, err = s.read(ctx, &r, scratch); err != nil {
						return err
					}
				}
				select {
				case results <- r:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// read reads block r.n within the read limit, hashes it and, unless it is
// zero or already stored, seals it into r.
func (s *readHasher) read(ctx context.Context, r *blockResult, scratch []byte) ([]byte, error) {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := (*bp)[:r.size]
	if err := s.readBlock(ctx, r.n, buf); err != nil {
		return scratch, err
	}
	r.scanned = true
	if isZero(buf) {
		return scratch, nil
	}
	r.id = s.v.Keys().Hash(buf)
	if !s.idx.DedupHas(r.id) { // not in a GC candidate pack either
		r.sealed, scratch = s.v.Keys().SealBlob(r.id, buf, scratch)
	}
	return scratch, nil
}

// readBlock reads block n, whole, into buf (the block's length) within the
// read limit.
func (s *readHasher) readBlock(ctx context.Context, n int64, buf []byte) error {
	if err := s.limit.WaitN(ctx, len(buf)); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		// The wait would outlast ctx's deadline (n never exceeds the burst).
		return fmt.Errorf("disk %s: read limit: %w: %v", s.disk, context.DeadlineExceeded, err)
	}
	off := n * s.lay.BS
	// Blocks lie inside the disk, so io.EOF is only fine with a full block
	// (ReaderAt may return it with the last bytes of the source).
	got, err := s.src.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("disk %s: read at offset %d: %w", s.disk, off, err)
	}
	if got < len(buf) {
		return fmt.Errorf("disk %s: read at offset %d: short read: %d of %d bytes: %w", s.disk, off, got, len(buf), io.ErrUnexpectedEOF)
	}
	return nil
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
