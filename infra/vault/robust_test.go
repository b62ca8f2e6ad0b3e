package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
)

// reopen is the vault as a new process sees it: same storage and keys, no
// index loaded yet.
func reopen(v *Vault) *Vault { return newVault(v.Storage(), v.Config(), v.Repo().Keys()) }

// packOf returns the pack holding block n of the disk with tree root.
func packOf(t *testing.T, v *Vault, root ID, n int) ID {
	t.Helper()
	ids, err := v.Repo().BlockIDs(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	loc, ok := mustIndex(t, v).Lookup(ids[n])
	if !ok || loc.Type != format.BlobData {
		t.Fatalf("block %d not indexed as data", n)
	}
	return loc.Pack
}

func backupDisk(t *testing.T, v *Vault, disk memDisk, opt BackupOptions) DiskResult {
	t.Helper()
	if opt.Disk == "" {
		opt.Disk = "d"
	}
	r, err := v.BackupDisk(context.Background(), disk, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func saveRP(t *testing.T, v *Vault, id string, i int, disks ...format.DiskRecord) {
	t.Helper()
	rp := format.RecoveryPoint{ID: id, VM: "vm1", StartedAt: time.Unix(int64(i), 0), Disks: disks}
	if err := v.SaveRecoveryPoint(context.Background(), rp); err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, v *Vault, opt CheckOptions) CheckReport {
	t.Helper()
	rep, err := v.Maint().Check(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// One corrupt index object stops nothing: data in other packs backs up and
// restores, the problem is reported, and the blocks only that pack held are
// stored again by the next backup.
func TestCorruptIndexObjectIsSkipped(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	a, b := mixedDisk(20, 16*testBlock), mixedDisk(21, 16*testBlock)
	ra := backupDisk(t, v, a, BackupOptions{})
	rb := backupDisk(t, v, b, BackupOptions{})
	bad := packOf(t, v, rb.Root, 0)
	be.Objs[indexKeyOf(t, be, bad)][40] ^= 1

	v2 := reopen(v)
	idx, err := v2.Repo().Index(ctx)
	if err != nil {
		t.Fatalf("index with one corrupt object: %v", err)
	}
	probs := indexProblems(v2)
	if len(probs) != 1 || probs[0].Kind != format.ProblemUnreadableIndex || probs[0].Pack != bad {
		t.Fatalf("problems: %+v", probs)
	}
	if idx.HasPack(bad) {
		t.Fatal("corrupt index object was added")
	}
	if got := restoreDisk(t, v2, ra.Root, a.Size()); !bytes.Equal(got, a) {
		t.Fatal("disk in other packs does not restore")
	}
	rb2 := backupDisk(t, v2, b, BackupOptions{})
	if rb2.Stats.NewBlocks == 0 {
		t.Fatal("blocks of the unindexed pack were not stored again")
	}
	if got := restoreDisk(t, v2, rb2.Root, b.Size()); !bytes.Equal(got, b) {
		t.Fatal("new backup of the disk does not restore")
	}
}

// A failed load is not installed as if complete: the next Index loads again.
func TestIndexLoadFailureIsRetried(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	r := backupDisk(t, v, mixedDisk(22, 16*testBlock), BackupOptions{})
	fb := &flakyBackend{memBackend: be}
	fb.failGets.Store(1)
	v2 := newVault(fb, v.Config(), v.Repo().Keys())
	if _, err := v2.Repo().Index(ctx); err == nil {
		t.Fatal("index load survived a storage error")
	}
	idx, err := v2.Repo().Index(ctx)
	if err != nil || !idx.Has(r.Root) {
		t.Fatalf("second load: %v", err)
	}
}

type flakyBackend struct {
	*memBackend
	failGets atomic.Int32
}

func (f *flakyBackend) Get(ctx context.Context, k string) ([]byte, error) {
	if strings.HasPrefix(k, "index/") && f.failGets.Add(-1) >= 0 {
		return nil, fmt.Errorf("get %s: connection reset", k)
	}
	return f.memBackend.Get(ctx, k)
}

// A lost pack is noticed: Check names every recovery point, disk and offset
// it hits, the index stops trusting it so the next backup stores its blocks
// again, and after Repair the new recovery point checks clean.
func TestDeletedPack(t *testing.T) {
	testLostPack(t, func(be *memBackend, key string) { delete(be.Objs, key) }, format.ProblemMissingPack)
}

func TestTruncatedPack(t *testing.T) {
	testLostPack(t, func(be *memBackend, key string) { be.Objs[key] = be.Objs[key][:len(be.Objs[key])/2] }, format.ProblemPackSize)
}

func testLostPack(t *testing.T, damage func(*memBackend, string), kind format.IndexProblemKind) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(23, 24*testBlock)
	r1 := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "rp1", 1, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r1.Root})
	r2 := backupDisk(t, v, disk, BackupOptions{Parent: &r1.Root})
	saveRP(t, v, "rp2", 2, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r2.Root})
	if rep := check(t, v, CheckOptions{ReadData: true}); !rep.OK {
		t.Fatalf("check before damage: %+v", rep)
	}
	lost := packOf(t, v, r1.Root, 0)
	lostKey := indexKeyOf(t, be, lost)
	damage(be, format.PackKey(lost))

	rep := check(t, reopen(v), CheckOptions{})
	if rep.OK || strings.Join(rep.Damaged, ",") != "vm1/rp1,vm1/rp2" {
		t.Fatalf("damaged: %v", rep.Damaged)
	}
	if len(rep.IndexProblems) != 1 || rep.IndexProblems[0].Kind != kind || rep.IndexProblems[0].Pack != lost {
		t.Fatalf("index problems: %+v", rep.IndexProblems)
	}
	hit := map[string]bool{}
	for _, d := range rep.Damage {
		// Block 0, or its leaf if the leaf was in the same pack.
		if (d.Kind == DamageBlock || d.Kind == DamageLeaf) && d.Disk == "sda" && d.Offset == 0 && d.Pack != nil && *d.Pack == lost {
			hit[d.RecoveryPoint] = true
		}
	}
	if !hit["rp1"] || !hit["rp2"] {
		t.Fatalf("block 0 of sda not reported in both recovery points: %+v", rep.Damage)
	}
	if js, err := json.Marshal(rep); err != nil || !bytes.Contains(js, []byte(`"offset":0`)) {
		t.Fatalf("report as JSON: %s %v", js, err)
	}

	// The worker's index (loaded before the damage) forgets the pack when
	// it reconciles with a full listing (hourly, or on a lookup miss).
	if _, err := v.Repo().ReconcileIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if mustIndex(t, v).HasPack(lost) {
		t.Fatal("refreshed index still trusts the lost pack")
	}
	r3 := backupDisk(t, v, disk, BackupOptions{Parent: &r2.Root})
	if r3.Stats.NewBlocks == 0 {
		t.Fatal("blocks of the lost pack were not stored again")
	}
	if got := restoreDisk(t, v, r3.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("new backup does not restore")
	}

	rr, err := v.Maint().Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	saveRP(t, v, "rp3", 3, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r3.Root})
	rep = check(t, reopen(v), CheckOptions{ReadData: true})
	// The blocks stored again heal the older recovery points too: ids are
	// content hashes, so their trees find the new copies.
	if len(rep.Damaged) != 0 || rep.RecoveryPoints != 3 {
		t.Fatalf("after repair and a backup, damaged: %v", rep.Damaged)
	}
	switch kind {
	case format.ProblemMissingPack: // its index object is gone: nothing left to report
		if len(rr.RemovedIndex) != 1 || rr.RemovedIndex[0] != lostKey || !rep.OK {
			t.Fatalf("repair %+v, then %+v", rr, rep)
		}
	case format.ProblemPackSize: // the damaged pack is reported and left alone
		if len(rr.BadPacks) != 1 || rr.BadPacks[0].Pack != lost || be.Objs[format.PackKey(lost)] == nil || len(rep.IndexProblems) != 1 {
			t.Fatalf("repair %+v, then %+v", rr, rep)
		}
	}
}

