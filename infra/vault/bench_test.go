package vault

import (
	"context"
	"testing"

	"github.com/vmvault/vmvault/infra/extent"
)

// The data path in memory, so the benchmarks measure hashing, sealing and
// the stages' plumbing rather than a disk. testsuite/bench measures a real
// image file; compare numbers within one run.

const benchDiskSize = 128 << 20

func benchVault(b *testing.B) *Vault {
	b.Helper()
	v, err := Init(context.Background(), newMem(), []byte(testSecret), InitOptions{KDFMemoryKiB: testKDFMemoryKiB, KDFTime: 1, KDFThreads: 1})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkBackupDisk is a first backup into an empty vault.
func BenchmarkBackupDisk(b *testing.B) {
	disk := mixedDisk(11, benchDiskSize)
	b.SetBytes(benchDiskSize)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		v := benchVault(b)
		b.StartTimer()
		if _, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackupDiskUnchanged reads and hashes every block against a
// parent and uploads nothing.
func BenchmarkBackupDiskUnchanged(b *testing.B) {
	disk := mixedDisk(12, benchDiskSize)
	v := benchVault(b)
	first, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchDiskSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d", Parent: &first.Root})
		if err != nil {
			b.Fatal(err)
		}
		if r.Stats.NewBytes != 0 {
			b.Fatalf("unchanged disk uploaded %d bytes", r.Stats.NewBytes)
		}
	}
}

// BenchmarkBackupDiskCBTUnchanged is a CBT backup that nothing changed
// since its parent: every block's id comes from the parent (with one index
// lookup each), none is read.
func BenchmarkBackupDiskCBTUnchanged(b *testing.B) {
	disk := mixedDisk(13, benchDiskSize)
	v := benchVault(b)
	first, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchDiskSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d", Parent: &first.Root, Changed: []extent.Extent{}})
		if err != nil {
			b.Fatal(err)
		}
		if r.Stats.ScannedBytes != 0 || r.Stats.NewBytes != 0 {
			b.Fatalf("unchanged disk read %d bytes, uploaded %d", r.Stats.ScannedBytes, r.Stats.NewBytes)
		}
	}
}
