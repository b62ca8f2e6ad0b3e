package vault

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// copyPack writes every blob of pack p into a new pack through w (as a
// repack does) and returns the new pack's id.
func copyPack(t *testing.T, w *Vault, be *memBackend, p ID) ID {
	t.Helper()
	ctx := context.Background()
	pi, err := index.GetPackIndex(ctx, w.Storage(), w.Repo().Keys(), indexKeyOf(t, be, p))
	if err != nil {
		t.Fatal(err)
	}
	data := be.Objs[format.PackKey(p)]
	pk := repo.NewPacker(ctx, w.Repo())
	for _, e := range pi.Entries {
		if _, err := pk.AddBlob(e.ID, e.Type, append([]byte(nil), data[e.Offset:e.Offset+e.Length]...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pk.Finish(); err != nil {
		t.Fatal(err)
	}
	idx, err := w.Repo().RefreshIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pi.Entries {
		for _, l := range idx.Copies(e.ID) {
			if l.Pack != p {
				return l.Pack
			}
		}
	}
	t.Fatalf("no copy of pack %s indexed", p.Short())
	return ID{}
}

// A restore tries another copy of a block before giving up: on a worker
// whose index was loaded before a repack moved the blocks (their old pack
// gone), it refreshes its index and reads the new pack; a copy that fails
// its check is passed over for another pack holding the same blob; only
// when no copy is good does it fail, naming disk and offset.
func TestRestoreTriesAnotherCopy(t *testing.T) {
	ctx := context.Background()
	disk := distinctDisk(31, 12)

	t.Run("stale index, pack removed", func(t *testing.T) {
		v, be := testVault(t)
		r := backupDisk(t, v, disk, BackupOptions{})
		old := packOf(t, v, r.Root, 0)
		stale := reopen(v)
		mustIndex(t, stale) // loaded before the repack
		copyPack(t, reopen(v), be, old)
		delete(be.Objs, format.PackKey(old))
		if got := restoreDisk(t, stale, r.Root, disk.Size()); !bytes.Equal(got, disk) {
			t.Fatal("restore is not bit-exact")
		}
	})

	t.Run("damaged copy", func(t *testing.T) {
		v, be := testVault(t)
		r := backupDisk(t, v, disk, BackupOptions{})
		ids, err := v.Repo().BlockIDs(ctx, r.Root)
		if err != nil {
			t.Fatal(err)
		}
		old := packOf(t, v, r.Root, 3)
		copyPack(t, reopen(v), be, old)
		fresh := reopen(v)
		if n := len(mustIndex(t, fresh).Copies(ids[3])); n != 2 {
			t.Fatalf("block 3 has %d copies, want 2", n)
		}
		flipBlob(t, fresh, be, ids[3]) // the copy the index offers first
		if got := restoreDisk(t, fresh, r.Root, disk.Size()); !bytes.Equal(got, disk) {
			t.Fatal("restore is not bit-exact")
		}
	})

	// A pack cut short (the blocks past its end gone) is damage, not a
	// storage hiccup to retry: the blocks before the cut still come from
	// it, the others from another copy, and with none the restore fails at
	// once as corrupt data.
	t.Run("truncated pack", func(t *testing.T) {
		v, be := testVault(t)
		r := backupDisk(t, v, disk, BackupOptions{})
		ids, err := v.Repo().BlockIDs(ctx, r.Root)
		if err != nil {
			t.Fatal(err)
		}
		old := packOf(t, v, r.Root, 3)
		loc, _ := mustIndex(t, v).Lookup(ids[3])
		cut := func() { be.Objs[format.PackKey(old)] = be.Objs[format.PackKey(old)][:loc.Offset+loc.Length/2] }
		cut()
		w := &memWriter{b: make([]byte, disk.Size())}
		_, err = v.RestoreDisk(ctx, r.Root, w, RestoreOptions{Disk: "d"}) // index loaded before the cut
		if !errors.Is(err, format.ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("restore from a truncated pack: %v, want ErrCorrupt saying truncated", err)
		}
		t.Log(err)

		v, be = testVault(t)
		r = backupDisk(t, v, disk, BackupOptions{})
		old = packOf(t, v, r.Root, 3)
		copyPack(t, reopen(v), be, old)
		ids, _ = v.Repo().BlockIDs(ctx, r.Root)
		fresh := reopen(v)
		loc, _ = mustIndex(t, fresh).Lookup(ids[3])
		old = loc.Pack // the copy the index offers first
		cut()
		if got := restoreDisk(t, fresh, r.Root, disk.Size()); !bytes.Equal(got, disk) {
			t.Fatal("restore is not bit-exact")
		}
	})

	t.Run("every copy damaged", func(t *testing.T) {
		v, be := testVault(t)
		r := backupDisk(t, v, disk, BackupOptions{})
		ids, err := v.Repo().BlockIDs(ctx, r.Root)
		if err != nil {
			t.Fatal(err)
		}
		old := packOf(t, v, r.Root, 3)
		copyPack(t, reopen(v), be, old)
		fresh := reopen(v)
		for _, l := range mustIndex(t, fresh).Copies(ids[3]) {
			be.Objs[format.PackKey(l.Pack)][int(l.Offset)+int(l.Length)/2] ^= 0x40
		}
		w := &memWriter{b: make([]byte, disk.Size())}
		_, err = fresh.RestoreDisk(ctx, r.Root, w, RestoreOptions{Disk: "d"})
		if !errors.Is(err, format.ErrCorrupt) {
			t.Fatalf("restore with every copy damaged: %v, want ErrCorrupt", err)
		}
		t.Log(err)
	})
}
