package vault

import (
	"context"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// A pack that is mostly garbage is repacked: its live blobs (verified) go to
// a new pack, the next GC frees the old pack, and everything restores.
func TestGCRepacksMostlyGarbagePacks(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	c := &gcClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	// One disk of 24 blocks (a few packs), then a second point that keeps
	// only its first 2 blocks: after the first point expires, the packs
	// holding those 2 blocks are mostly garbage.
	a := distinctDisk(5, 24)
	ra := backupDisk(t, v, a, BackupOptions{})
	saveRP(t, v, "a", 1, diskRec(ra))
	b := distinctDisk(6, 24)
	copy(b[:2*testBlock], a[:2*testBlock])
	rb := backupDisk(t, v, b, BackupOptions{})
	saveRP(t, v, "b", 2, diskRec(rb))
	if err := be.Delete(ctx, format.RecoveryPointKey("vm1", "a")); err != nil {
		t.Fatal(err)
	}
	opt := c.opt()
	opt.RepackBelow = 0.5
	dry := opt
	dry.DryRun = true
	packsBefore := len(be.Keys("packs/"))
	d, err := v.Maint().GCMark(ctx, dry)
	if err != nil || len(d.Repack.Packs) == 0 || d.Repack.NewPacks != 0 || len(be.Keys("packs/")) != packsBefore {
		t.Fatalf("dry run: %+v %v (packs %d -> %d)", d.Repack, err, packsBefore, len(be.Keys("packs/")))
	}
	m, err := v.Maint().GCMark(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Repack.Packs) == 0 || m.Repack.LiveBlobs < 2 || m.Repack.NewPacks == 0 {
		t.Fatalf("no repack of the shared packs: %+v", m.Repack)
	}
	for _, p := range m.Repack.Packs {
		for _, cand := range candidatePacks(t, v) {
			if cand == p {
				t.Fatalf("repacked pack %s is a candidate in the same mark", p.Short())
			}
		}
	}
	// The old packs now hold only duplicates: the next GC frees them.
	c.add(time.Hour)
	gcMark(t, v, c)
	found := 0
	for _, cand := range candidatePacks(t, v) {
		for _, p := range m.Repack.Packs {
			if cand == p {
				found++
			}
		}
	}
	if found != len(m.Repack.Packs) {
		t.Fatalf("%d of %d repacked packs are candidates at the next mark", found, len(m.Repack.Packs))
	}
	c.add(26 * time.Hour)
	if s := gcSweep(t, v, c); s.DeletedPacks < found {
		t.Fatalf("sweep: %+v", s)
	}
	assertRestores(t, v, rb, b)
	if rep := check(t, reopen(v), CheckOptions{ReadData: true}); !rep.OK {
		t.Fatalf("check after repack and GC: %+v", rep)
	}
}

// candidatePacks lists the packs of the vault's gc/candidates.
func candidatePacks(t *testing.T, v *Vault) []ID {
	t.Helper()
	_, cands, err := v.Maint().GCCandidates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]ID, len(cands))
	for i, c := range cands {
		out[i] = c.Pack
	}
	return out
}
