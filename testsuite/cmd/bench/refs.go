package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// sample reads n MiB of the image's allocated data, 1 MiB chunks at an
// even stride, so it mixes the Debian tree, the toolchain and the random
// data in their proportions.
func sample(path string, n int) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	spans, err := dataSpans(f, fi.Size())
	if err != nil {
		return nil, err
	}
	var offs []int64
	for _, s := range spans {
		for o := s.off &^ (mib - 1); o < s.off+s.n; o += mib {
			offs = append(offs, o)
		}
	}
	stride := max(1, len(offs)/n)
	var out [][]byte
	for i := 0; i < len(offs) && len(out) < n; i += stride {
		b := make([]byte, mib)
		if _, err := f.ReadAt(b, offs[i]); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// rate runs fn over every chunk on all cores and returns bytes per second.
func rate(chunks [][]byte, fn func(w int, b []byte)) float64 {
	workers := runtime.GOMAXPROCS(0)
	next := make(chan []byte)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b := range next {
				fn(w, b)
			}
		}(w)
	}
	for _, c := range chunks {
		next <- c
	}
	close(next)
	wg.Wait()
	return float64(len(chunks)*mib) / time.Since(start).Seconds()
}

// references measures the CPU primitives of a backup on the sample and
// says how long each would take over the allocated bytes on all cores.
func references(chunks [][]byte, allocated int64) []row {
	workers := runtime.GOMAXPROCS(0)
	zencs := make([]*zstd.Encoder, workers)
	for i := range zencs {
		zencs[i], _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	}
	bufs := make([][]byte, workers)
	for i := range bufs {
		bufs[i] = make([]byte, 0, 2*mib)
	}
	key := make([]byte, 32)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	var compressed [2]int64
	var mu sync.Mutex
	prims := []struct {
		name string
		fn   func(w int, b []byte)
	}{
		{"sha256", func(_ int, b []byte) { sha256.Sum256(b) }},
		{"blake3", func(_ int, b []byte) { blake3.Sum256(b) }},
		{"s2 compress", func(w int, b []byte) {
			out := s2.Encode(bufs[w][:cap(bufs[w])], b)
			mu.Lock()
			compressed[0] += int64(len(out))
			mu.Unlock()
		}},
		{"zstd-fastest compress", func(w int, b []byte) {
			out := zencs[w].EncodeAll(b, bufs[w][:0])
			mu.Lock()
			compressed[1] += int64(len(out))
			mu.Unlock()
		}},
		{"AES-256-GCM seal", func(w int, b []byte) { gcm.Seal(bufs[w][:0], nonce, b, nil) }},
	}
	total := float64(len(chunks) * mib)
	var rows []row
	for i, p := range prims {
		r := rate(chunks, p.fn)
		note := fmt.Sprintf("%.0f MiB/s on %d cores", r/mib, workers)
		if i == 2 || i == 3 {
			note += fmt.Sprintf(", sample to %.0f%%", 100*float64(compressed[i-2])/total)
		}
		rows = append(rows, row{Step: "reference", Tool: p.name, Wall: float64(allocated) / r, Note: note})
	}
	return rows
}
