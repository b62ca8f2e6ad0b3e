package vault

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// A parent whose root or a leaf is missing or corrupt never fails the next
// backup: the disk is read in full, the result says why, and the new tree
// restores bit-exact.
func TestUnreadableParentFallsBackToFullRead(t *testing.T) {
	cases := []struct {
		name   string
		cbt    bool
		damage func(t *testing.T, v *Vault, be *memBackend, root ID)
		want   string // in ParentUnreadable
	}{
		{"root missing", false, func(t *testing.T, v *Vault, be *memBackend, root ID) {
			delete(be.Objs, format.PackKey(blobLoc(t, v, root).Pack))
		}, "root: "},
		{"root corrupt", false, func(t *testing.T, v *Vault, be *memBackend, root ID) { flipBlob(t, v, be, root) }, "root: "},
		{"root corrupt cbt", true, func(t *testing.T, v *Vault, be *memBackend, root ID) { flipBlob(t, v, be, root) }, "root: "},
		{"leaf missing cbt", true, func(t *testing.T, v *Vault, be *memBackend, root ID) {
			delete(be.Objs, format.PackKey(blobLoc(t, v, leafApart(t, v, root)).Pack))
		}, "leaf 0: "},
		// The leaf of the changed block 17: its other blocks are taken from
		// it. (A corrupt leaf whose content recurs unchanged would be
		// deduplicated against the damaged copy: that is the quarantine's
		// part, not the fallback's.)
		{"leaf corrupt cbt", true, func(t *testing.T, v *Vault, be *memBackend, root ID) {
			r, err := v.Repo().LoadRoot(context.Background(), root)
			if err != nil {
				t.Fatal(err)
			}
			flipBlob(t, v, be, r.Leaves[17/8])
		}, "leaf 2: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			v, be := testVault(t)
			disk := mixedDisk(41, 40*testBlock)
			r1 := backupDisk(t, v, disk, BackupOptions{})
			tc.damage(t, v, be, r1.Root)
			if _, err := v.Repo().ReconcileIndex(ctx); err != nil {
				t.Fatal(err)
			}
			disk[17*testBlock] ^= 1
			opt := BackupOptions{Disk: "d", Parent: &r1.Root}
			if tc.cbt {
				opt.Changed = []extent.Extent{{Offset: 17 * testBlock, Length: 1}}
			}
			r2, err := reopen(v).BackupDisk(ctx, disk, opt)
			if err != nil {
				t.Fatalf("backup after the parent was damaged: %v", err)
			}
			if !strings.HasPrefix(r2.ParentUnreadable, tc.want) || r2.Method != format.MethodChecksum {
				t.Fatalf("parent unreadable %q, method %s", r2.ParentUnreadable, r2.Method)
			}
			if r2.Stats.ScannedBytes != disk.Size() {
				t.Fatalf("scanned %d of %d bytes: not a full read", r2.Stats.ScannedBytes, disk.Size())
			}
			if got := restoreDisk(t, reopen(v), r2.Root, disk.Size()); !bytes.Equal(got, disk) {
				t.Fatal("the new point does not restore bit-exact")
			}
		})
	}
}

// A parent that cannot be read for another reason (the storage is down)
// still fails the backup, to be retried: only known damage falls back.
func TestParentStorageErrorFails(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(42, 24*testBlock)
	r1 := backupDisk(t, v, disk, BackupOptions{})
	down := errors.New("storage down")
	fv := newVault(&downBackend{memBackend: be, key: format.PackKey(blobLoc(t, v, r1.Root).Pack), err: down}, v.Config(), v.Repo().Keys())
	_, err := fv.BackupDisk(ctx, disk, BackupOptions{Disk: "d", Parent: &r1.Root})
	if !errors.Is(err, down) {
		t.Fatalf("backup with the parent's storage down: %v", err)
	}
}

// downBackend fails every read of one object.
type downBackend struct {
	*memBackend
	key string
	err error
}

func (d *downBackend) Get(ctx context.Context, k string) ([]byte, error) {
	if k == d.key {
		return nil, d.err
	}
	return d.memBackend.Get(ctx, k)
}

func (d *downBackend) GetRange(ctx context.Context, k string, off, n int64) ([]byte, error) {
	if k == d.key {
		return nil, d.err
	}
	return d.memBackend.GetRange(ctx, k, off, n)
}

func blobLoc(t *testing.T, v *Vault, id ID) index.Location {
	t.Helper()
	loc, ok := mustIndex(t, v).Lookup(id)
	if !ok {
		t.Fatalf("blob %s not indexed", id)
	}
	return loc
}

// flipBlob flips a byte of blob id inside its pack: same size, so the
// index still trusts the pack, and every read of the blob fails.
func flipBlob(t *testing.T, v *Vault, be *memBackend, id ID) {
	t.Helper()
	loc := blobLoc(t, v, id)
	be.Objs[format.PackKey(loc.Pack)][int(loc.Offset)+int(loc.Length)/2] ^= 0x40
}

// leafApart returns a leaf of root in a pack without root: if its pack
// holds root too, root is copied to a pack of its own first.
func leafApart(t *testing.T, v *Vault, root ID) ID {
	t.Helper()
	ctx := context.Background()
	r, err := v.Repo().LoadRoot(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	leaf := r.Leaves[0]
	if blobLoc(t, v, leaf).Pack != blobLoc(t, v, root).Pack {
		return leaf
	}
	plain, err := v.Repo().ReadBlob(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := v.Repo().Keys().SealBlob(root, plain, nil)
	pk := repo.NewPacker(ctx, v.Repo())
	if _, err := pk.AddBlob(root, format.BlobTree, sealed); err != nil {
		t.Fatal(err)
	}
	if err := pk.Finish(); err != nil {
		t.Fatal(err)
	}
	return leaf
}
