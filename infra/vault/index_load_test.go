package vault

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// listCounter counts the keys each listing returns, by prefix, and can hide
// keys from listings (a listing that lags behind a write) or fail them.
type listCounter struct {
	storage.Backend
	mu     sync.Mutex
	listed map[string]int
	hide   func(key string) bool
	fail   func(prefix string) error
}

func (c *listCounter) List(ctx context.Context, p string, fn func(string, int64) error) error {
	return c.ListAfter(ctx, p, "", fn)
}

func (c *listCounter) ListAfter(ctx context.Context, p, after string, fn func(string, int64) error) error {
	if c.fail != nil {
		if err := c.fail(p); err != nil {
			return err
		}
	}
	return c.Backend.ListAfter(ctx, p, after, func(key string, size int64) error {
		if c.hide != nil && c.hide(key) {
			return nil
		}
		c.mu.Lock()
		if c.listed == nil {
			c.listed = map[string]int{}
		}
		c.listed[p]++
		c.mu.Unlock()
		return fn(key, size)
	})
}

// take returns the counts so far, by prefix, and starts again.
func (c *listCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.listed
	c.listed = nil
	return out
}

// total is take summed over the prefixes.
func (c *listCounter) total() int {
	n := 0
	for _, k := range c.take() {
		n += k
	}
	return n
}

// A refresh lists the index objects written since the last one (and the
// GC deletion logs), never every pack or every index object.
func TestRefreshListsOnlyWhatIsNew(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	for i := range 5 {
		backupDisk(t, v, distinctDisk(uint64(40+i), 20), BackupOptions{})
	}
	lc := &listCounter{Backend: be}
	w := newVault(lc, v.Config(), v.Repo().Keys())
	if _, err := w.Repo().Index(ctx); err != nil {
		t.Fatal(err)
	}
	first := lc.take()
	if first["packs/"] == 0 || first["index/"] < 5 {
		t.Fatalf("first load listed %v: want every pack and index object", first)
	}
	r := backupDisk(t, v, distinctDisk(50, 20), BackupOptions{})
	idx, err := w.RefreshIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := lc.take()
	if got["packs/"] != 0 {
		t.Fatalf("refresh listed %d packs", got["packs/"])
	}
	// The skew margin re-lists the last 10 minutes: here, everything; the
	// test below moves the clock. What matters is what is read and added.
	if !idx.Has(r.Root) {
		t.Fatal("refresh missed the new backup's index object")
	}
	if got := restoreDisk(t, w, r.Root, 20*testBlock); !bytes.Equal(got, distinctDisk(50, 20)) {
		t.Fatal("new backup does not restore through the refreshed worker")
	}

	// Index objects named more than the skew margin before the newest one
	// seen are not listed again.
	w.Repo().IndexStore().MoveCursor(2*index.Skew, time.Time{})
	lc.take()
	if _, err := w.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lc.take(); got["index/"] != 0 || got["packs/"] != 0 {
		t.Fatalf("refresh past the margin listed %v", got)
	}
}

// An index object named long before the cursor (a writer whose clock is
// far behind) is missed by refreshes, but a lookup miss reloads fully and
// finds it, so a restore never fails for it.
func TestLookupMissReconciles(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	backupDisk(t, v, distinctDisk(60, 10), BackupOptions{})
	w := reopen(v)
	mustIndex(t, w)
	w.Repo().IndexStore().MoveCursor(time.Hour, time.Now().Add(-time.Minute)) // as if a writer's clock ran an hour ahead
	disk := distinctDisk(61, 10)
	r := backupDisk(t, v, disk, BackupOptions{})
	if _, err := w.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if mustIndex(t, w).Has(r.Root) {
		t.Fatal("the test shows nothing: the refresh saw the index object")
	}
	if got := restoreDisk(t, w, r.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("restore after a lookup miss")
	}
	_ = be
}

