package vault

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

func TestReplicateResumeDeletesAndRestore(t *testing.T) {
	ctx := context.Background()
	v, src, disk := softDeleteVault(t)
	dst := newMem()
	rep, err := Replicate(ctx, src, dst, ReplicateOptions{DeleteAfter: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Copied == 0 || rep.RecoveryPoints != 3 || rep.NewRecoveryPoints != 3 {
		t.Fatalf("first replication: %+v", rep)
	}
	// Again: nothing to copy, nothing PUT twice.
	puts := len(dst.Puts)
	for k, n := range dst.Puts {
		if n != 1 && !strings.HasPrefix(k, "replication/") {
			t.Fatalf("%s put %d times", k, n)
		}
	}
	rep, err = Replicate(ctx, src, dst, ReplicateOptions{DeleteAfter: 24 * time.Hour})
	if err != nil || rep.Copied != 0 {
		t.Fatalf("second replication copied %d: %v", rep.Copied, err)
	}
	if len(dst.Puts) != puts {
		t.Fatal("second replication wrote new keys")
	}
	if c, err := Compare(ctx, src, dst); err != nil || !c.Same() {
		t.Fatalf("compare: %+v %v", c, err)
	}
	// The secondary opens with the primary's keys and restores bit-exact.
	sv, err := v.OnStorage(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := sv.LoadRecoveryPoint(ctx, "vm1/c")
	if err != nil {
		t.Fatal(err)
	}
	if got := restoreDisk(t, sv, rp.Disks[0].Root, int64(len(disk))); string(got) != string(disk) {
		t.Fatal("restore from the secondary differs")
	}
	if _, err := Open(ctx, dst, []byte(testSecret)); err != nil {
		t.Fatalf("secondary does not open with the secret: %v", err)
	}
	// Soft delete on the primary: the manifest disappears there; the
	// secondary keeps it for DeleteAfter, then follows.
	now := time.Now()
	if _, err := v.DeleteRecoveryPoint(ctx, "vm1/a", now, time.Hour); err != nil {
		t.Fatal(err)
	}
	rep, err = Replicate(ctx, src, dst, ReplicateOptions{Now: now, DeleteAfter: 24 * time.Hour})
	if err != nil || rep.Deleted != 0 || rep.PendingDeletes != 1 {
		t.Fatalf("delete replicated early: %+v %v", rep, err)
	}
	rep, err = Replicate(ctx, src, dst, ReplicateOptions{Now: now.Add(25 * time.Hour), DeleteAfter: 24 * time.Hour})
	if err != nil || rep.Deleted != 1 || rep.PendingDeletes != 0 {
		t.Fatalf("delete not replicated after the period: %+v %v", rep, err)
	}
	if _, ok := dst.Objs["recoverypoints/vm1/a"]; ok {
		t.Fatal("manifest still on the secondary")
	}
	// A primary without config is refused, not mirrored as empty.
	delete(src.Objs, "config")
	if _, err := Replicate(ctx, src, dst, ReplicateOptions{}); !errors.Is(err, format.ErrNoVault) {
		t.Fatalf("replicating a vanished primary: %v", err)
	}
}

func TestImmutableRefusesEarlyDelete(t *testing.T) {
	ctx := context.Background()
	v, be, _ := softDeleteVault(t)
	if _, err := v.SetImmutable(ctx, format.Immutability{Days: 7, Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.SetImmutable(ctx, format.Immutability{Days: 1}); !errors.Is(err, format.ErrImmutable) {
		t.Fatalf("shortened immutability: %v", err)
	}
	// Points a, b, c were made at Unix 0..2: long expired. A new one is not.
	rp := format.RecoveryPoint{ID: "d", VM: "vm1", StartedAt: time.Now(), CompletedAt: time.Now(), Metadata: []byte(`{}`)}
	if err := v.SaveRecoveryPoint(ctx, rp); err != nil {
		t.Fatal(err)
	}
	_, err := v.DeleteRecoveryPoint(ctx, "vm1/d", time.Now(), time.Hour)
	if !errors.Is(err, format.ErrImmutable) || !strings.Contains(err.Error(), "vm1/d is protected until") {
		t.Fatalf("early delete: %v", err)
	}
	if _, err := v.DeleteRecoveryPoint(ctx, "vm1/a", time.Now(), time.Hour); err != nil {
		t.Fatalf("expired point: %v", err)
	}
	// The setting is in the MAC'd config: it survives reopening, and an
	// edit in storage does not open.
	v2, err := Open(ctx, be, []byte(testSecret))
	if err != nil || v2.Config().Immutable == nil || v2.Config().Immutable.Days != 7 {
		t.Fatalf("reopen: %+v %v", v2.Config().Immutable, err)
	}
	be.Objs["config"] = []byte(strings.Replace(string(be.Objs["config"]), `"days": 7`, `"days": 1`, 1))
	if _, err := Open(ctx, be, []byte(testSecret)); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("edited immutability opened: %v", err)
	}
}

// downAfter is a secondary that goes down after n puts.
type downAfter struct {
	*memBackend
	n int
}

func (d *downAfter) Put(ctx context.Context, k string, b []byte) error {
	if err := d.down(); err != nil {
		return err
	}
	return d.memBackend.Put(ctx, k, b)
}

// PutIfAbsent goes down with Put: replication writes immutable keys with it.
func (d *downAfter) PutIfAbsent(ctx context.Context, k string, b []byte) error {
	if err := d.down(); err != nil {
		return err
	}
	return d.memBackend.PutIfAbsent(ctx, k, b)
}

func (d *downAfter) down() error {
	d.Mu.Lock()
	defer d.Mu.Unlock()
	d.n--
	if d.n < 0 {
		return errors.New("connection refused")
	}
	return nil
}

// A secondary that was unreachable midway catches up, and nothing it got
// before is copied again; manifests come only after all data.
func TestReplicateCatchesUpAfterOutage(t *testing.T) {
	ctx := context.Background()
	_, src, _ := softDeleteVault(t)
	dst := &downAfter{memBackend: newMem(), n: 3}
	if _, err := Replicate(ctx, src, dst, ReplicateOptions{Workers: 1}); err == nil {
		t.Fatal("replication to an unreachable secondary succeeded")
	}
	for k := range dst.Objs {
		if strings.HasPrefix(k, "recoverypoints/") {
			t.Fatalf("%s replicated before all data", k)
		}
	}
	dst.n = 1 << 30
	rep, err := Replicate(ctx, src, dst, ReplicateOptions{})
	if err != nil || rep.NewRecoveryPoints != 3 {
		t.Fatalf("catch-up: %+v %v", rep, err)
	}
	for k, n := range dst.Puts {
		if n != 1 && !strings.HasPrefix(k, "replication/") {
			t.Fatalf("%s put %d times", k, n)
		}
	}
	if c, err := Compare(ctx, src, dst); err != nil || !c.Same() {
		t.Fatalf("compare after catch-up: %+v %v", c, err)
	}
}

// goneOnGet is a primary whose GC deletes one pack between the listing and
// its copy.
type goneOnGet struct {
	*memBackend
	key string
}

func (g *goneOnGet) Get(ctx context.Context, k string) ([]byte, error) {
	if k == g.key {
		return nil, storage.ErrNotFound
	}
	return g.memBackend.Get(ctx, k)
}

func TestReplicateSkipsIndexOfVanishedPack(t *testing.T) {
	ctx := context.Background()
	_, src, _ := softDeleteVault(t)
	var pack string
	for k := range src.Objs {
		if strings.HasPrefix(k, "packs/") {
			pack = k
			break
		}
	}
	dst := newMem()
	if _, err := Replicate(ctx, &goneOnGet{memBackend: src, key: pack}, dst, ReplicateOptions{}); err != nil {
		t.Fatal(err)
	}
	h := pack[strings.LastIndex(pack, "/")+1:]
	for k := range dst.Objs {
		if strings.HasPrefix(k, "index/") && strings.HasSuffix(k, h) {
			t.Fatalf("index of vanished pack %s replicated", pack)
		}
	}
	if _, ok := dst.Objs[pack]; ok {
		t.Fatal("vanished pack replicated")
	}
}
