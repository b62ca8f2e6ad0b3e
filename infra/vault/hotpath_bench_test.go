package vault

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
)

// The data path's hot spots one at a time, on one 1 MiB block of mixed
// data (half random, half compressible, as mixedDisk makes), so that a
// change to one stage shows in its own line. Compare two revisions with
// `make bench-compare BASE=<rev>` (benchstat over -count 6).

const hotBlock = 1 << 20

func hotData() []byte { return mixedDisk(21, hotBlock) }

func hotKeys(b *testing.B, compression string) *format.Keys {
	b.Helper()
	k, err := format.NewKeys(make([]byte, format.MasterKeyLen), compression)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// BenchmarkHash is the keyed blake3 hash that names every block.
func BenchmarkHash(b *testing.B) {
	k, data := hotKeys(b, format.CompressionS2), hotData()
	b.SetBytes(hotBlock)
	for i := 0; i < b.N; i++ {
		k.Hash(data)
	}
}

func benchCompress(b *testing.B, name string) {
	flag, err := format.CompressionFlag(name)
	if err != nil {
		b.Fatal(err)
	}
	data, dst := hotData(), []byte(nil)
	b.SetBytes(hotBlock)
	for i := 0; i < b.N; i++ {
		dst = format.Compress(flag, dst[:0], data)
	}
	b.ReportMetric(float64(len(dst))/hotBlock, "ratio")
}

func BenchmarkCompressS2(b *testing.B)   { benchCompress(b, format.CompressionS2) }
func BenchmarkCompressZstd(b *testing.B) { benchCompress(b, format.CompressionZstd) }

// BenchmarkSealBlob is compress (when it pays) + AES-256-GCM of one block.
func BenchmarkSealBlob(b *testing.B) {
	k, data := hotKeys(b, format.CompressionS2), hotData()
	id, scratch := k.Hash(data), []byte(nil)
	b.SetBytes(hotBlock)
	for i := 0; i < b.N; i++ {
		_, scratch = k.SealBlob(id, data, scratch)
	}
}

// BenchmarkOpenBlob is decrypt + decompress + verify of one block.
func BenchmarkOpenBlob(b *testing.B) {
	k, data := hotKeys(b, format.CompressionS2), hotData()
	id := k.Hash(data)
	sealed, _ := k.SealBlob(id, data, nil)
	b.SetBytes(hotBlock)
	for i := 0; i < b.N; i++ {
		if _, err := k.OpenBlob(id, sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPacks makes packs of perPack random blobs.
func benchPacks(seed uint64, packs, perPack int) []format.PackIndex {
	r := rand.New(rand.NewPCG(seed, 2))
	pis := make([]format.PackIndex, packs)
	for p := range pis {
		pis[p] = format.PackIndex{Pack: hotID(r), Size: 16 << 20, Entries: make([]format.IndexEntry, perPack)}
		for e := range pis[p].Entries {
			pis[p].Entries[e] = format.IndexEntry{ID: hotID(r), Offset: uint32(e) << 14, Length: 1 << 14, Type: format.BlobData}
		}
	}
	return pis
}

// BenchmarkIndexAdd adds 2M blobs to an index and reports the memory it
// keeps in every worker: per entry (the fences of the run files, the pack
// table and the memtable, a constant, spread over the entries) and in all.
func BenchmarkIndexAdd(b *testing.B) {
	const perPack = 1000
	packs := benchPacks(1, 2000, perPack)
	var before, after runtime.MemStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := index.New(b.TempDir())
		for _, p := range packs {
			x.AddPack(p)
		}
		x.Settle()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(packs)*perPack), "B/entry")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		x.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(packs)*perPack), "ns/entry")
}

// BenchmarkIndexLookup is the dedup check every block of a backup makes,
// on an index of 2M blobs in several runs: hit (an incremental backup) and
// miss (a new block, most of a first backup).
func BenchmarkIndexLookup(b *testing.B) {
	x := index.New(b.TempDir())
	defer x.Close()
	packs := benchPacks(3, 2000, 1000)
	for _, p := range packs {
		x.AddPack(p)
	}
	x.Settle()
	runs := x.Runs()
	r := rand.New(rand.NewPCG(4, 4))
	b.Run("hit", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			p := packs[r.IntN(len(packs))]
			if !x.DedupHas(p.Entries[r.IntN(len(p.Entries))].ID) {
				b.Fatal("missing")
			}
		}
		b.ReportMetric(float64(runs), "runs")
	})
	b.Run("miss", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if x.DedupHas(hotID(r)) {
				b.Fatal("found")
			}
		}
		b.ReportMetric(float64(runs), "runs")
	})
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
		if _, err := v.Repo().BlockIDs(context.Background(), r.Root); err != nil {
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

// hotID is a random id (as the index tests' randID).
func hotID(r *rand.Rand) (id ID) {
	for i := 0; i < len(id); i += 8 {
		binary.LittleEndian.PutUint64(id[i:], r.Uint64())
	}
	return id
}