// Repair rebuilds a lost index object from its pack, as a backup wrote it,
// and does nothing the second time.
func TestRepairRebuildsIndexObject(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(24, 16*testBlock)
	r := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "rp1", 1, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r.Root})
	p := packOf(t, v, r.Root, 0)
	want, err := index.GetPackIndex(ctx, v.Storage(), v.Repo().Keys(), indexKeyOf(t, be, p))
	if err != nil {
		t.Fatal(err)
	}
	delete(be.Objs, indexKeyOf(t, be, p))

	v2 := reopen(v)
	rep := check(t, v2, CheckOptions{})
	if rep.OK || len(rep.UnindexedPacks) != 1 || rep.UnindexedPacks[0] != p {
		t.Fatalf("check without the index object: %+v", rep)
	}
	rr, err := v2.Maint().Repair(ctx)
	if err != nil || len(rr.Reindexed) != 1 || rr.Reindexed[0] != p || len(rr.BadPacks)+len(rr.RemovedIndex) != 0 {
		t.Fatalf("repair: %+v %v", rr, err)
	}
	got, err := index.GetPackIndex(ctx, v2.Storage(), v2.Repo().Keys(), indexKeyOf(t, be, p))
	if err != nil {
		t.Fatal(err)
	}
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(got)
	if !bytes.Equal(wj, gj) {
		t.Fatalf("rebuilt index object differs:\n%s\n%s", gj, wj)
	}
	if got := restoreDisk(t, v2, r.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("does not restore after repair")
	}
	if rep := check(t, v2, CheckOptions{ReadData: true}); !rep.OK {
		t.Fatalf("check after repair: %+v", rep)
	}
	if rr, err := v2.Maint().Repair(ctx); err != nil || len(rr.Reindexed)+len(rr.BadPacks)+len(rr.RemovedIndex) != 0 {
		t.Fatalf("second repair: %+v %v", rr, err)
	}
}

