package vault

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// gcClock is a GC clock the tests move by hand.
type gcClock struct{ t time.Time }

func (c *gcClock) opt() GCOptions {
	return GCOptions{Grace: 25 * time.Hour, Now: func() time.Time { return c.t }}
}
func (c *gcClock) add(d time.Duration) { c.t = c.t.Add(d) }

func gcMark(t *testing.T, v *Vault, c *gcClock) GCMarkReport {
	t.Helper()
	rep, err := v.Maint().GCMark(context.Background(), c.opt())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func gcSweep(t *testing.T, v *Vault, c *gcClock) GCSweepReport {
	t.Helper()
	rep, err := v.Maint().GCSweep(context.Background(), c.opt())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func diskRec(r DiskResult) format.DiskRecord {
	return format.DiskRecord{Name: "d", SizeBytes: r.Size, Root: r.Root}
}

// storedBytes is what packs and index objects take.
func storedBytes(t *testing.T, v *Vault) int64 {
	t.Helper()
	u, err := v.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return u.PackBytes + u.IndexBytes
}

// distinctDisk has no block in common with another seed's (no zero or
// repeated blocks), so what GC may free is known exactly.
func distinctDisk(seed uint64, blocks int) memDisk {
	d := mixedDisk(seed, blocks*testBlock)
	for i := range d {
		d[i] ^= byte(seed*31) + byte(i/testBlock) + 1
	}
	for b := 0; b < blocks; b++ {
		d[b*testBlock] = byte(seed)
		d[b*testBlock+1] = byte(b)
	}
	return d
}

func assertRestores(t *testing.T, v *Vault, r DiskResult, want memDisk) {
	t.Helper()
	if got := restoreDisk(t, reopen(v), r.Root, want.Size()); !bytes.Equal(got, want) {
		t.Fatal("recovery point does not restore bit-exact after GC")
	}
}

// GC frees exactly the packs of an expired point, only after the grace
// period, reports the bytes it freed, and every other point still restores.
func TestGCFreesOnlyUnreferencedPacks(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	diskA, diskB := distinctDisk(1, 24), distinctDisk(2, 24)
	ra := backupDisk(t, v, diskA, BackupOptions{})
	saveRP(t, v, "a", 1, diskRec(ra))
	before := storedBytes(t, v)
	rb := backupDisk(t, v, diskB, BackupOptions{})
	saveRP(t, v, "b", 2, diskRec(rb))
	withB := storedBytes(t, v)

	// Nothing is garbage yet.
	if m := gcMark(t, v, c); m.Candidates != 0 || m.RecoveryPoints != 2 {
		t.Fatalf("mark with every point live: %+v", m)
	}
	// b expires (its manifest goes, as a purge does).
	if err := be.Delete(ctx, format.RecoveryPointKey("vm1", "b")); err != nil {
		t.Fatal(err)
	}
	m := gcMark(t, v, c)
	if m.Candidates == 0 || m.NewCandidates != m.Candidates || m.CandidateBytes == 0 {
		t.Fatalf("mark after b expired: %+v", m)
	}
	c.add(time.Hour)
	if s := gcSweep(t, v, c); s.DeletedPacks != 0 || s.NotDue != m.Candidates {
		t.Fatalf("sweep inside the grace period deleted: %+v", s)
	}
	// A second mark keeps the first-seen times: the sweep is due 25h after the first.
	gcMark(t, v, c)
	c.add(24 * time.Hour)
	s := gcSweep(t, v, c)
	if s.DeletedPacks != m.Candidates || s.Referenced != 0 {
		t.Fatalf("sweep after the grace period: %+v, mark %+v", s, m)
	}
	after := storedBytes(t, v)
	t.Logf("freed %d bytes in %d packs (b stored %d bytes)", s.FreedBytes, s.DeletedPacks, withB-before)
	if s.FreedBytes != withB-after || after != before {
		t.Fatalf("freed %d bytes, storage went from %d to %d (before b: %d)", s.FreedBytes, withB, after, before)
	}
	assertRestores(t, v, ra, diskA)
	if rep := check(t, reopen(v), CheckOptions{ReadData: true}); !rep.OK || len(rep.UnindexedPacks) != 0 {
		t.Fatalf("check after GC: %+v", rep)
	}
	last, err := v.Maint().LastGC(ctx)
	if err != nil || last == nil || last.FreedBytes != s.FreedBytes {
		t.Fatalf("gc/last: %+v %v", last, err)
	}
	// Nothing left to do: a new GC frees nothing.
	gcMark(t, v, c)
	c.add(26 * time.Hour)
	if s := gcSweep(t, v, c); s.DeletedPacks != 0 {
		t.Fatalf("second GC deleted %d packs", s.DeletedPacks)
	}
}

// A soft-deleted point's tombstone keeps its data.
func TestGCKeepsSoftDeletedData(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	disk := distinctDisk(3, 20)
	r := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "a", 1, diskRec(r))
	rp, err := v.LoadRecoveryPoint(ctx, "vm1/a")
	if err != nil {
		t.Fatal(err)
	}
	// The tombstone format assumed until softdelete.go lands.
	tomb := struct {
		RecoveryPoint format.RecoveryPoint `json:"recovery_point"`
		DeletedAt     time.Time            `json:"deleted_at"`
	}{rp, c.t}
	if err := v.Repo().PutSealed(ctx, "deleted/vm1/a", tomb); err != nil {
		t.Fatal(err)
	}
	if err := be.Delete(ctx, format.RecoveryPointKey("vm1", "a")); err != nil {
		t.Fatal(err)
	}
	m := gcMark(t, v, c)
	c.add(26 * time.Hour)
	s := gcSweep(t, v, c)
	if m.SoftDeleted != 1 || m.Candidates != 0 || s.DeletedPacks != 0 {
		t.Fatalf("mark %+v sweep %+v", m, s)
	}
	assertRestores(t, v, r, disk)

	// A tombstone GC cannot read stops it rather than guess.
	if err := v.Repo().PutSealed(ctx, "deleted/vm1/x", map[string]string{"what": "unknown"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Maint().GCMark(ctx, c.opt()); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("unreadable tombstone: %v", err)
	}
}

// A backup that loaded its index before the mark deduplicates against a
// candidate and commits between mark and sweep: the sweep sees its point
// and keeps the pack.
func TestGCBackupBetweenMarkAndSweep(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	disk := distinctDisk(4, 20)
	r := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "old", 1, diskRec(r))
	if err := be.Delete(ctx, format.RecoveryPointKey("vm1", "old")); err != nil {
		t.Fatal(err)
	}
	early := reopen(v) // a worker whose backup loaded its index now
	mustIndex(t, early)
	m := gcMark(t, v, c)
	if m.Candidates == 0 {
		t.Fatal("no candidates")
	}
	r2, err := early.BackupDisk(ctx, disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Stats.NewBlocks != 0 {
		t.Fatalf("the early backup uploaded %d blocks: it did not dedup against the candidates, the test shows nothing", r2.Stats.NewBlocks)
	}
	saveRP(t, early, "new", 2, diskRec(r2))
	c.add(26 * time.Hour)
	s := gcSweep(t, v, c)
	if s.DeletedPacks != 0 || s.Referenced != m.Candidates {
		t.Fatalf("sweep: %+v (mark %+v)", s, m)
	}
	assertRestores(t, v, r2, disk)
	if _, cands, _ := v.Maint().GCCandidates(ctx); len(cands) != 0 {
		t.Fatalf("referenced candidates still excluded: %d", len(cands))
	}
}

// A backup whose index is loaded after the mark does not reference
// candidates: it uploads their blocks again, and the sweep deletes the old
// packs without harming it, even in a process that knew them.
func TestGCBackupAfterMarkReuploads(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	disk := distinctDisk(5, 20)
	r := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "old", 1, diskRec(r))
	if err := be.Delete(ctx, format.RecoveryPointKey("vm1", "old")); err != nil {
		t.Fatal(err)
	}
	worker := reopen(v) // a long-lived worker: knows the packs before the mark
	mustIndex(t, worker)
	m := gcMark(t, v, c)
	// Each backup refreshes the index first (as the transfer activity does).
	if _, err := worker.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	r2, err := worker.BackupDisk(ctx, disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Stats.NewBlocks != 20 || r2.Root != r.Root {
		t.Fatalf("backup after the mark stored %d of 20 blocks (root equal: %v)", r2.Stats.NewBlocks, r2.Root == r.Root)
	}
	saveRP(t, worker, "new", 2, diskRec(r2))
	c.add(26 * time.Hour)
	s := gcSweep(t, v, c)
	if s.DeletedPacks != m.Candidates || s.DeletedPacks == 0 {
		t.Fatalf("sweep: %+v (mark %+v)", s, m)
	}
	// The worker's index moves the blobs of the deleted packs to their copies.
	if _, err := worker.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := restoreDisk(t, worker, r2.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("long-lived worker cannot restore after GC")
	}
	assertRestores(t, v, r2, disk)
}

// A backup interrupted after a checkpoint, resumed across a mark and
// committed before the sweep, restores bit-exact; the checkpoint's data is
// never a candidate while the checkpoint exists, and a checkpoint its job
// outlived by the grace period is removed.
func TestGCResumeAcrossGC(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	disk := distinctDisk(6, 160)
	cctx, cancel := context.WithCancel(ctx)
	var last *Checkpoint
	_, err := v.BackupDisk(cctx, disk, BackupOptions{Disk: "d", Workers: 2, Progress: func(p Progress) {
		if p.Checkpoint != nil {
			last = p.Checkpoint
			if last.NextBlock >= 48 {
				cancel()
			}
		}
	}})
	if err == nil || last == nil {
		t.Fatalf("backup was not interrupted after a checkpoint: %v", err)
	}
	m := gcMark(t, v, c)
	if m.Checkpoints != 1 {
		t.Fatalf("mark: %+v", m)
	}
	c.add(time.Hour)
	gcSweep(t, v, c) // nothing is due
	w := reopen(v)   // the retried activity, on another worker
	r, err := w.BackupDisk(ctx, disk, BackupOptions{Disk: "d", Resume: last})
	if err != nil {
		t.Fatal(err)
	}
	if r.ResumedAt != last.NextBlock {
		t.Fatalf("resumed at %d, checkpoint at %d", r.ResumedAt, last.NextBlock)
	}
	saveRP(t, w, "a", 1, diskRec(r))
	c.add(25 * time.Hour)
	s := gcSweep(t, v, c)
	assertRestores(t, v, r, disk)
	if rep := check(t, reopen(v), CheckOptions{ReadData: true}); !rep.OK {
		t.Fatalf("check: %+v", rep)
	}
	t.Logf("sweep after the resumed backup: %+v", s)

	// A checkpoint whose job died: kept (and its data) until the grace
	// period has passed, then removed, and its data freed by the next GC.
	// (Large enough that the first checkpoint comes long before the end:
	// a backup that finishes before the cancel lands deletes its own.)
	cctx, cancel = context.WithCancel(ctx)
	other := distinctDisk(7, 512)
	last = nil
	_, err = v.BackupDisk(cctx, other, BackupOptions{Disk: "e", Workers: 1, Progress: func(p Progress) {
		if p.Checkpoint != nil && last == nil {
			last = p.Checkpoint
			cancel()
		}
	}})
	if err == nil || last == nil || len(objects(be, "checkpoints/")) != 1 {
		t.Fatalf("no dead checkpoint (backup error %v): %v", err, objects(be, "checkpoints/"))
	}
	gcMark(t, v, c)
	c.add(26 * time.Hour)
	if s := gcSweep(t, v, c); s.StaleCheckpoints != 1 {
		t.Fatalf("stale checkpoint not removed: %+v", s)
	}
	gcMark(t, v, c)
	c.add(26 * time.Hour)
	if s := gcSweep(t, v, c); s.DeletedPacks == 0 {
		t.Fatalf("dead backup's packs not freed: %+v", s)
	}
	assertRestores(t, v, r, disk)
}

// A dry run reports and changes nothing.
func TestGCDryRun(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := backupDisk(t, v, distinctDisk(8, 8), BackupOptions{})
	saveRP(t, v, "a", 1, diskRec(r))
	_ = be.Delete(ctx, format.RecoveryPointKey("vm1", "a"))
	o := c.opt()
	o.DryRun = true
	m, err := v.Maint().GCMark(ctx, o)
	if err != nil || m.Candidates == 0 {
		t.Fatalf("dry mark: %+v %v", m, err)
	}
	if len(objects(be, "gc/")) != 0 {
		t.Fatal("dry run wrote")
	}
}

// listHook runs hook once, before the first listing of prefix.
type listHook struct {
	*memBackend
	prefix string
	hook   func()
}

func (h *listHook) List(ctx context.Context, p string, fn func(string, int64) error) error {
	if p == h.prefix && h.hook != nil {
		hook := h.hook
		h.hook = nil
		hook()
	}
	return h.memBackend.List(ctx, p, fn)
}

// A backup that finishes while GC's mark runs, after the mark listed the
// packs and before it reads the recovery points, saves a point whose tree
// is in packs the mark never listed: the mark reads those late packs'
// index objects for the tree (it used to fail: "in no pack"), protects
// the older blocks the new point shares, and it restores after the sweep.
func TestGCMarkBesideAFinishingBackup(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	diskA := distinctDisk(3, 24)
	ra := backupDisk(t, v, diskA, BackupOptions{})
	saveRP(t, v, "a", 1, diskRec(ra))
	// b shares a's first blocks and changes the others.
	diskB := append(memDisk(nil), diskA...)
	copy(diskB[12*testBlock:], distinctDisk(4, 12))
	var rb DiskResult
	h := &listHook{memBackend: be, prefix: format.KindCheckpoint.Prefix(), hook: func() {
		rb = backupDisk(t, v, diskB, BackupOptions{})
		saveRP(t, v, "b", 2, diskRec(rb))
		if err := be.Delete(ctx, format.RecoveryPointKey("vm1", "a")); err != nil { // a expires
			t.Error(err)
		}
	}}
	gv := newVault(h, v.Config(), v.Repo().Keys())
	m, err := gv.Maint().GCMark(ctx, c.opt())
	if err != nil {
		t.Fatalf("mark beside a finishing backup: %v", err)
	}
	t.Logf("mark: %+v", m)
	c.add(26 * time.Hour)
	gcSweep(t, gv, c)
	assertRestores(t, v, rb, diskB)
	if rep := check(t, reopen(v), CheckOptions{ReadData: true}); !rep.OK {
		t.Fatalf("check after GC: %+v", rep)
	}
}
