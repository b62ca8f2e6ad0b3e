// Package bench measures the data path on a VM-image-like disk: a 4 GiB
// sparse raw image with 1.1 GiB allocated (half random, half compressible),
// as in the reference point. Compare the ratios within one run:
//
//	make bench
//
// BenchmarkReadAllocated is the floor (reading the allocated extents);
// BenchmarkBackupFull should be close to it, far from restic's ~8 s.
package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/images"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
)

const (
	mib       = 1 << 20
	diskSize  = 4 << 30
	allocated = 1126 * mib // 1.1 GiB
)

var (
	once    sync.Once
	root    string
	onceErr error
)

// image makes (once) a VM whose data disk is the benchmark image.
func image(b *testing.B) platform.Platform {
	b.Helper()
	once.Do(func() {
		root, onceErr = os.MkdirTemp("", "vmvault-bench-")
		if onceErr != nil {
			return
		}
		dir := filepath.Join(root, "bench")
		if onceErr = os.MkdirAll(dir, 0o755); onceErr != nil {
			return
		}
		onceErr = writeImage(filepath.Join(dir, "os.raw"))
		if onceErr == nil {
			onceErr = os.WriteFile(filepath.Join(dir, "vm.json"), []byte(`{"name":"bench","os":"linux","cpu":2,"memory_mb":1024,"power_state":"stopped","disks":[{"name":"os","role":"os","file":"os.raw"}]}`), 0o644)
		}
	})
	if onceErr != nil {
		b.Fatal(onceErr)
	}
	p, err := images.New(root)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// writeImage lays out data in 64 MiB runs spread over the disk, like a file
// system's allocation: random (already compressed) and text-like runs.
func writeImage(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(diskSize); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	run := make([]byte, 64*mib)
	words := []string{"kernel ", "systemd ", "library ", "config ", "0000 ", "vmvault ", "\n", "package ", "lorem "}
	for i, off := 0, int64(0); off < allocated; i++ {
		if i%2 == 0 {
			for j := 0; j+8 <= len(run); j += 8 {
				v := r.Uint64()
				for k := 0; k < 8; k++ {
					run[j+k] = byte(v >> (8 * k))
				}
			}
		} else {
			n := 0
			for n < len(run) {
				n += copy(run[n:], words[r.IntN(len(words))])
			}
		}
		at := int64(i) * (diskSize / 18) // spread runs with holes between
		if _, err := f.WriteAt(run[:min(int64(len(run)), allocated-off)], at); err != nil {
			return err
		}
		off += int64(len(run))
	}
	return f.Sync()
}

func snapshotDisk(b *testing.B, p platform.Platform) (platform.DiskReader, []extent.Extent) {
	b.Helper()
	ctx := context.Background()
	snap, err := p.CreateSnapshot(ctx, "bench", platform.SnapshotRequest{ID: "bench", Consistency: platform.CrashConsistent})
	if err != nil {
		b.Fatal(err)
	}
	r, err := p.OpenDisk(ctx, snap, "os")
	if err != nil {
		b.Fatal(err)
	}
	ext, err := r.DataExtents(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var out []extent.Extent
	for _, e := range ext {
		out = append(out, extent.Extent{Offset: e.Offset, Length: e.Length})
	}
	return r, out
}

func newVault(b *testing.B, compression ...string) *vault.Vault {
	b.Helper()
	opt := vault.InitOptions{}
	if len(compression) > 0 {
		opt.Compression = compression[0]
	}
	be, err := fs.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	v, err := vault.Init(context.Background(), be, []byte("bench passphrase"), opt)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// peakHeap samples the Go heap while fn runs.
func peakHeap(fn func()) uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	fn()
	close(stop)
	<-done
	return peak.Load()
}

// BenchmarkReadAllocated reads every allocated extent once: the floor.
func BenchmarkReadAllocated(b *testing.B) {
	p := image(b)
	r, ext := snapshotDisk(b, p)
	defer r.Close()
	buf := make([]byte, 4*mib)
	b.SetBytes(allocated)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, e := range ext {
			for off := e.Offset; off < e.Offset+e.Length; off += int64(len(buf)) {
				n := min(int64(len(buf)), e.Offset+e.Length-off)
				if _, err := r.ReadAt(buf[:n], off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkBackupFull: a first backup into an empty local vault, with each
// compression.
func BenchmarkBackupFull(b *testing.B) {
	for _, c := range []string{vault.CompressionZstd, vault.CompressionS2, vault.CompressionNone} {
		b.Run(c, func(b *testing.B) { benchFull(b, c) })
	}
}

func benchFull(b *testing.B, compression string) {
	p := image(b)
	r, ext := snapshotDisk(b, p)
	defer r.Close()
	b.SetBytes(allocated)
	var peak uint64
	var stats vault.DiskStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		v := newVault(b, compression)
		runtime.GC()
		b.StartTimer()
		peak = max(peak, peakHeap(func() {
			res, err := v.BackupDisk(context.Background(), r, vault.BackupOptions{Disk: "os", Extents: ext})
			if err != nil {
				b.Fatal(err)
			}
			stats = res.Stats
		}))
	}
	b.ReportMetric(float64(peak)/mib, "peak-heap-MiB")
	b.ReportMetric(float64(stats.StoredBytes)/mib, "stored-MiB")
}

// BenchmarkBackupUnchanged: the next backup with nothing changed (checksum
// comparison reads and hashes everything, uploads nothing).
func BenchmarkBackupUnchanged(b *testing.B) {
	p := image(b)
	r, ext := snapshotDisk(b, p)
	defer r.Close()
	v := newVault(b)
	first, err := v.BackupDisk(context.Background(), r, vault.BackupOptions{Disk: "os", Extents: ext})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(allocated)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := v.BackupDisk(context.Background(), r, vault.BackupOptions{Disk: "os", Extents: ext, Parent: &first.Root})
		if err != nil {
			b.Fatal(err)
		}
		if res.Stats.NewBytes != 0 {
			b.Fatalf("unchanged disk uploaded %d bytes", res.Stats.NewBytes)
		}
	}
}

// BenchmarkRestore: restore the full backup into a new sparse file.
func BenchmarkRestore(b *testing.B) {
	p := image(b)
	r, ext := snapshotDisk(b, p)
	defer r.Close()
	v := newVault(b)
	res, err := v.BackupDisk(context.Background(), r, vault.BackupOptions{Disk: "os", Extents: ext})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	b.SetBytes(allocated)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stage := fmt.Sprint("bench-", i)
		w, err := diskfile.Stage(dir, "restore.raw", diskSize, stage)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.RestoreDisk(context.Background(), res.Root, w, vault.RestoreOptions{Disk: "os"}); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		if err := diskfile.Abort(dir, stage); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if root != "" {
		os.RemoveAll(root)
	}
	os.Exit(code)
}