// Only ReadData finds a block whose bytes changed in place; a tree node is
// always read. A ReadOnly check writes nothing (without ReadOnly it would
// quarantine the pack: TestCorruptBlockIsQuarantined).
func TestCheckReadData(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(25, 16*testBlock)
	r := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "rp1", 1, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r.Root})
	ids, _ := v.Repo().BlockIDs(ctx, r.Root)
	loc, _ := mustIndex(t, v).Lookup(ids[4]) // random data: found once on the disk
	be.Objs[format.PackKey(loc.Pack)][loc.Offset+30] ^= 1
	puts := len(be.Puts)
	if rep := check(t, v, CheckOptions{ReadOnly: true}); !rep.OK {
		t.Fatalf("metadata check read data: %+v", rep)
	}
	rep := check(t, v, CheckOptions{ReadData: true, ReadOnly: true})
	if rep.OK || len(rep.Damage) != 1 || rep.Damage[0].Offset != 4*testBlock || rep.Damage[0].Blob != ids[4] || !strings.Contains(rep.Damage[0].Reason, "corrupt") {
		t.Fatalf("read-data check: %+v", rep)
	}
	// A subset reads fewer blobs, the same ones each time for one seed.
	a := check(t, v, CheckOptions{ReadDataPercent: 50, Seed: 7, ReadOnly: true})
	b := check(t, v, CheckOptions{ReadDataPercent: 50, Seed: 7, ReadOnly: true})
	if a.BlobsRead != b.BlobsRead || a.BlobsRead > rep.BlobsRead {
		t.Fatalf("subset read %d then %d blobs, all %d", a.BlobsRead, b.BlobsRead, rep.BlobsRead)
	}
	if len(be.Puts) != puts {
		t.Fatal("check wrote to the vault")
	}
}

// A corrupt manifest is reported by Check next to the good ones.
func TestCheckReportsCorruptManifest(t *testing.T) {
	v, be := testVault(t)
	r := backupDisk(t, v, mixedDisk(26, 8*testBlock), BackupOptions{})
	saveRP(t, v, "a", 1, format.DiskRecord{Name: "sda", SizeBytes: 8 * testBlock, Root: r.Root})
	saveRP(t, v, "b", 2, format.DiskRecord{Name: "sda", SizeBytes: 8 * testBlock, Root: r.Root})
	be.Objs["recoverypoints/vm1/b"][20] ^= 1
	rep := check(t, v, CheckOptions{})
	if rep.OK || rep.RecoveryPoints != 1 || len(rep.CorruptManifests) != 1 || rep.CorruptManifests[0].Key != "recoverypoints/vm1/b" {
		t.Fatalf("%+v", rep)
	}
}

// shortDisk returns fewer bytes than asked, with io.EOF, at one offset.
type shortDisk struct {
	memDisk
	at int64
}

func (d shortDisk) ReadAt(p []byte, off int64) (int, error) {
	if off == d.at {
		return copy(p[:len(p)-1], d.memDisk[off:]), io.EOF
	}
	return d.memDisk.ReadAt(p, off)
}

func TestShortReadFailsBackup(t *testing.T) {
	v, _ := testVault(t)
	src := shortDisk{memDisk: mixedDisk(27, 8*testBlock), at: 3 * testBlock}
	_, err := v.BackupDisk(context.Background(), src, BackupOptions{Disk: "sdb"})
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), fmt.Sprintf("disk sdb: read at offset %d: short read", 3*testBlock)) {
		t.Fatalf("short read: %v", err)
	}
}

// A successful backup deletes its checkpoint objects; one naming something
// else than a checkpoint is ignored.
func TestCheckpointObjectsDeleted(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(28, 64*testBlock)
	var last *Checkpoint
	r := backupDisk(t, v, disk, BackupOptions{Progress: func(p Progress) {
		if p.Checkpoint != nil {
			last = p.Checkpoint
		}
	}})
	if last == nil {
		t.Fatal("no checkpoint")
	}
	if n := len(objects(be, "checkpoints/")); n != 0 {
		t.Fatalf("%d checkpoint objects left", n)
	}
	r2, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d", Resume: &Checkpoint{NextBlock: 8, Ref: "config"}})
	if err != nil || r2.ResumedAt != 0 || r2.Root != r.Root || be.Objs["config"] == nil {
		t.Fatalf("foreign ref: %+v %v", r2, err)
	}
}

func objects(be *memBackend, prefix string) []string {
	be.Mu.Lock()
	defer be.Mu.Unlock()
	var keys []string
	for k := range be.Objs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	return keys
}

// indexKeyOf returns the key of pack's index object in be.
func indexKeyOf(t *testing.T, be *memBackend, pack ID) string {
	t.Helper()
	be.Mu.Lock()
	defer be.Mu.Unlock()
	for k := range be.Objs {
		if id, _, ok := format.ParseIndexKey(k); ok && id == pack {
			return k
		}
	}
	t.Fatalf("no index object of pack %s", pack.Short())
	return ""
}

// indexProblems are the index objects the loaded index left out since its
// last full load.
func indexProblems(v *Vault) []format.IndexProblem { return v.Repo().IndexStore().Problems() }
