package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/internal/vaulttest"
)

// memBackend is an in-memory storage.Backend that counts puts.
type memBackend = vaulttest.Mem

func newMem() *memBackend { return vaulttest.NewMem() }

type memDisk = vaulttest.Disk

type memWriter struct{ b []byte }

func (w *memWriter) WriteAt(p []byte, off int64) (int, error) { return copy(w.b[off:], p), nil }

const testBlock = vaulttest.Block

func testVault(t *testing.T) (*Vault, *memBackend) {
	t.Helper()
	be := newMem()
	v, err := Init(context.Background(), be, []byte(testSecret), vaulttest.InitOptions())
	if err != nil {
		t.Fatal(err)
	}
	return v, be
}

// mixedDisk has random blocks, compressible blocks and zero blocks, and a
// size that is not a multiple of the block size.
func mixedDisk(seed uint64, size int) memDisk { return vaulttest.MixedDisk(seed, size) }

func restoreDisk(t *testing.T, v *Vault, root ID, size int64) []byte {
	t.Helper()
	w := &memWriter{b: make([]byte, size)}
	if _, err := v.RestoreDisk(context.Background(), root, w, RestoreOptions{Disk: "d"}); err != nil {
		t.Fatal(err)
	}
	return w.b
}

func TestBackupRestoreIncremental(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	disk := mixedDisk(1, 100*testBlock+12345)
	r1, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if got := restoreDisk(t, v, r1.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("full backup does not restore bit-exact")
	}
	if r1.Stats.ZeroBlocks < 20 || r1.Stats.NewBlocks == 0 {
		t.Fatalf("stats %+v", r1.Stats)
	}
	// Change three blocks and back up again against the parent.
	snap1 := append(memDisk(nil), disk...)
	for _, b := range []int{3, 50, 99} {
		disk[b*testBlock+10] ^= 0xff
	}
	r2, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d", Parent: &r1.Root})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Stats.NewBlocks != 3 || r2.Stats.ChangedBytes != 3*testBlock {
		t.Fatalf("incremental stats: %+v, want 3 new blocks", r2.Stats)
	}
	if got := restoreDisk(t, v, r2.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("incremental does not restore bit-exact")
	}
	if got := restoreDisk(t, v, r1.Root, disk.Size()); !bytes.Equal(got, snap1) {
		t.Fatal("first recovery point changed after the second backup")
	}
}

func TestZeroBlocksNotStored(t *testing.T) {
	v, be := testVault(t)
	disk := make(memDisk, 64*testBlock)
	r, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stats.NewBlocks != 0 || r.Stats.DataBytes != 0 {
		t.Fatalf("zero disk stored data: %+v", r.Stats)
	}
	var packBytes int
	for k, d := range be.Objs {
		if strings.HasPrefix(k, "packs/") {
			packBytes += len(d)
		}
	}
	if packBytes > 4096 {
		t.Fatalf("zero disk took %d bytes of packs", packBytes)
	}
	if got := restoreDisk(t, v, r.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("zero disk does not restore")
	}
}

func TestHolesAreNotRead(t *testing.T) {
	v, _ := testVault(t)
	disk := mixedDisk(2, 32*testBlock)
	// Claim only the first 4 blocks hold data: the rest must not be read.
	ext := []extent.Extent{{Offset: 0, Length: 4 * testBlock}}
	r, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d", Extents: ext})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stats.ScannedBytes != 4*testBlock {
		t.Fatalf("scanned %d bytes, want %d", r.Stats.ScannedBytes, 4*testBlock)
	}
	want := append(disk[:4*testBlock:4*testBlock], make([]byte, 28*testBlock)...)
	if got := restoreDisk(t, v, r.Root, disk.Size()); !bytes.Equal(got, want) {
		t.Fatal("restore of sparse backup differs")
	}
}

func TestCBTReadsOnlyChanged(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	disk := mixedDisk(3, 40*testBlock)
	r1, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	disk[17*testBlock] ^= 1
	r2, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d", Parent: &r1.Root, Changed: []extent.Extent{{Offset: 17 * testBlock, Length: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Method != "cbt" || r2.Stats.ScannedBytes != testBlock || r2.Stats.NewBlocks != 1 {
		t.Fatalf("cbt backup: method %s stats %+v", r2.Method, r2.Stats)
	}
	if got := restoreDisk(t, v, r2.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("cbt backup does not restore bit-exact")
	}
}

func TestWrongKey(t *testing.T) {
	v, be := testVault(t)
	_ = v
	_, err := Open(context.Background(), be, []byte("not the secret"))
	if !errors.Is(err, format.ErrWrongKey) {
		t.Fatalf("open with wrong key: %v", err)
	}
	if _, err := Open(context.Background(), be, []byte(testSecret)); err != nil {
		t.Fatalf("open with right key: %v", err)
	}
	if _, err := Open(context.Background(), newMem(), []byte(testSecret)); !errors.Is(err, format.ErrNoVault) {
		t.Fatalf("open empty storage: %v", err)
	}
}

func TestCorruptPackNamesDiskAndOffset(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(4, 16*testBlock)
	r, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "data0"})
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte inside the blob of block 0.
	leaf, err := v.Repo().LoadLeaf(ctx, mustRoot(t, v, r.Root).Leaves[0])
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := v.Repo().Index(ctx)
	loc, _ := idx.Lookup(leaf[0])
	key := format.PackKey(loc.Pack)
	be.Objs[key][loc.Offset+20] ^= 0x01
	w := &memWriter{b: make([]byte, disk.Size())}
	_, err = v.RestoreDisk(ctx, r.Root, w, RestoreOptions{Disk: "data0"})
	if !errors.Is(err, format.ErrCorrupt) || !strings.Contains(err.Error(), "disk data0 offset 0:") {
		t.Fatalf("restore of corrupt block: %v", err)
	}
}

