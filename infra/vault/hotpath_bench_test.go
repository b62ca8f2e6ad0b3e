package vault

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// The data path's hot spots one at a time, on one 1 MiB block of mixed
// data (half random, half compressible, as mixedDisk makes), so that a
// change to one stage shows in its own line. Compare two revisions with
// `make bench-compare BASE=<rev>` (benchstat over -count 6).

const hotBlock = 1 << 20

func hotData() []byte { return mixedDisk(21, hotBlock) }

func hotKeys(b *testing.B, compression string) *keys {
	b.Helper()
	k, err := newKeys(make([]byte, masterKeyLen), compression)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// BenchmarkHash is the keyed blake3 hash that names every block.
func BenchmarkHash(b *testing.B) {
	k, data := hotKeys(b, CompressionS2), hotData()
	b.SetBytes(hotBlock)
	for i := 0; i < b.N; i++ {
		k.hash(data)
	}
}

func benchCompress(b *testing.B, name string) {
	flag, err := compressionFlag(name)
	if err != nil {
		b.Fatal(err)
	}
	data, dst := hotData(), []byte(nil)
	b.SetBytes(hotBlock)
	for i := 0; i < b.N; i++ {
		dst = compress(flag, dst[:0], data)
	}
	b.ReportMetric(float64(len(dst))/hotBlock, "ratio")
}

func BenchmarkCompressS2(b *testing.B)   { benchCompress(b, CompressionS2) }
func BenchmarkCompressZstd(b *testing.B) { benchCompress(b, CompressionZstd) }

// BenchmarkSealBlob is compress (when it pays) + AES-256-GCM of one block.
func BenchmarkSealBlob(b *testing.B) {
	k, data := hotKeys(b, CompressionS2), hotData()
	id, scratch := k.hash(data), []byte(nil)
	b.SetBytes(hotBlock)
	for i := 0; i < b.N; i++ {
		_, scratch = k.sealBlob(id, data, scratch)
	}
}

// BenchmarkOpenBlob is decrypt + decompress + verify of one block.
func BenchmarkOpenBlob(b *testing.B) {
	k, data := hotKeys(b, CompressionS2), hotData()
	id := k.hash(data)
	sealed, _ := k.sealBlob(id, data, nil)
	b.SetBytes(hotBlock)
	for i := 0; i < b.N; i++ {
		if _, err := k.openBlob(id, sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIndexAdd adds packs of 1000 blobs to an index and reports the
// memory each entry costs in every worker (the index lives in memory).
func BenchmarkIndexAdd(b *testing.B) {
	const perPack = 1000
	r := rand.New(rand.NewPCG(1, 2))
	rid := func() (id ID) {
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		return id
	}
	packs := make([]packIndex, 200)
	for p := range packs {
		packs[p] = packIndex{Pack: rid(), Size: 16 << 20}
		for e := 0; e < perPack; e++ {
			packs[p].Entries = append(packs[p].Entries, indexEntry{ID: rid(), Offset: uint32(e) << 14, Length: 1 << 14, Type: BlobData})
		}
	}
	var before, after runtime.MemStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := newIndex("")
		for _, p := range packs {
			x.addPack(p)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(packs)*perPack), "B/entry")
		runtime.KeepAlive(x)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(packs)*perPack), "ns/entry")
}

// BenchmarkIndexLookup is the dedup check every block of a backup makes.
func BenchmarkIndexLookup(b *testing.B) {
	x, ids := newIndex(""), make([]ID, 0, 100000)
	r := rand.New(rand.NewPCG(3, 4))
	pi := packIndex{Size: 1 << 30}
	for e := 0; e < cap(ids); e++ {
		var id ID
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		ids = append(ids, id)
		pi.Entries = append(pi.Entries, indexEntry{ID: id, Offset: uint32(e), Length: 1, Type: BlobData})
	}
	x.addPack(pi)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !x.dedupHas(ids[i%len(ids)]) {
			b.Fatal("missing")
		}
	}
}

// BenchmarkTreeBlockIDs reads a backup's tree (root and leaves) back into
// block ids, as every incremental does with its parent.
func BenchmarkTreeBlockIDs(b *testing.B) {
	disk := mixedDisk(22, benchDiskSize)
	v := benchVault(b)
	r, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.BlockIDs(context.Background(), r.Root); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestoreDisk restores a 128 MiB disk into a file and syncs it.
func BenchmarkRestoreDisk(b *testing.B) {
	disk := mixedDisk(23, benchDiskSize)
	v := benchVault(b)
	r, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d"})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "restored.raw")
	b.SetBytes(benchDiskSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.RestoreDisk(context.Background(), r.Root, f, RestoreOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
