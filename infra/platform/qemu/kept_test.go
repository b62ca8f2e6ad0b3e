package qemu_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu"
)

// Keep copies a snapshot into sparse read-only files that outlive the
// snapshot; a new VM made of qcow2 overlays on them reads the same content,
// is a VM of the inventory that can itself be snapshotted, and holds the
// kept snapshot until it is gone; expired kept snapshots make no VM.
func TestKeptSnapshotAndInstantVM(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	dir := qcow2VM(t, root)
	pl, _ := qemu.New(root)
	p := pl.(platform.Keeper)
	ctx := context.Background()
	snap, err := pl.CreateSnapshot(ctx, "vm", platform.SnapshotRequest{ID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := readAll(t, pl, snap, "os")
	// A Keep a crash interrupted two days ago left its hidden folder.
	stale := filepath.Join(root, ".vmvault-kept", "vm", ".rp0.tmp")
	os.MkdirAll(stale, 0o755)
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(stale, old, old)
	k, err := p.Keep(ctx, snap, "rp1", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale keep folder not removed: %v", err)
	}
	if again, err := p.Keep(ctx, snap, "rp1", time.Now().Add(time.Hour)); err != nil || again.Paths["os"] != k.Paths["os"] {
		t.Fatalf("keep again: %+v %v", again, err)
	}
	if err := pl.DeleteSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(k.Paths["os"])
	if string(got) != string(want) || k.Sizes["os"] != 64*mib {
		t.Fatal("the kept os image differs from the snapshot")
	}
	if a := allocatedBytes(t, k.Paths["os"]); a > 4*mib {
		t.Fatalf("kept image holds %d bytes: not sparse", a)
	}
	// The source changes; the kept image does not.
	runTool(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x77 1M 1M", filepath.Join(dir, "os.qcow2"))

	vm, err := pl.DescribeVM(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	vm.Name = "copy"
	made, err := p.NewVMFromKept(ctx, vm, k, "stage-1")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := p.NewVMFromKept(ctx, vm, k, "stage-1"); err != nil || again.Name != "copy" {
		t.Fatalf("retry: %v", err)
	}
	if _, err := p.NewVMFromKept(ctx, vm, k, "stage-2"); !errors.Is(err, platform.ErrVMExists) {
		t.Fatalf("another stage over the same name: %v, want ErrVMExists", err)
	}
	if made.Disks[0].Format != "qcow2" || made.Power != platform.PowerStopped {
		t.Fatalf("new vm %+v", made)
	}
	for _, d := range []string{"os", "data0"} {
		runTool(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", filepath.Join(root, "copy", d+".qcow2"), k.Paths[d])
	}
	// The new VM is a VM of the inventory: it snapshots (through qemu-nbd,
	// its backing chain included) and reads the point-in-time content.
	s2, err := pl.CreateSnapshot(ctx, "copy", platform.SnapshotRequest{ID: "s2"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readAll(t, pl, s2, "os"); string(got) != string(want) {
		t.Fatal("the new vm does not read the point-in-time content")
	}
	pl.DeleteSnapshot(ctx, s2)

	list, err := p.ListKept(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "rp1" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := p.RemoveKept(ctx, k); !errors.Is(err, platform.ErrKeptInUse) || !strings.Contains(err.Error(), "copy") {
		t.Fatalf("remove while vm copy uses it: %v", err)
	}
	os.RemoveAll(filepath.Join(root, "copy"))
	if err := p.RemoveKept(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveKept(ctx, k); err != nil {
		t.Fatalf("remove twice: %v", err)
	}
	if _, err := p.NewVMFromKept(ctx, vm, k, "stage-3"); !errors.Is(err, platform.ErrKeptGone) {
		t.Fatalf("new vm from a removed kept snapshot: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "copy")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed instant restore left a vm folder")
	}

	// Expired: no VM.
	snap, _ = pl.CreateSnapshot(ctx, "vm", platform.SnapshotRequest{ID: "s3"})
	k, err = p.Keep(ctx, snap, "rp2", time.Now().Add(-time.Second))
	pl.DeleteSnapshot(ctx, snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.NewVMFromKept(ctx, vm, k, "stage-4"); !errors.Is(err, platform.ErrKeptGone) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("new vm from an expired kept snapshot: %v", err)
	}
}

func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
