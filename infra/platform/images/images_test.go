package images_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/imagelock"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/images"
	"github.com/vmvault/vmvault/infra/platform/platformtest"
)

// fixture makes VMs by writing folders under the platform's root.
type fixture struct{ root string }

func (f fixture) MakeVM(t testing.TB, spec platformtest.VMSpec) {
	t.Helper()
	dir := filepath.Join(f.root, spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vm := platform.VM{Name: spec.Name, OS: spec.OS, CPUs: spec.CPUs, MemoryMB: spec.MemoryMB, Power: platform.PowerStopped}
	for _, d := range spec.Disks {
		file := d.Name + ".img"
		fh, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := fh.Truncate(d.Size); err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Chunks {
			if _, err := fh.WriteAt(c.Data, c.Offset); err != nil {
				t.Fatal(err)
			}
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		vm.Disks = append(vm.Disks, platform.Disk{Name: d.Name, Role: d.Role, LUN: d.LUN, File: file, SizeBytes: d.Size})
	}
	writeJSON(t, filepath.Join(dir, images.ConfigFile), vm)
}

func (f fixture) diskPath(t testing.TB, vm, disk string) string {
	t.Helper()
	var def platform.VM
	data, err := os.ReadFile(filepath.Join(f.root, vm, images.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &def); err != nil {
		t.Fatal(err)
	}
	for _, d := range def.Disks {
		if d.Name == disk {
			return filepath.Join(f.root, vm, d.File)
		}
	}
	t.Fatalf("vm %q has no disk %q", vm, disk)
	return ""
}

func (f fixture) WriteDisk(t testing.TB, vm, disk string, off int64, data []byte) {
	t.Helper()
	fh, err := os.OpenFile(f.diskPath(t, vm, disk), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func (f fixture) HoldDiskWriter(t testing.TB, vm, disk string) func() {
	t.Helper()
	release, err := imagelock.HoldWriteLock(f.diskPath(t, vm, disk))
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := release(); err != nil {
			t.Error(err)
		}
	}
}

func (f fixture) SetRunning(t testing.TB, vm string, running bool) {
	t.Helper()
	path := filepath.Join(f.root, vm, images.ConfigFile)
	var def platform.VM
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &def); err != nil {
		t.Fatal(err)
	}
	def.Power = platform.PowerStopped
	if running {
		def.Power = platform.PowerRunning
	}
	writeJSON(t, path, def)
}

func (f fixture) ReadKept(t testing.TB, vm, kept string) []byte {
	t.Helper()
	if rel, err := filepath.Rel(filepath.Join(f.root, vm), kept); err != nil || !filepath.IsLocal(rel) {
		t.Fatalf("kept image %s is not in the folder of vm %q", kept, vm)
	}
	data, err := os.ReadFile(kept)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newPlatform(t *testing.T) (platform.Platform, string) {
	t.Helper()
	root := t.TempDir()
	p, err := images.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return p, root
}

func TestConformance(t *testing.T) {
	p, root := newPlatform(t)
	platformtest.Run(t, p, fixture{root})
}

// smallVM writes a VM folder with an os disk and n data disks of 4 KiB.
func smallVM(t *testing.T, root, name string, n int) platform.VM {
	t.Helper()
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vm := platform.VM{Name: name, OS: platform.OSLinux, CPUs: 1, MemoryMB: 512, Power: platform.PowerStopped,
		Disks: []platform.Disk{{Name: "os", Role: platform.DiskOS, File: "os.raw", SizeBytes: 4096}}}
	for i := range n {
		vm.Disks = append(vm.Disks, platform.Disk{Name: fmt.Sprintf("data%d", i), Role: platform.DiskData, LUN: i, File: fmt.Sprintf("data%d.raw", i), SizeBytes: 4096})
	}
	for _, d := range vm.Disks {
		if err := os.WriteFile(filepath.Join(dir, d.File), make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeJSON(t, filepath.Join(dir, images.ConfigFile), vm)
	return vm
}

func TestSeventeenDataDisksDescribe(t *testing.T) {
	p, root := newPlatform(t)
	smallVM(t, root, "many", 17)
	vm, err := p.DescribeVM(context.Background(), "many")
	if err != nil {
		t.Fatalf("backup limits are the workflow's business, not the platform's: %v", err)
	}
	if len(vm.Disks) != 18 {
		t.Fatalf("%d disks", len(vm.Disks))
	}
}

func TestNotFoundMessage(t *testing.T) {
	p, root := newPlatform(t)
	_, err := p.DescribeVM(context.Background(), "x")
	want := fmt.Sprintf("vm %q not found in %s: vm not found", "x", root)
	if !errors.Is(err, platform.ErrVMNotFound) || err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
}

func TestInvalidVM(t *testing.T) {
	cases := map[string]func(vm *platform.VM, dir string){
		"two os disks":   func(vm *platform.VM, dir string) { vm.Disks[1].Role = platform.DiskOS },
		"no os disk":     func(vm *platform.VM, dir string) { vm.Disks[0].Role = platform.DiskData; vm.Disks[0].LUN = 9 },
		"same name":      func(vm *platform.VM, dir string) { vm.Disks[2].Name = "data0" },
		"same lun":       func(vm *platform.VM, dir string) { vm.Disks[2].LUN = 0 },
		"lun 64":         func(vm *platform.VM, dir string) { vm.Disks[1].LUN = 64 },
		"missing file":   func(vm *platform.VM, dir string) { os.Remove(filepath.Join(dir, "data1.raw")) },
		"size mismatch":  func(vm *platform.VM, dir string) { vm.Disks[1].SizeBytes = 8192 },
		"file escapes":   func(vm *platform.VM, dir string) { vm.Disks[1].File = "../other/data.raw" },
		"absolute file":  func(vm *platform.VM, dir string) { vm.Disks[1].File = "/etc/passwd" },
		"bad os":         func(vm *platform.VM, dir string) { vm.OS = "plan9" },
		"bad role":       func(vm *platform.VM, dir string) { vm.Disks[1].Role = "swap" },
		"bad power":      func(vm *platform.VM, dir string) { vm.Power = "paused" },
		"unknown format": func(vm *platform.VM, dir string) { vm.Disks[1].Format = "vmdk" },
		"other name":     func(vm *platform.VM, dir string) { vm.Name = "someone-else" },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			p, root := newPlatform(t)
			vm := smallVM(t, root, "bad", 2)
			dir := filepath.Join(root, "bad")
			breakIt(&vm, dir)
			writeJSON(t, filepath.Join(dir, images.ConfigFile), vm)
			_, err := p.DescribeVM(context.Background(), "bad")
			if !errors.Is(err, platform.ErrInvalidVM) {
				t.Fatalf("got %v, want ErrInvalidVM", err)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, images.ConfigFile)) {
				t.Errorf("error %q does not name vm.json", err)
			}
		})
	}
	t.Run("not json", func(t *testing.T) {
		p, root := newPlatform(t)
		smallVM(t, root, "bad", 0)
		path := filepath.Join(root, "bad", images.ConfigFile)
		os.WriteFile(path, []byte(`{"name": "bad", "disks": [`), 0o644)
		_, err := p.DescribeVM(context.Background(), "bad")
		if !errors.Is(err, platform.ErrInvalidVM) || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestListSkipsNonVMsAndReportsBadOnes(t *testing.T) {
	p, root := newPlatform(t)
	smallVM(t, root, "good", 1)
	bad := smallVM(t, root, "bad", 1)
	bad.Disks[1].SizeBytes = 1
	writeJSON(t, filepath.Join(root, "bad", images.ConfigFile), bad)
	os.Mkdir(filepath.Join(root, "not-a-vm"), 0o755)
	os.WriteFile(filepath.Join(root, "stray.raw"), nil, 0o644)
	vms, err := p.ListVMs(context.Background())
	if !errors.Is(err, platform.ErrInvalidVM) {
		t.Errorf("ListVMs: got %v, want an ErrInvalidVM naming the bad vm", err)
	}
	if len(vms) != 1 || vms[0].Name != "good" {
		t.Errorf("ListVMs: %+v", vms)
	}
}

func TestSizeFilledFromFile(t *testing.T) {
	p, root := newPlatform(t)
	vm := smallVM(t, root, "nosize", 1)
	vm.Disks[0].SizeBytes = 0
	vm.Disks[1].File = "" // defaults to data0.raw
	writeJSON(t, filepath.Join(root, "nosize", images.ConfigFile), vm)
	got, err := p.DescribeVM(context.Background(), "nosize")
	if err != nil {
		t.Fatal(err)
	}
	if got.Disks[0].SizeBytes != 4096 || got.Disks[1].File != "data0.raw" || got.Disks[1].Format != "raw" {
		t.Errorf("got %+v", got.Disks)
	}
}

func TestRunningVMRefused(t *testing.T) {
	p, root := newPlatform(t)
	vm := smallVM(t, root, "live", 0)
	vm.Power = platform.PowerRunning
	writeJSON(t, filepath.Join(root, "live", images.ConfigFile), vm)
	_, err := p.CreateSnapshot(context.Background(), "live", platform.SnapshotRequest{ID: "s"})
	if !errors.Is(err, platform.ErrVMRunning) || !strings.Contains(err.Error(), "use the qemu platform") {
		t.Fatalf("got %v", err)
	}
	if _, err := p.StageDisk(context.Background(), "live", "os", 4096, "s"); !errors.Is(err, platform.ErrVMRunning) {
		t.Fatalf("StageDisk: got %v", err)
	}
}

func TestSnapshotDetails(t *testing.T) {
	p, root := newPlatform(t)
	smallVM(t, root, "vm1", 1)
	ctx := context.Background()
	req := platform.SnapshotRequest{ID: "snap-1", Consistency: platform.AppConsistent}
	s1, err := p.CreateSnapshot(ctx, "vm1", req)
	if err != nil {
		t.Fatal(err)
	}
	if s1.Consistency != platform.CrashConsistent || len(s1.Notes) == 0 || !strings.Contains(s1.Notes[0], "vm is stopped: storage snapshot, crash-consistent") {
		t.Errorf("snapshot %+v", s1)
	}
	s2, err := p.CreateSnapshot(ctx, "vm1", req)
	if err != nil || s2.Token != s1.Token || s2.ID != s1.ID {
		t.Errorf("retry gave %+v, %v; want the same snapshot", s2, err)
	}
	r, err := p.OpenDisk(ctx, s1, "data0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok, err := r.ChangedExtents(ctx, "anything"); ok || !errors.Is(err, platform.ErrNotSupported) {
		t.Errorf("ChangedExtents: ok=%v err=%v, want no CBT (ErrNotSupported)", ok, err)
	}
	exts, err := r.DataExtents(ctx)
	if err != nil || len(exts) != 1 || exts[0] != (extent.Extent{Offset: 0, Length: 4096}) {
		t.Errorf("DataExtents of a written 4 KiB file: %v, %v", exts, err)
	}
	if err := p.DeleteSnapshot(ctx, platform.Snapshot{ID: "nope", VM: "gone", Token: "junk"}); err != nil {
		t.Errorf("DeleteSnapshot of junk: %v", err)
	}
	if _, err := p.OpenDisk(ctx, platform.Snapshot{ID: "x", VM: "gone"}, "os"); !errors.Is(err, platform.ErrVMNotFound) {
		t.Errorf("OpenDisk of a gone vm: %v", err)
	}
}

func TestResizedDiskIsChanged(t *testing.T) {
	p, root := newPlatform(t)
	smallVM(t, root, "vm1", 0)
	ctx := context.Background()
	snap, err := p.CreateSnapshot(ctx, "vm1", platform.SnapshotRequest{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(root, "vm1", "os.raw"), 8192); err != nil {
		t.Fatal(err)
	}
	if _, err := p.OpenDisk(ctx, snap, "os"); !errors.Is(err, platform.ErrDiskChanged) {
		t.Fatalf("got %v", err)
	}
}

func TestQcow2NotSupported(t *testing.T) {
	p, root := newPlatform(t)
	vm := smallVM(t, root, "q", 1)
	hdr := make([]byte, 512)
	copy(hdr, "QFI\xfb\x00\x00\x00\x03")
	hdr[26] = 1 // big-endian virtual size at 24: 1 TiB
	if err := os.WriteFile(filepath.Join(root, "q", "data0.qcow2"), hdr, 0o600); err != nil {
		t.Fatal(err)
	}
	vm.Disks[1].File, vm.Disks[1].Format, vm.Disks[1].SizeBytes = "data0.qcow2", "qcow2", 0
	writeJSON(t, filepath.Join(root, "q", images.ConfigFile), vm)
	ctx := context.Background()
	got, err := p.DescribeVM(ctx, "q")
	if err != nil {
		t.Fatalf("DescribeVM: %v", err)
	}
	if got.Disks[1].SizeBytes != 1<<40 {
		t.Errorf("qcow2 virtual size %d", got.Disks[1].SizeBytes)
	}
	_, err = p.CreateSnapshot(ctx, "q", platform.SnapshotRequest{ID: "s"})
	if !errors.Is(err, platform.ErrNotSupported) || !strings.Contains(err.Error(), `"data0"`) {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	if _, err := p.StageDisk(ctx, "q", "data0", 4096, "s"); !errors.Is(err, platform.ErrNotSupported) {
		t.Fatalf("StageDisk of qcow2: %v", err)
	}
	vm.Name, vm.Disks[1].File = "q2", ""
	if _, err := p.PrepareNewVM(ctx, vm, "s"); !errors.Is(err, platform.ErrNotSupported) {
		t.Fatalf("PrepareNewVM with qcow2: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "q2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed PrepareNewVM left %v", err)
	}
}

func TestNewVMFiles(t *testing.T) {
	p, root := newPlatform(t)
	ctx := context.Background()
	const stage = "job-1"
	vm, err := p.PrepareNewVM(ctx, platform.VM{Name: "new", OS: platform.OSLinux, CPUs: 1, MemoryMB: 256, Power: platform.PowerRunning,
		Disks: []platform.Disk{
			{Name: "os", Role: platform.DiskOS, SizeBytes: 1 << 30},
			{Name: "tmp", Role: platform.DiskTemp, SizeBytes: 1 << 20, File: "sub/dir/tmp.raw"},
		}}, stage)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Power != platform.PowerStopped || vm.Disks[0].File != "os.raw" || vm.Disks[1].File != "sub/dir/tmp.raw" {
		t.Errorf("prepared %+v", vm)
	}
	if _, err := os.Stat(filepath.Join(root, "new", images.ConfigFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a prepared vm has vm.json: %v", err)
	}
	for _, d := range vm.Disks {
		w, err := p.StageDisk(ctx, "new", d.Name, d.SizeBytes, stage)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.CommitRestore(ctx, "new", stage, platform.CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(filepath.Join(root, "new"), func(path string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(root, "new"), path)
			files = append(files, rel)
		}
		return nil
	})
	if strings.Join(files, " ") != "os.raw sub/dir/tmp.raw vm.json" {
		t.Errorf("vm folder holds %v, want the images and vm.json only", files)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Errorf("root holds %d entries, want only the vm (no restore leftovers)", len(entries))
	}
	if _, err := p.PrepareNewVM(ctx, platform.VM{Name: "../evil", OS: platform.OSLinux,
		Disks: []platform.Disk{{Name: "os", Role: platform.DiskOS, SizeBytes: 4096}}}, stage); !errors.Is(err, platform.ErrInvalidVM) {
		t.Errorf("PrepareNewVM with a path as name: %v", err)
	}
}
