package main

import (
	"errors"
	"math/rand/v2"
	"os"

	"golang.org/x/sys/unix"
)

const page = 4 * kib

// span is a byte range of an image.
type span struct{ off, n int64 }

// dataSpans lists the allocated ranges of f (SEEK_DATA / SEEK_HOLE).
func dataSpans(f *os.File, size int64) ([]span, error) {
	var out []span
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		out = append(out, span{data, hole - data})
		off = hole
	}
	return out, nil
}

// churn rewrites about target bytes of the image's allocated data in
// place, as a guest's day would: 31/32 of the bytes as clustered
// file-sized rewrites (16 KiB to 4 MiB, log-uniform, page aligned: updated
// files and logs), 1/32 as scattered single 4 KiB pages (inodes, bitmaps,
// directory blocks, database pages): at 1% of a 4 GiB disk that is about
// 330 pages, enough to touch a few hundred 1 MiB blocks. New content is seeded random bytes, so every touched page
// differs and compression cannot hide it. It returns the bytes that now
// differ (the union of touched pages).
func churn(path string, target int64, seed uint64) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	spans, err := dataSpans(f, fi.Size())
	if err != nil {
		return 0, err
	}
	var total int64
	for _, s := range spans {
		total += s.n
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	src := rand.NewChaCha8([32]byte{byte(seed)})
	touched := make([]uint64, (fi.Size()/page+63)/64)
	var changed int64
	// pick returns a page-aligned offset in the allocated data, uniformly.
	pick := func() (int64, int64) {
		at := r.Int64N(total)
		for _, s := range spans {
			if at < s.n {
				off := (s.off + at) &^ (page - 1)
				return max(off, s.off&^(page-1)), s.off + s.n
			}
			at -= s.n
		}
		panic("unreachable")
	}
	write := func(off, n int64) error {
		buf := make([]byte, n)
		src.Read(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
		for p := off / page; p < (off+n+page-1)/page; p++ {
			if touched[p/64]&(1<<(p%64)) == 0 {
				touched[p/64] |= 1 << (p % 64)
				changed += page
			}
		}
		return nil
	}
	target &^= page - 1
	clustered := (target * 31 / 32) &^ (page - 1)
	for changed < clustered {
		n := int64(16*kib) << r.IntN(9) // 16 KiB to 4 MiB
		off, end := pick()
		n = min(n, end&^(page-1)-off, clustered-changed)
		if n < page {
			continue // the pick ends in a partial page
		}
		if err := write(off, n); err != nil {
			return 0, err
		}
	}
	for changed < target {
		off, _ := pick()
		if err := write(off, page); err != nil {
			return 0, err
		}
	}
	return changed, f.Sync()
}
