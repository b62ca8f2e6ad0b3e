package vault

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
)

const day = 24 * time.Hour

// softDeleteVault has vm1's recovery points a, b, c of one backed-up disk.
func softDeleteVault(t *testing.T) (*Vault, *memBackend, []byte) {
	t.Helper()
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(11, 8*testBlock)
	r, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"a", "b", "c"} {
		rp := format.RecoveryPoint{ID: id, VM: "vm1", StartedAt: time.Unix(int64(i), 0), Metadata: []byte(`{"name":"vm1"}`),
			Disks: []format.DiskRecord{{Name: "d", SizeBytes: int64(len(disk)), Root: r.Root}}}
		if err := v.SaveRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	return v, be, disk
}

func refs(rps []format.RecoveryPoint) []string {
	out := []string{}
	for _, rp := range rps {
		out = append(out, rp.Ref())
	}
	return out
}

func deletedRefs(dps []format.DeletedPoint) []string {
	out := []string{}
	for _, dp := range dps {
		out = append(out, dp.Ref())
	}
	return out
}

func TestSoftDeleteAndUndelete(t *testing.T) {
	ctx := context.Background()
	v, be, disk := softDeleteVault(t)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	dp, err := v.DeleteRecoveryPoint(ctx, "b", now, 14*day) // a bare id finds its VM
	if err != nil {
		t.Fatal(err)
	}
	if dp.Ref() != "vm1/b" || !dp.DeletedAt.Equal(now) || !dp.PurgeAfter.Equal(now.Add(14*day)) {
		t.Fatalf("deleted point: %+v", dp)
	}
	if _, ok := be.Objs["recoverypoints/vm1/b"]; ok {
		t.Fatal("manifest still there")
	}
	rps, err := v.ListRecoveryPoints(ctx, "vm1")
	if err != nil || !reflect.DeepEqual(refs(rps), []string{"vm1/a", "vm1/c"}) {
		t.Fatalf("list after delete: %v %v", refs(rps), err)
	}
	del, err := v.ListDeleted(ctx, "")
	if err != nil || !reflect.DeepEqual(deletedRefs(del), []string{"vm1/b"}) || !del[0].PurgeAfter.Equal(now.Add(14*day)) {
		t.Fatalf("list deleted: %+v %v", del, err)
	}
	_, err = v.LoadRecoveryPoint(ctx, "vm1/b")
	want := "recovery point vm1/b was deleted at 2026-11-01T12:00:00Z; vmvault rp undelete vm1/b restores it until 2026-11-15T12:00:00Z"
	if !errors.Is(err, format.ErrSoftDeleted) || !errors.Is(err, format.ErrNoRecoveryPoint) || err.Error() != want {
		t.Fatalf("load deleted: %v", err)
	}
	if _, err := v.LoadRecoveryPoint(ctx, "b"); !errors.Is(err, format.ErrSoftDeleted) {
		t.Fatalf("load deleted by id: %v", err)
	}
	if _, err := v.DeleteRecoveryPoint(ctx, "vm1/b", now, 14*day); !errors.Is(err, format.ErrSoftDeleted) {
		t.Fatalf("second delete: %v", err)
	}
	// Nothing expires before the period ends.
	if purged, err := v.Maint().PurgeDeleted(ctx, now.Add(14*day-time.Second), 14*day); err != nil || len(purged) != 0 {
		t.Fatalf("early purge: %v %v", purged, err)
	}

	rp, err := v.UndeleteRecoveryPoint(ctx, "vm1/b", now.Add(13*day))
	if err != nil || rp.Ref() != "vm1/b" {
		t.Fatalf("undelete: %v %v", rp.Ref(), err)
	}
	if _, ok := be.Objs["deleted/vm1/b"]; ok {
		t.Fatal("tombstone still there")
	}
	got, err := v.LoadRecoveryPoint(ctx, "vm1/b")
	if err != nil || string(got.Metadata) != `{"name":"vm1"}` {
		t.Fatalf("load undeleted: %+v %v", got, err)
	}
	if b := restoreDisk(t, v, got.Disks[0].Root, got.Disks[0].SizeBytes); string(b) != string(disk) {
		t.Fatal("undeleted point restores other data")
	}
	if _, err := v.UndeleteRecoveryPoint(ctx, "vm1/b", now); err == nil || !strings.Contains(err.Error(), "is not deleted") {
		t.Fatalf("undelete of a live point: %v", err)
	}
}

func TestUndeleteAfterPeriodRefused(t *testing.T) {
	ctx := context.Background()
	v, _, _ := softDeleteVault(t)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if _, err := v.DeleteRecoveryPoint(ctx, "vm1/a", now, 14*day); err != nil {
		t.Fatal(err)
	}
	_, err := v.UndeleteRecoveryPoint(ctx, "vm1/a", now.Add(14*day))
	if !errors.Is(err, format.ErrSoftDeleted) || !strings.Contains(err.Error(), "soft-delete period ended at 2026-11-15T00:00:00Z") {
		t.Fatalf("late undelete: %v", err)
	}
}

