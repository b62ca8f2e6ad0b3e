package vault

import (
	"bytes"
	"context"
	"testing"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// The documented cure for a lost pack (check, repair, back up again) heals
// a CBT chain too: a block that CBT says is unchanged, but whose id the
// index no longer holds, is read from the disk again and stored, so the new
// point restores bit-exact, and so does the one after it.
func TestCBTReusesNoLostBlock(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(40, 64*testBlock)
	r1 := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "rp1", 1, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r1.Root})
	loseData(t, v, be, r1.Root)

	if rep := check(t, reopen(v), CheckOptions{}); rep.OK {
		t.Fatal("check missed the lost pack")
	}
	if _, err := v.Maint().Repair(ctx); err != nil {
		t.Fatal(err)
	}
	nothing := []extent.Extent{} // CBT: nothing changed since rp1
	r2 := backupDisk(t, v, disk, BackupOptions{Parent: &r1.Root, Changed: nothing})
	if r2.Method != format.MethodCBT {
		t.Fatalf("method %s, want cbt", r2.Method)
	}
	if r2.Stats.NewBlocks == 0 || r2.Stats.ScannedBytes == 0 {
		t.Fatalf("lost blocks were not read again: %+v", r2.Stats)
	}
	if got := restoreDisk(t, v, r2.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("cbt backup after repair does not restore bit-exact")
	}
	saveRP(t, v, "rp2", 2, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r2.Root})
	// The next CBT backup of the healed chain reads nothing.
	r3 := backupDisk(t, reopen(v), disk, BackupOptions{Parent: &r2.Root, Changed: nothing})
	if r3.Stats.ScannedBytes != 0 || r3.Stats.NewBlocks != 0 {
		t.Fatalf("healed chain read or stored blocks: %+v", r3.Stats)
	}
	if got := restoreDisk(t, reopen(v), r3.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("next cbt backup does not restore bit-exact")
	}
	if rep := check(t, reopen(v), CheckOptions{ReadData: true}); len(rep.Damaged) != 0 {
		t.Fatalf("after the cure, damaged: %v", rep.Damaged)
	}
}

// loseData deletes the pack holding block 0 of the disk with tree root,
// after copying its tree nodes into a new pack: its blocks are lost, the
// tree is not (a damaged parent tree is another case).
func loseData(t *testing.T, v *Vault, be *memBackend, root ID) ID {
	t.Helper()
	return losePack(t, v, be, packOf(t, v, root, 0))
}

// losePack deletes pack p after copying its tree nodes into a new pack.
func losePack(t *testing.T, v *Vault, be *memBackend, p ID) ID {
	t.Helper()
	ctx := context.Background()
	pi, err := index.GetPackIndex(ctx, v.Storage(), v.Repo().Keys(), indexKeyOf(t, be, p))
	if err != nil {
		t.Fatal(err)
	}
	data := be.Objs[format.PackKey(p)]
	pk := repo.NewPacker(ctx, v.Repo())
	for _, e := range pi.Entries {
		if e.Type == format.BlobTree {
			if _, err := pk.AddBlob(e.ID, e.Type, append([]byte(nil), data[e.Offset:e.Offset+e.Length]...)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pk.Finish(); err != nil {
		t.Fatal(err)
	}
	delete(be.Objs, format.PackKey(p))
	return p
}

// A checkpoint whose leaves name a block lost since (its pack gone and
// repaired away) is not resumed from: the backup starts over and reads it.
func TestResumeSkipsLostBlocks(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk, last := interruptedBackup(t, v, 43)
	loc, ok := mustIndex(t, v).Lookup(v.Repo().Keys().Hash(disk[:testBlock]))
	if !ok {
		t.Fatal("block 0 not stored before the interruption")
	}
	losePack(t, v, be, loc.Pack)
	if _, err := v.Maint().Repair(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d", Resume: last})
	if err != nil {
		t.Fatal(err)
	}
	if r.ResumedAt != 0 {
		t.Fatalf("resumed at block %d past a lost block", r.ResumedAt)
	}
	if got := restoreDisk(t, reopen(v), r.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("backup after a lost checkpointed block does not restore bit-exact")
	}
}
