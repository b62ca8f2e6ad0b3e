package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/internal/vaulttest"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
)

// Replication must not spread damage from the primary to the secondary:
// these tests run on directory vaults, damage the primary, replicate, and
// restore from the secondary bit-exact.

func fsBackend(t *testing.T) storage.Backend {
	t.Helper()
	be, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// replicaPair is a directory vault holding point vm1/a of disk, and an
// empty directory for its secondary.
func replicaPair(t *testing.T, disk memDisk) (*Vault, storage.Backend, storage.Backend, DiskResult) {
	t.Helper()
	src := fsBackend(t)
	v, err := Init(context.Background(), src, []byte(testSecret), vaulttest.InitOptions())
	if err != nil {
		t.Fatal(err)
	}
	r := backupDisk(t, v, disk, BackupOptions{})
	saveRP(t, v, "a", 1, diskRec(r))
	return v, src, fsBackend(t), r
}

func mustReplicate(t *testing.T, src, dst storage.Backend, opt ReplicateOptions) ReplicateReport {
	t.Helper()
	rep, err := Replicate(context.Background(), src, dst, opt)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// keysOf lists be's keys under prefix.
func keysOf(t *testing.T, be storage.Backend, prefix string) []string {
	t.Helper()
	var out []string
	if err := be.List(context.Background(), prefix, func(k string, _ int64) error {
		if !strings.HasPrefix(k[strings.LastIndex(k, "/")+1:], ".") {
			out = append(out, k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func getObj(t *testing.T, be storage.Backend, key string) []byte {
	t.Helper()
	b, err := be.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// restoresFromSecondary restores point vm1/<id> from dst bit-exact.
func restoresFromSecondary(t *testing.T, v *Vault, dst storage.Backend, id string, want memDisk) {
	t.Helper()
	ctx := context.Background()
	sv, err := v.OnStorage(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := sv.LoadRecoveryPoint(ctx, "vm1/"+id)
	if err != nil {
		t.Fatal(err)
	}
	w := &memWriter{b: make([]byte, want.Size())}
	if _, err := sv.RestoreDisk(ctx, rp.Disks[0].Root, w, RestoreOptions{Disk: "d"}); err != nil {
		t.Fatalf("restore vm1/%s from the secondary: %v", id, err)
	}
	if !bytes.Equal(w.b, want) {
		t.Fatalf("vm1/%s from the secondary differs from what was backed up", id)
	}
}

// A truncated pack on the primary, and one rewritten with junk of another
// size (by someone holding only the primary's credentials), do not replace
// the secondary's good copies.
func TestReplicateKeepsSecondaryCopyOfDamagedPack(t *testing.T) {
	ctx := context.Background()
	disk := distinctDisk(5, 24)
	v, src, dst, _ := replicaPair(t, disk)
	mustReplicate(t, src, dst, ReplicateOptions{})
	packs := keysOf(t, src, "packs/")
	if len(packs) < 2 {
		t.Fatalf("%d packs, want 2 or more", len(packs))
	}
	good := map[string][]byte{}
	for _, p := range packs[:2] {
		good[p] = getObj(t, dst, p)
	}
	if err := src.Put(ctx, packs[0], good[packs[0]][:len(good[packs[0]])/2]); err != nil {
		t.Fatal(err)
	}
	if err := src.Put(ctx, packs[1], bytes.Repeat([]byte("junk"), 1000)); err != nil {
		t.Fatal(err)
	}
	mustReplicate(t, src, dst, ReplicateOptions{})
	for p, b := range good {
		if !bytes.Equal(getObj(t, dst, p), b) {
			t.Fatalf("%s on the secondary was overwritten by the primary's damaged copy", p)
		}
	}
	restoresFromSecondary(t, v, dst, "a", disk)
}

// With the vault's keys, a conflict's two copies are verified and
// reported; a new pack that fails verification on the primary is not
// copied (nor its index object), and everything else still is.
func TestReplicateVerifiesConflictsAndRefusesDamage(t *testing.T) {
	ctx := context.Background()
	diskA, diskB := distinctDisk(6, 24), distinctDisk(7, 24)
	v, src, dst, _ := replicaPair(t, diskA)
	keys := v.Repo().Keys()
	mustReplicate(t, src, dst, ReplicateOptions{Keys: keys})
	packs := keysOf(t, src, "packs/")
	bad := getObj(t, src, packs[0])
	if err := src.Put(ctx, packs[0], bad[:len(bad)-10]); err != nil {
		t.Fatal(err)
	}
	// Point b's packs are new; flip one byte in one of them (same size).
	rb := backupDisk(t, v, diskB, BackupOptions{})
	saveRP(t, v, "b", 2, diskRec(rb))
	var flipped string
	for _, p := range keysOf(t, src, "packs/") {
		if _, err := dst.Stat(ctx, p); errors.Is(err, storage.ErrNotFound) {
			flipped = p
			break
		}
	}
	b := getObj(t, src, flipped)
	b[len(b)/3] ^= 0x40
	if err := src.Put(ctx, flipped, b); err != nil {
		t.Fatal(err)
	}
	rep := mustReplicate(t, src, dst, ReplicateOptions{Keys: keys})
	t.Logf("conflicts %+v; refused %+v", rep.Conflicts, rep.Refused)
	if rep.ConflictCount != 1 || len(rep.Conflicts) != 1 {
		t.Fatalf("conflicts: %+v", rep)
	}
	c := rep.Conflicts[0]
	if c.Key != packs[0] || !strings.HasPrefix(c.Primary, "damaged: ") || c.Secondary != "intact" || c.PrimaryBytes != int64(len(bad)-10) {
		t.Fatalf("conflict: %+v", c)
	}
	if rep.RefusedCount != 1 || rep.Refused[0].Key != flipped {
		t.Fatalf("refused: %+v", rep)
	}
	if _, err := dst.Stat(ctx, flipped); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("damaged pack %s copied: %v", flipped, err)
	}
	for _, k := range keysOf(t, dst, "index/") {
		if strings.HasSuffix(k, pathTail(flipped)) {
			t.Fatalf("index object %s of the refused pack copied", k)
		}
	}
	if rep.NewRecoveryPoints != 1 || rep.Copied < 2 {
		t.Fatalf("the rest was not copied: %+v", rep)
	}
	restoresFromSecondary(t, v, dst, "a", diskA)
	st, err := v.ReplicationStatus(ctx, dst)
	if err != nil || st.Conflicts != 1 || st.Last == nil || st.Last.ConflictCount != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
}

func pathTail(key string) string { return key[strings.LastIndex(key, "/")+1:] }

// A pack (and its index object) that vanished from the primary without GC
// deleting it is damage there: the secondary keeps it past the delay.
func TestReplicateKeepsPacksLostOnPrimary(t *testing.T) {
	ctx := context.Background()
	disk := distinctDisk(8, 24)
	v, src, dst, _ := replicaPair(t, disk)
	now := time.Now()
	mustReplicate(t, src, dst, ReplicateOptions{Now: now, DeleteAfter: time.Hour})
	pack := keysOf(t, src, "packs/")[0]
	lost := []string{pack}
	for _, k := range keysOf(t, src, "index/") {
		if strings.HasSuffix(k, pathTail(pack)) {
			lost = append(lost, k)
		}
	}
	for _, k := range lost {
		if err := src.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	mustReplicate(t, src, dst, ReplicateOptions{Now: now.Add(time.Minute), DeleteAfter: time.Hour})
	mustReplicate(t, src, dst, ReplicateOptions{Now: now.Add(3 * time.Hour), DeleteAfter: time.Hour})
	for _, k := range lost {
		if _, err := dst.Stat(ctx, k); err != nil {
			t.Fatalf("%s, lost on the primary, deleted from the secondary: %v", k, err)
		}
	}
	restoresFromSecondary(t, v, dst, "a", disk)
}

// Packs GC deleted on purpose (named in its deletion log) are deleted from
// the secondary after the delay, after the point that used them; without
// the vault's keys no pack is deleted.
func TestReplicateFollowsGCDeletes(t *testing.T) {
	ctx := context.Background()
	diskA, diskB := distinctDisk(9, 24), distinctDisk(10, 24)
	v, src, dst, _ := replicaPair(t, diskA)
	rb := backupDisk(t, v, diskB, BackupOptions{})
	saveRP(t, v, "b", 2, diskRec(rb))
	keys := v.Repo().Keys()
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opt := func() ReplicateOptions { return ReplicateOptions{Now: c.t, DeleteAfter: time.Hour, Keys: keys} }
	mustReplicate(t, src, dst, opt())
	if _, err := v.DeleteRecoveryPoint(ctx, "vm1/b", c.t, time.Hour); err != nil {
		t.Fatal(err)
	}
	mustReplicate(t, src, dst, opt()) // copies b's tombstone
	c.add(2 * time.Hour)
	if purged, err := v.Maint().PurgeDeleted(ctx, c.t, time.Hour); err != nil || len(purged) != 1 {
		t.Fatalf("purge: %v %v", purged, err)
	}
	if m := gcMark(t, v, c); m.Candidates == 0 {
		t.Fatalf("mark: %+v", m)
	}
	c.add(26 * time.Hour)
	if s := gcSweep(t, v, c); s.DeletedPacks == 0 {
		t.Fatalf("sweep: %+v", s)
	}
	// Without the keys the deletion log cannot be read: nothing goes.
	c.add(2 * time.Hour)
	noKeys := opt()
	noKeys.Keys = nil
	rep := mustReplicate(t, src, dst, noKeys)
	if rep.DeletesHeld == "" || len(keysOf(t, dst, "packs/")) == len(keysOf(t, src, "packs/")) {
		t.Fatalf("without keys: %+v", rep)
	}
	// With them, the packs wait out the delay from when they were first
	// seen missing, then go.
	if rep = mustReplicate(t, src, dst, opt()); rep.Deleted != 0 || rep.PendingDeletes == 0 {
		t.Fatalf("before the delay: %+v", rep)
	}
	c.add(2 * time.Hour)
	rep = mustReplicate(t, src, dst, opt())
	if rep.LostOnPrimary != 0 || rep.Deleted == 0 || rep.PendingDeletes != 0 {
		t.Fatalf("after the delay: %+v", rep)
	}
	if cmp, err := Compare(ctx, src, dst); err != nil || !cmp.Same() {
		t.Fatalf("compare: %+v %v", cmp, err)
	}
	restoresFromSecondary(t, v, dst, "a", diskA)
}

// A secondary config that does not parse (it may be another vault's, or a
// newer format's) is never replaced.
func TestReplicateKeepsUnreadableSecondaryConfig(t *testing.T) {
	ctx := context.Background()
	disk := distinctDisk(11, 8)
	v, src, dst, _ := replicaPair(t, disk)
	foreign := []byte(`{"version": 99, "id": "another vault"}`)
	if err := dst.Put(ctx, "config", foreign); err != nil {
		t.Fatal(err)
	}
	if _, err := Replicate(ctx, src, dst, ReplicateOptions{}); !errors.Is(err, format.ErrVaultExists) {
		t.Fatalf("replicate over an unreadable secondary config: %v", err)
	}
	if !bytes.Equal(getObj(t, dst, "config"), foreign) {
		t.Fatal("the secondary's config was replaced")
	}
	if err := dst.Delete(ctx, "config"); err != nil {
		t.Fatal(err)
	}
	mustReplicate(t, src, dst, ReplicateOptions{})
	restoresFromSecondary(t, v, dst, "a", disk)
}

// With the keys, a config that its MAC does not authenticate is not
// copied, and the secondary keeps its own.
func TestReplicateRefusesUnauthenticatedConfig(t *testing.T) {
	ctx := context.Background()
	disk := distinctDisk(12, 8)
	v, src, dst, _ := replicaPair(t, disk)
	mustReplicate(t, src, dst, ReplicateOptions{Keys: v.Repo().Keys()})
	good := getObj(t, dst, "config")
	swapped := swappedConfig(t, good)
	if err := src.Put(ctx, "config", swapped); err != nil {
		t.Fatal(err)
	}
	if _, err := Replicate(ctx, src, dst, ReplicateOptions{Keys: v.Repo().Keys()}); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("replicate a swapped config: %v", err)
	}
	if !bytes.Equal(getObj(t, dst, "config"), good) {
		t.Fatal("the secondary's config was replaced")
	}
	if _, err := Open(ctx, dst, []byte(testSecret)); err != nil {
		t.Fatal(err)
	}
	restoresFromSecondary(t, v, dst, "a", disk)
}

// swappedConfig is cfg with another wrapped key: same vault id, a MAC
// that no longer matches.
func swappedConfig(t *testing.T, data []byte) []byte {
	t.Helper()
	cfg, err := format.ParseConfig("test", data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.WrappedKey {
		cfg.WrappedKey[i] ^= 0x5a
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A manifest deleted on the primary behind the vault's back (no tombstone)
// is damage there: the secondary keeps the point, and while it does, the
// packs GC then deletes on the primary (logged, on purpose) stay on the
// secondary, which still restores the point bit-exact.
func TestReplicateKeepsDataOfPointLostOnPrimary(t *testing.T) {
	ctx := context.Background()
	diskA, diskB := distinctDisk(13, 24), distinctDisk(14, 24)
	v, src, dst, _ := replicaPair(t, diskA)
	rb := backupDisk(t, v, diskB, BackupOptions{})
	saveRP(t, v, "b", 2, diskRec(rb))
	c := &gcClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opt := func() ReplicateOptions {
		return ReplicateOptions{Now: c.t, DeleteAfter: time.Hour, Keys: v.Repo().Keys()}
	}
	mustReplicate(t, src, dst, opt())
	if err := src.Delete(ctx, format.RecoveryPointKey("vm1", "b")); err != nil {
		t.Fatal(err)
	}
	mustReplicate(t, src, dst, opt())
	if m := gcMark(t, v, c); m.Candidates == 0 {
		t.Fatalf("mark: %+v", m)
	}
	c.add(26 * time.Hour)
	if s := gcSweep(t, v, c); s.DeletedPacks == 0 {
		t.Fatalf("sweep: %+v", s)
	}
	mustReplicate(t, src, dst, opt())
	c.add(2 * time.Hour)
	rep := mustReplicate(t, src, dst, opt())
	if rep.Deleted != 0 || rep.DeletesHeld == "" || rep.LostOnPrimary != 1 || rep.LostOnPrimaryKeys[0] != format.RecoveryPointKey("vm1", "b") {
		t.Fatalf("after the delay: %+v", rep)
	}
	restoresFromSecondary(t, v, dst, "b", diskB)
	restoresFromSecondary(t, v, dst, "a", diskA)
}

// A pack lost on the primary stays lost there after 'vault repair' drops
// its index object: repair names it in the deletion log so every worker's
// index forgets it, but that is not a deletion to replicate. The
// secondary keeps its copy (the only good one) past the delay, and the
// point restores from it.
func TestReplicateKeepsPackRepairDropped(t *testing.T) {
	ctx := context.Background()
	disk := distinctDisk(15, 24)
	v, src, dst, _ := replicaPair(t, disk)
	now := time.Now()
	opt := func(at time.Time) ReplicateOptions {
		return ReplicateOptions{Now: at, DeleteAfter: time.Hour, Keys: v.Repo().Keys()}
	}
	mustReplicate(t, src, dst, opt(now))
	pack := keysOf(t, src, "packs/")[0]
	lost := []string{pack}
	for _, k := range keysOf(t, src, "index/") {
		if strings.HasSuffix(k, pathTail(pack)) {
			lost = append(lost, k)
		}
	}
	if err := src.Delete(ctx, pack); err != nil {
		t.Fatal(err)
	}
	rep, err := v.Maint().Repair(ctx)
	if err != nil || len(rep.RemovedIndex) != 1 {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	mustReplicate(t, src, dst, opt(now.Add(time.Minute)))
	r := mustReplicate(t, src, dst, opt(now.Add(3*time.Hour)))
	for _, k := range lost {
		if _, err := dst.Stat(ctx, k); err != nil {
			t.Fatalf("%s, lost on the primary and dropped by repair, deleted from the secondary: %v (%+v)", k, err, r)
		}
	}
	if r.Deleted != 0 || r.LostOnPrimary != len(lost) {
		t.Fatalf("after the delay: %+v", r)
	}
	restoresFromSecondary(t, v, dst, "a", disk)
}

// A pack damaged on the secondary (cut short there) while the primary's
// copy is intact is a conflict the vault's keys settle: the primary's
// verified bytes replace the damaged copy, and the point restores from
// the secondary again. Without the keys nothing is replaced.
func TestReplicateHealsDamagedSecondaryCopy(t *testing.T) {
	ctx := context.Background()
	disk := distinctDisk(16, 24)
	v, src, dst, _ := replicaPair(t, disk)
	mustReplicate(t, src, dst, ReplicateOptions{Keys: v.Repo().Keys()})
	pack := keysOf(t, src, "packs/")[0]
	good := getObj(t, src, pack)
	if err := dst.Put(ctx, pack, good[:len(good)/2]); err != nil {
		t.Fatal(err)
	}
	if rep := mustReplicate(t, src, dst, ReplicateOptions{}); rep.ConflictCount != 1 || len(getObj(t, dst, pack)) != len(good)/2 {
		t.Fatalf("without keys: %+v", rep)
	}
	rep := mustReplicate(t, src, dst, ReplicateOptions{Keys: v.Repo().Keys()})
	if rep.ConflictCount != 1 || !rep.Conflicts[0].Replaced || !strings.Contains(rep.Conflicts[0].String(), "replaced with the primary's intact copy") {
		t.Fatalf("with keys: %+v", rep)
	}
	t.Log(rep.Conflicts[0])
	if !bytes.Equal(getObj(t, dst, pack), good) {
		t.Fatal("the secondary's damaged copy was not replaced by the primary's")
	}
	restoresFromSecondary(t, v, dst, "a", disk)
	if rep := mustReplicate(t, src, dst, ReplicateOptions{Keys: v.Repo().Keys()}); rep.ConflictCount != 0 || rep.Copied != 0 {
		t.Fatalf("after the heal: %+v", rep)
	}
}
