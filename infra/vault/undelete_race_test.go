package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// stepBackend runs fire once, before its at'th storage call (counting
// from 0): the other side of a race, run between two steps of this one.
type stepBackend struct {
	*memBackend
	mu    sync.Mutex
	calls int
	at    int
	fire  func()
}

func (s *stepBackend) step() {
	s.mu.Lock()
	n := s.calls
	s.calls++
	s.mu.Unlock()
	if n == s.at && s.fire != nil {
		s.fire()
	}
}

func (s *stepBackend) Put(ctx context.Context, k string, d []byte) error {
	s.step()
	return s.memBackend.Put(ctx, k, d)
}
func (s *stepBackend) PutIfAbsent(ctx context.Context, k string, d []byte) error {
	s.step()
	return s.memBackend.PutIfAbsent(ctx, k, d)
}
func (s *stepBackend) Get(ctx context.Context, k string) ([]byte, error) {
	s.step()
	return s.memBackend.Get(ctx, k)
}
func (s *stepBackend) Stat(ctx context.Context, k string) (int64, error) {
	s.step()
	return s.memBackend.Stat(ctx, k)
}
func (s *stepBackend) Delete(ctx context.Context, k string) error {
	s.step()
	return s.memBackend.Delete(ctx, k)
}
func (s *stepBackend) List(ctx context.Context, p string, fn func(string, int64) error) error {
	s.step()
	return s.memBackend.List(ctx, p, fn)
}
func (s *stepBackend) ListAfter(ctx context.Context, p, after string, fn func(string, int64) error) error {
	s.step()
	return s.memBackend.ListAfter(ctx, p, after, fn)
}

// An undelete racing a short purge (one whose keepFor is shorter than the
// point's soft-delete period) either wins, and the point is back, loads,
// survives GC and restores bit-exact, or fails saying the point is purged
// or being purged, and the point is gone: never a "restored" point whose
// manifest the purge removed. Each side is run between every two storage
// calls of the other.
func TestUndeleteRacesPurge(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(2 * day) // inside the point's 14 days, past the purge's 1
	tried := 0
	for _, side := range []string{"undelete during purge", "purge during undelete"} {
		for at := 0; ; at++ {
			v, be := testVault(t)
			disk := distinctDisk(41, 6)
			r := backupDisk(t, v, disk, BackupOptions{})
			saveRP(t, v, "x", 1, diskRec(r))
			if _, err := v.DeleteRecoveryPoint(context.Background(), "vm1/x", t0, 14*day); err != nil {
				t.Fatal(err)
			}
			var (
				uerr   error
				purged []string
				perr   error
			)
			undelete := func(v *Vault) { _, uerr = v.UndeleteRecoveryPoint(context.Background(), "vm1/x", now) }
			purge := func(v *Vault) { purged, perr = v.Maint().PurgeDeleted(context.Background(), now, day) }
			sb := &stepBackend{memBackend: be, at: at}
			stepped := newVault(sb, v.Config(), v.Repo().Keys())
			plain := reopen(v)
			if side == "undelete during purge" {
				sb.fire = func() { undelete(plain) }
				purge(stepped)
			} else {
				sb.fire = func() { purge(plain) }
				undelete(stepped)
			}
			if sb.calls <= at {
				break // the other side never ran: every step was tried
			}
			name := fmt.Sprintf("%s, at call %d", side, at)
			if perr != nil {
				t.Fatalf("%s: purge: %v", name, perr)
			}
			checkRace(t, name, v, be, uerr, slices.Contains(purged, "vm1/x"), disk)
			tried++
		}
	}
	t.Logf("%d interleavings, each outcome clean", tried)
}

// checkRace checks one outcome of TestUndeleteRacesPurge.
func checkRace(t *testing.T, name string, v *Vault, be *memBackend, uerr error, purged bool, disk memDisk) {
	t.Helper()
	ctx := context.Background()
	_, hasTomb := be.Objs[format.TombstoneKey("vm1", "x")]
	_, loadErr := reopen(v).LoadRecoveryPoint(ctx, "vm1/x")
	if left := be.Keys(format.KindClaim.Prefix()); len(left) > 0 {
		t.Errorf("%s: claims left: %v", name, left)
	}
	if uerr != nil {
		if !errors.Is(uerr, format.ErrNoRecoveryPoint) && !errors.Is(uerr, format.ErrSoftDeleted) {
			t.Fatalf("%s: undelete failed, not cleanly: %v", name, uerr)
		}
		if loadErr == nil || hasTomb || !purged {
			t.Fatalf("%s: undelete said %q, but the point loads (%v), has a tombstone (%v) or was not purged (%v)", name, uerr, loadErr, hasTomb, purged)
		}
		return
	}
	if loadErr != nil || hasTomb || purged {
		t.Fatalf("%s: undelete succeeded, but the point does not load (%v), has a tombstone (%v) or was purged (%v)", name, loadErr, hasTomb, purged)
	}
	c := &gcClock{t: time.Now()}
	gcMark(t, v, c)
	c.add(26 * time.Hour)
	gcSweep(t, v, c)
	rp, err := reopen(v).LoadRecoveryPoint(ctx, "vm1/x")
	if err != nil {
		t.Fatalf("%s: after GC: %v", name, err)
	}
	if got := restoreDisk(t, reopen(v), rp.Disks[0].Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatalf("%s: the undeleted point does not restore bit-exact after GC", name)
	}
}

// A claim left by a purge that died blocks an undelete only until it is
// stale; a fresh one refuses it, saying the point is being purged.
func TestStaleClaimIsTakenOver(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	v, be := testVault(t)
	saveRP(t, v, "x", 1, diskRec(backupDisk(t, v, distinctDisk(42, 2), BackupOptions{})))
	if _, err := v.DeleteRecoveryPoint(ctx, "vm1/x", t0, 14*day); err != nil {
		t.Fatal(err)
	}
	if _, held, err := v.Repo().ClaimPoint(ctx, "vm1", "x", format.ClaimPurge, t0.Add(day)); err != nil || held != nil {
		t.Fatalf("claim: %v %v", held, err)
	} // never released: the purge died
	if _, err := v.UndeleteRecoveryPoint(ctx, "vm1/x", t0.Add(day+time.Minute)); !errors.Is(err, format.ErrSoftDeleted) {
		t.Fatalf("undelete under a fresh purge claim: %v", err)
	}
	if _, err := v.UndeleteRecoveryPoint(ctx, "vm1/x", t0.Add(day).Add(2*repo.ClaimStale)); err != nil {
		t.Fatalf("undelete under a stale purge claim: %v", err)
	}
	if left := be.Keys(format.KindClaim.Prefix()); len(left) > 0 {
		t.Errorf("claims left: %v", left)
	}
}
