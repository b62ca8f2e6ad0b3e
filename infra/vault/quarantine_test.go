package vault

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/vault/format"
)

// A same-size bit flip inside a pack is found by a read-data check, which
// quarantines the pack: out of dedup for every worker at its next refresh,
// its sound blobs copied into a new pack, the damaged point named. The next
// backup (here a second worker's, under CBT with nothing changed) stores
// the damaged block again from the intact disk, and every point restores
// bit-exact.
func TestCorruptBlockIsQuarantined(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(41, 32*testBlock)
	r1 := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "rp1", 1, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r1.Root})
	ids, _ := v.Repo().BlockIDs(ctx, r1.Root)
	loc, _ := mustIndex(t, v).Lookup(ids[4]) // random data: found once on the disk
	w2 := reopen(v)                          // a second worker, its index loaded before the check
	if _, err := w2.Repo().Index(ctx); err != nil {
		t.Fatal(err)
	}
	be.Objs[format.PackKey(loc.Pack)][loc.Offset+30] ^= 1

	rep := check(t, v, CheckOptions{ReadData: true})
	if rep.OK || !slices.Equal(rep.Damaged, []string{"vm1/rp1"}) || len(rep.Quarantined) != 1 {
		t.Fatalf("check: %+v", rep)
	}
	q := rep.Quarantined[0]
	if q.Pack != loc.Pack || !slices.Equal(q.Damaged, []ID{ids[4]}) || q.Salvaged == 0 || q.NewPacks == 0 {
		t.Fatalf("quarantine: %+v", q)
	}
	if be.Objs[format.QuarantineKey(loc.Pack)] == nil {
		t.Fatal("no quarantine note")
	}
	// A metadata check names the damage too, and quarantines nothing more.
	if rep := check(t, reopen(v), CheckOptions{}); !slices.Equal(rep.Damaged, []string{"vm1/rp1"}) || len(rep.Quarantined) != 0 || rep.QuarantinedPacks != 1 {
		t.Fatalf("metadata check after quarantine: %+v", rep)
	}

	idx, err := w2.Repo().RefreshIndex(ctx) // as every backup job does first
	if err != nil {
		t.Fatal(err)
	}
	if idx.DedupHas(ids[4]) {
		t.Fatal("second worker still dedups against the quarantined pack")
	}
	r2 := backupDisk(t, w2, disk, BackupOptions{Parent: &r1.Root, Changed: []extent.Extent{}})
	if r2.Stats.NewBlocks != 1 {
		t.Fatalf("second worker's backup stored %d blocks, want the damaged one: %+v", r2.Stats.NewBlocks, r2.Stats)
	}
	saveRP(t, w2, "rp2", 2, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r2.Root})
	for _, root := range []ID{r2.Root, r1.Root} { // the new copy heals rp1 too
		if got := restoreDisk(t, reopen(v), root, disk.Size()); !bytes.Equal(got, disk) {
			t.Fatal("does not restore bit-exact after quarantine and a backup")
		}
	}
	if rep := check(t, reopen(v), CheckOptions{ReadData: true}); !rep.OK || len(rep.Quarantined) != 0 {
		t.Fatalf("check after the heal: %+v", rep)
	}

	// GC keeps the sound copies, not the quarantined pack: it is swept
	// (with its note) and both points still restore.
	clock := &gcClock{t: time.Now()}
	if m := gcMark(t, v, clock); m.Repack.Packs != nil {
		t.Fatalf("a quarantined pack was repacked: %+v", m.Repack)
	}
	clock.add(26 * time.Hour)
	gcSweep(t, v, clock)
	if be.Objs[format.PackKey(loc.Pack)] != nil || be.Objs[format.QuarantineKey(loc.Pack)] != nil {
		t.Fatal("GC kept the quarantined pack or its note")
	}
	for _, root := range []ID{r2.Root, r1.Root} {
		if got := restoreDisk(t, reopen(v), root, disk.Size()); !bytes.Equal(got, disk) {
			t.Fatal("does not restore bit-exact after GC")
		}
	}
}

// Repair verifies a pack without a valid index object; one with a flipped
// bit is quarantined, its sound blobs salvaged and the damaged point named,
// and the next backup heals it.
func TestRepairQuarantinesCorruptPack(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(42, 32*testBlock)
	r1 := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "rp1", 1, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r1.Root})
	ids, _ := v.Repo().BlockIDs(ctx, r1.Root)
	loc, _ := mustIndex(t, v).Lookup(ids[4])
	delete(be.Objs, indexKeyOf(t, be, loc.Pack))
	be.Objs[format.PackKey(loc.Pack)][loc.Offset+30] ^= 1

	rr, err := reopen(v).Maint().Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.BadPacks) != 1 || len(rr.Quarantined) != 1 || rr.Quarantined[0].Pack != loc.Pack ||
		!slices.Contains(rr.Quarantined[0].Damaged, ids[4]) || !slices.Equal(rr.DamagedPoints, []string{"vm1/rp1"}) {
		t.Fatalf("repair: %+v", rr)
	}
	w := reopen(v)
	r2 := backupDisk(t, w, disk, BackupOptions{Parent: &r1.Root})
	if got := restoreDisk(t, reopen(v), r2.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("backup after repair does not restore bit-exact")
	}
	saveRP(t, w, "rp2", 2, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r2.Root})
	if rep := check(t, reopen(v), CheckOptions{ReadData: true}); len(rep.Damaged) != 0 {
		t.Fatalf("check after the heal: %+v", rep)
	}
	// The note of a pack that is gone is deleted by the next repair.
	delete(be.Objs, format.PackKey(loc.Pack))
	if _, err := reopen(v).Maint().Repair(ctx); err != nil || be.Objs[format.QuarantineKey(loc.Pack)] != nil {
		t.Fatalf("repair kept the note of a pack that is gone (%v)", err)
	}
	if rep := check(t, reopen(v), CheckOptions{ReadData: true}); !rep.OK || rep.QuarantinedPacks != 0 {
		t.Fatalf("check after the pack left: %+v", rep)
	}
}

// garbleOnce returns one range read of a pack with a byte flipped, as a
// bad network path might.
type garbleOnce struct {
	*memBackend
	done atomic.Bool
}

func (g *garbleOnce) GetRange(ctx context.Context, k string, off, n int64) ([]byte, error) {
	b, err := g.memBackend.GetRange(ctx, k, off, n)
	if err == nil && strings.HasPrefix(k, "packs/") && n > 100 && g.done.CompareAndSwap(false, true) {
		b = append([]byte(nil), b...)
		b[50] ^= 1
	}
	return b, err
}

// A block damaged in transit, not in the pack, quarantines nothing: the
// pack is read whole again first.
func TestCheckQuarantinesOnlyDamagedPacks(t *testing.T) {
	v, be := testVault(t)
	disk := mixedDisk(44, 16*testBlock)
	r1 := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "rp1", 1, format.DiskRecord{Name: "sda", SizeBytes: disk.Size(), Root: r1.Root})
	g := &garbleOnce{memBackend: be}
	rep := check(t, newVault(g, v.Config(), v.Repo().Keys()), CheckOptions{ReadData: true})
	if !g.done.Load() || rep.OK || len(rep.Quarantined) != 0 || len(be.Keys(format.KindQuarantine.Prefix())) != 0 {
		t.Fatalf("check through a garbling path: %+v", rep)
	}
}