// A pack GC deleted is forgotten by a worker's next refresh through the
// deletion log, without listing packs; a refresh that cannot see the log
// gc/candidates names fails instead of trusting the pack.
func TestRefreshLearnsGCDeletions(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := backupDisk(t, v, distinctDisk(70, 20), BackupOptions{})
	saveRP(t, v, "old", 1, diskRec(r))
	if err := be.Delete(ctx, format.RecoveryPointKey("vm1", "old")); err != nil {
		t.Fatal(err)
	}
	lc := &listCounter{Backend: be}
	w := newVault(lc, v.Config(), v.Repo().Keys())
	idx := mustIndex(t, w)
	packs := idx.PackSizes()
	if len(packs) == 0 {
		t.Fatal("no packs")
	}
	gcMark(t, v, c)
	c.add(26 * time.Hour)
	s := gcSweep(t, v, c)
	if s.DeletedPacks != len(packs) {
		t.Fatalf("sweep deleted %d of %d packs", s.DeletedPacks, len(packs))
	}

	// A listing that lags behind: the log is not visible yet.
	lc.hide = func(key string) bool { return strings.HasPrefix(key, format.KindDeletionLog.Prefix()) }
	if _, err := w.RefreshIndex(ctx); err == nil || !strings.Contains(err.Error(), "deletion log 1 is not listed yet") {
		t.Fatalf("refresh without the deletion log: %v", err)
	}
	for p := range packs {
		if !idx.HasPack(p) {
			t.Fatal("a failed refresh changed the index")
		}
	}
	lc.hide = nil
	lc.take()
	if _, err := w.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lc.take(); got["packs/"] != 0 {
		t.Fatalf("refresh listed %d packs", got["packs/"])
	}
	for p := range packs {
		if idx.HasPack(p) {
			t.Fatalf("pack %s deleted by GC is still in the index", p.Short())
		}
	}
	if idx.Has(r.Root) {
		t.Fatal("blobs of deleted packs are still found")
	}
	// The next backup stores the blocks again.
	r2 := backupDisk(t, w, distinctDisk(70, 20), BackupOptions{})
	if r2.Stats.NewBlocks != 20 {
		t.Fatalf("backup after GC stored %d of 20 blocks", r2.Stats.NewBlocks)
	}
	assertRestores(t, w, r2, distinctDisk(70, 20))
}

// Repair replaces an unreadable index object and removes the old one, so
// the index reports no problem afterwards.
func TestRepairReplacesUnreadableIndexObject(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := distinctDisk(80, 10)
	r := backupDisk(t, v, disk, BackupOptions{})
	p := packOf(t, v, r.Root, 0)
	old := indexKeyOf(t, be, p)
	be.Objs[old][50] ^= 1
	time.Sleep(2 * time.Millisecond) // the new index object gets another name
	rr, err := reopen(v).Maint().Repair(ctx)
	if err != nil || len(rr.Reindexed) != 1 {
		t.Fatalf("repair: %+v %v", rr, err)
	}
	if _, ok := be.Objs[old]; ok {
		t.Fatal("the unreadable index object is still there")
	}
	w := reopen(v)
	mustIndex(t, w)
	if probs := indexProblems(w); len(probs) != 0 {
		t.Fatalf("problems after repair: %v", probs)
	}
	assertRestores(t, w, r, disk)
}

// Repair logs the packs whose index objects it removes (their packs are
// gone), so every worker's next refresh forgets them without a full load.
func TestRepairLogsMissingPacks(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := distinctDisk(90, 10)
	r := backupDisk(t, v, disk, BackupOptions{})
	lost := packOf(t, v, r.Root, 0)
	lc := &listCounter{Backend: be}
	w := newVault(lc, v.Config(), v.Repo().Keys())
	if !mustIndex(t, w).HasPack(lost) {
		t.Fatal("worker does not know the pack")
	}
	delete(be.Objs, format.PackKey(lost))
	if _, err := reopen(v).Maint().Repair(ctx); err != nil {
		t.Fatal(err)
	}
	lc.take()
	if _, err := w.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lc.take(); got["packs/"] != 0 {
		t.Fatalf("refresh listed %d packs", got["packs/"])
	}
	if mustIndex(t, w).HasPack(lost) {
		t.Fatal("worker still trusts the pack repair found missing")
	}
	r2 := backupDisk(t, w, disk, BackupOptions{})
	if r2.Stats.NewBlocks == 0 {
		t.Fatal("the lost blocks were not stored again")
	}
	assertRestores(t, w, r2, disk)
}

// A refresh that reads GC's deletion log and then fails (storage error on
// the index listing) keeps its cursor: the next refresh reads the log again
// and forgets the deleted packs.
func TestFailedRefreshRereadsDeletionLog(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := backupDisk(t, v, distinctDisk(95, 20), BackupOptions{})
	saveRP(t, v, "old", 1, diskRec(r))
	if err := be.Delete(ctx, format.RecoveryPointKey("vm1", "old")); err != nil {
		t.Fatal(err)
	}
	lc := &listCounter{Backend: be}
	w := newVault(lc, v.Config(), v.Repo().Keys())
	idx := mustIndex(t, w)
	gcMark(t, v, c)
	c.add(26 * time.Hour)
	if s := gcSweep(t, v, c); s.DeletedPacks == 0 {
		t.Fatal("nothing deleted: the test shows nothing")
	}
	lc.fail = func(prefix string) error {
		if prefix == format.KindIndex.Prefix() {
			return errors.New("storage unreachable")
		}
		return nil
	}
	if _, err := w.RefreshIndex(ctx); err == nil {
		t.Fatal("refresh survived a failed listing")
	}
	lc.fail = nil
	if _, err := w.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if idx.Has(r.Root) {
		t.Fatal("packs GC deleted are still trusted after a failed refresh")
	}
}