func mustRoot(t *testing.T, v *Vault, id ID) format.Root {
	t.Helper()
	r, err := v.Repo().LoadRoot(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// interruptedBackup backs up a disk of distinct blocks made from seed and
// cancels it once a checkpoint has passed block 64; it returns the disk
// and that checkpoint.
func interruptedBackup(t *testing.T, v *Vault, seed uint64) (memDisk, *Checkpoint) {
	t.Helper()
	ctx := context.Background()
	disk := mixedDisk(seed, 200*testBlock)
	for i := range disk { // all distinct, non-zero blocks
		if disk[i] == 0 {
			disk[i] = byte(i/testBlock) + 1
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	var last *Checkpoint
	_, err := v.BackupDisk(cctx, disk, BackupOptions{Disk: "d", Workers: 2, Progress: func(p Progress) {
		if p.Checkpoint != nil {
			last = p.Checkpoint
			if last.NextBlock >= 64 {
				cancel()
			}
		}
	}})
	if err == nil || last == nil {
		t.Fatalf("backup was not interrupted after a checkpoint: err=%v", err)
	}
	return disk, last
}

// A backup cancelled after a checkpoint resumes there and uploads no block twice.
func TestResumeFromCheckpoint(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk, last := interruptedBackup(t, v, 5)
	v2, err := Open(ctx, be, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	r, err := v2.BackupDisk(ctx, disk, BackupOptions{Disk: "d", Resume: last})
	if err != nil {
		t.Fatal(err)
	}
	if r.ResumedAt != last.NextBlock || r.ResumedAt == 0 {
		t.Fatalf("resumed at %d, checkpoint %d", r.ResumedAt, last.NextBlock)
	}
	if s := mustIndex(t, v2).Stats(); s.Duplicates != 0 {
		t.Fatalf("%d blobs uploaded twice", s.Duplicates)
	}
	if got := restoreDisk(t, v2, r.Root, disk.Size()); sha256.Sum256(got) != sha256.Sum256(disk) {
		t.Fatal("resumed backup does not restore bit-exact")
	}
}

func mustIndex(t *testing.T, v *Vault) *index.Index {
	idx, err := v.Repo().Index(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestCompressions(t *testing.T) {
	for _, c := range []string{format.CompressionZstd, format.CompressionS2, format.CompressionNone} {
		t.Run(c, func(t *testing.T) {
			be := newMem()
			v, err := Init(context.Background(), be, []byte(testSecret), InitOptions{BlockSize: testBlock, PackSize: 256 << 10, LeafEntries: 8, KDFMemoryKiB: testKDFMemoryKiB, KDFTime: 1, KDFThreads: 1, Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			disk := mixedDisk(7, 40*testBlock)
			r, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d"})
			if err != nil {
				t.Fatal(err)
			}
			// Reopened, the vault knows its compression and reads back.
			v2, err := Open(context.Background(), be, []byte(testSecret))
			if err != nil {
				t.Fatal(err)
			}
			if got := restoreDisk(t, v2, r.Root, disk.Size()); !bytes.Equal(got, disk) {
				t.Fatal("does not restore bit-exact")
			}
			compressed := r.Stats.StoredBytes < r.Stats.NewBytes*3/4
			if compressed != (c != format.CompressionNone) {
				t.Fatalf("stored %d of %d new bytes with %s", r.Stats.StoredBytes, r.Stats.NewBytes, c)
			}
		})
	}
	if _, err := Init(context.Background(), newMem(), []byte(testSecret), InitOptions{Compression: "lz4"}); err == nil {
		t.Fatal("unknown compression accepted")
	}
}

func TestReadLimit(t *testing.T) {
	v, _ := testVault(t)
	disk := mixedDisk(8, 32*testBlock) // 2 MiB
	start := time.Now()
	if _, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d", ReadLimit: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	// 2 MiB at 8 MiB/s cannot take less than ~1/4 s (the first block is free).
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("2 MiB read in %v despite an 8 MiB/s cap", d)
	}
}

func TestCorruptManifestDoesNotHideOthers(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	r, err := v.BackupDisk(ctx, mixedDisk(9, 8*testBlock), BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"a", "b", "c"} {
		rp := format.RecoveryPoint{ID: id, VM: "vm1", StartedAt: time.Unix(int64(i), 0), Disks: []format.DiskRecord{{Name: "d", Root: r.Root}}}
		if err := v.SaveRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	be.Objs["recoverypoints/vm1/b"][30] ^= 1
	rps, err := v.ListRecoveryPoints(ctx, "vm1")
	if !errors.Is(err, format.ErrCorrupt) || !strings.Contains(err.Error(), "recoverypoints/vm1/b") {
		t.Fatalf("corrupt manifest not reported: %v", err)
	}
	if len(rps) != 2 || rps[0].ID != "a" || rps[1].ID != "c" {
		t.Fatalf("good recovery points: %+v", rps)
	}
	if _, err := v.LoadRecoveryPoint(ctx, "vm1/b"); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("load corrupt manifest: %v", err)
	}
}