func TestPurgeDeleted(t *testing.T) {
	ctx := context.Background()
	v, be, _ := softDeleteVault(t)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i, ref := range []string{"vm1/a", "vm1/b"} {
		if _, err := v.DeleteRecoveryPoint(ctx, ref, t0.Add(time.Duration(i)*day), 14*day); err != nil {
			t.Fatal(err)
		}
	}
	due, err := v.Maint().DueForPurge(ctx, t0.Add(14*day), 14*day)
	if err != nil || !reflect.DeepEqual(deletedRefs(due), []string{"vm1/a"}) {
		t.Fatalf("due: %v %v", deletedRefs(due), err)
	}
	purged, err := v.Maint().PurgeDeleted(ctx, t0.Add(14*day), 14*day)
	if err != nil || !reflect.DeepEqual(purged, []string{"vm1/a"}) {
		t.Fatalf("purge: %v %v", purged, err)
	}
	if _, ok := be.Objs["deleted/vm1/a"]; ok {
		t.Fatal("tombstone of a purged point still there")
	}
	if _, err := v.LoadRecoveryPoint(ctx, "vm1/a"); !errors.Is(err, format.ErrNoRecoveryPoint) || errors.Is(err, format.ErrSoftDeleted) {
		t.Fatalf("load purged: %v", err)
	}
	if _, err := v.UndeleteRecoveryPoint(ctx, "vm1/a", t0); !errors.Is(err, format.ErrNoRecoveryPoint) {
		t.Fatalf("undelete purged: %v", err)
	}
	// A shorter keepFor than the one of the delete purges earlier.
	purged, err = v.Maint().PurgeDeleted(ctx, t0.Add(1*day+time.Hour), time.Hour)
	if err != nil || !reflect.DeepEqual(purged, []string{"vm1/b"}) {
		t.Fatalf("purge with a short period: %v %v", purged, err)
	}
	// The data stays for GC: packs are untouched.
	rps, err := v.ListRecoveryPoints(ctx, "")
	if err != nil || !reflect.DeepEqual(refs(rps), []string{"vm1/c"}) {
		t.Fatalf("left: %v %v", refs(rps), err)
	}
}

// TestInterruptedDelete: a crash between writing the tombstone and removing
// the manifest leaves both; the point counts as deleted, and a second
// delete or a purge removes the leftover manifest.
func TestInterruptedDelete(t *testing.T) {
	ctx := context.Background()
	v, be, _ := softDeleteVault(t)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	manifest := append([]byte(nil), be.Objs["recoverypoints/vm1/c"]...)
	if _, err := v.DeleteRecoveryPoint(ctx, "vm1/c", now, 14*day); err != nil {
		t.Fatal(err)
	}
	be.Objs["recoverypoints/vm1/c"] = manifest // as if the delete had crashed
	rps, err := v.ListRecoveryPoints(ctx, "vm1")
	if err != nil || !reflect.DeepEqual(refs(rps), []string{"vm1/a", "vm1/b"}) {
		t.Fatalf("list with a leftover manifest: %v %v", refs(rps), err)
	}
	if _, err := v.LoadRecoveryPoint(ctx, "vm1/c"); !errors.Is(err, format.ErrSoftDeleted) {
		t.Fatalf("load with a leftover manifest: %v", err)
	}
	if dp, err := v.DeleteRecoveryPoint(ctx, "vm1/c", now.Add(time.Hour), 14*day); err != nil || !dp.DeletedAt.Equal(now) {
		t.Fatalf("finishing delete: %+v %v", dp, err)
	}
	if _, ok := be.Objs["recoverypoints/vm1/c"]; ok {
		t.Fatal("leftover manifest not removed")
	}
	be.Objs["recoverypoints/vm1/c"] = manifest
	if purged, err := v.Maint().PurgeDeleted(ctx, now.Add(15*day), 14*day); err != nil || len(purged) != 1 {
		t.Fatalf("purge: %v %v", purged, err)
	}
	if _, ok := be.Objs["recoverypoints/vm1/c"]; ok {
		t.Fatal("purge left the manifest: the point came back")
	}
}

func TestCorruptTombstone(t *testing.T) {
	ctx := context.Background()
	v, be, _ := softDeleteVault(t)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, ref := range []string{"vm1/a", "vm1/b"} {
		if _, err := v.DeleteRecoveryPoint(ctx, ref, now, 14*day); err != nil {
			t.Fatal(err)
		}
	}
	be.Objs["deleted/vm1/a"][40] ^= 1
	del, err := v.ListDeleted(ctx, "vm1")
	if !errors.Is(err, format.ErrCorrupt) || !reflect.DeepEqual(deletedRefs(del), []string{"vm1/b"}) {
		t.Fatalf("list with a corrupt tombstone: %v %v", deletedRefs(del), err)
	}
	purged, err := v.Maint().PurgeDeleted(ctx, now.Add(30*day), 14*day)
	if !errors.Is(err, format.ErrCorrupt) || !reflect.DeepEqual(purged, []string{"vm1/b"}) {
		t.Fatalf("purge with a corrupt tombstone: %v %v", purged, err)
	}
	if _, ok := be.Objs["deleted/vm1/a"]; !ok {
		t.Fatal("an unreadable tombstone was purged")
	}
	if _, err := v.UndeleteRecoveryPoint(ctx, "vm1/a", now); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("undelete of a corrupt tombstone: %v", err)
	}
}
